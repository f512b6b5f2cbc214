"""The small text helpers, and that every writer of links uses the safe-URL guard."""

import json
import re
from datetime import UTC, datetime

import pytest

from publisher.feedformats import render_atom, render_json, render_rss
from publisher.feeds import absolute_links, article_entry, make_spec
from publisher.model import Article
from publisher.text import safe_links, safe_url

WHEN = datetime(2025, 10, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://e.org/a", "https://e.org/a"),
        ("http://e.org/a", "http://e.org/a"),
        ("mailto:ed@e.org", "mailto:ed@e.org"),
        ("/relative/path", "/relative/path"),
        ("#top", "#top"),
        ("javascript:alert(1)", ""),
        (" JaVa\tScript:alert(1)", ""),
        ("\x01javascript:alert(1)", ""),
        ("data:text/html,<script>", ""),
        ("vbscript:msgbox", ""),
        ("file:///etc/passwd", ""),
    ],
)
def test_safe_url_keeps_only_http_https_mailto_and_relative_links(url, safe):
    assert safe_url(url) == safe


def test_safe_links_removes_foreign_schemes_and_empty_links_from_markup():
    markup = (
        '<a href="javascript:x()" title="t">a</a><a href=\'https://e.org\'>b</a>'
        '<img src=data:x alt="i"><a href="&#106;avascript:y()">c</a><a href="">d</a>'
    )
    assert safe_links(markup) == '<a title="t">a</a><a href=\'https://e.org\'>b</a><img alt="i"><a>c</a><a>d</a>'


def test_absolute_links_never_turns_an_emptied_or_foreign_link_into_a_url():
    markup = '<a href="">x</a><a href="javascript:y()">y</a><a href="/z">z</a>'
    assert absolute_links(markup, "https://e.org/post/") == '<a>x</a><a>y</a><a href="https://e.org/z">z</a>'


def hostile_article() -> Article:
    """An article that reached the store before the importers refused such links."""
    body = '<p><a href="javascript:alert(2)">click</a> <img src="data:image/svg+xml,x" alt="i"></p>'
    return Article(
        guid="urn:x:1",
        slug="bait",
        title="Bait",
        origin="javascript:alert(1)",
        summary_html=body,
        content_html=body,
        truncated=True,
        published=WHEN,
        updated=WHEN,
        id=1,
    )


FOREIGN = re.compile(r"(?i)\b(javascript|data):")


def test_no_feed_format_writes_a_foreign_scheme(make_settings):
    settings = make_settings()
    spec = make_spec(settings, "", "T", "D")
    entries = [article_entry(hostile_article(), settings.site.url)]
    for render in (render_rss, render_atom, render_json):
        written = render(spec, entries, "https://news.example.org/feeds/x").decode()
        assert not FOREIGN.search(written), render.__name__
    item = json.loads(render_json(spec, entries, "https://news.example.org/feeds/feed.json"))["items"][0]
    assert item["url"] == "https://news.example.org/bait/"  # its page here, not the unsafe origin


def test_the_email_writes_no_foreign_scheme(make_settings):
    from publisher.render import render_digest
    from publisher.selection import Digest

    settings = make_settings({"newsletters": {"weekly": {}}})
    digest = Digest("weekly", 1, WHEN, (hostile_article(),), (), WHEN)
    rendered = render_digest(digest, settings=settings, newsletter=settings.newsletter("weekly"))
    assert "click" in rendered.html and "Bait" in rendered.text
    assert not FOREIGN.search(rendered.html) and not FOREIGN.search(rendered.text)


def test_tag_slugs_keep_every_script_and_leave_latin_slugs_as_they_were():
    from publisher.text import slugify, tag_slug

    assert tag_slug("Экономика Мира") == "экономика-мира"
    assert tag_slug("中国经济") == "中国经济"
    assert tag_slug("Ελλάδα") == "ελλάδα"
    assert tag_slug("الاقتصاد") == "الاقتصاد"
    assert tag_slug("हिन्दी") == "हिन्दी"  # its vowel signs (combining marks) stay
    assert tag_slug("Экономика") != tag_slug("Политика")
    for latin in ("Climate Change", "naïve café", "Don't stop", "½ price", "Straße", "C++", "ﬁsh", "  x--y "):
        assert tag_slug(latin) == slugify(latin), latin
