"""Feeds on each set of captures (ours and the real seeds), on SQLite and PostgreSQL: what a feed
reader and a validator see.

Golden files: tests/golden/feeds/<set>/ holds the site feeds of both captures of a set (limit 5):
ours/ for tests/data, seeds/ for ../shared/seeds. After a deliberate change to the output,
regenerate them with

    PUBLISHER_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_feeds.py -k golden

and review the diff.
"""

from __future__ import annotations

import json
import logging
import os
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import replace
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs

import feedparser
import httpx
import pytest
from click.testing import CliRunner
from lxml import etree

from publisher.cli import cli
from publisher.feeds import article_entry, build_feeds, make_spec, write_feed_set
from publisher.importers.textpage import read_textpage
from publisher.model import Draft
from tests.helpers import LATE_AS_OF, REPO

SITE = "https://news.example.org"
GOLDEN = REPO / "tests" / "golden" / "feeds"  # one folder per set of captures
FILES = ("rss.xml", "atom.xml", "feed.json")
NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "content": "http://purl.org/rss/1.0/modules/content/",
    "dc": "http://purl.org/dc/elements/1.1/",
}
RFC_822 = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$"
)
RFC_3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)$")


def import_captures(store, settings, captures, now_shift: timedelta = timedelta(0)) -> None:
    """Both captures of a set, the early one first, as the importer stores them."""
    for capture in (captures.early, captures.late):
        store.articles.ingest(
            read_textpage(capture.path, as_of=capture.as_of),
            site_url=settings.site.url,
            guid_authority=settings.site.domain,
            now=capture.as_of + now_shift,
            source=capture.path.name,
        )


def add_drafts(store, settings, *drafts: Draft) -> None:
    store.articles.ingest(
        list(drafts), site_url=settings.site.url, guid_authority=settings.site.domain, now=LATE_AS_OF, source="test"
    )


def tagged(title: str, minutes: int, tags: tuple[str, ...], **extra) -> Draft:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return Draft(
        key=slug,
        slug=slug,
        title=title,
        summary_html=f"<p>About {title}.</p>",
        content_html=f"<p>All about {title}.</p>",
        truncated=False,
        published=LATE_AS_OF + timedelta(minutes=minutes),
        tags=tags,
        **extra,
    )


@pytest.fixture
def seeded(store, settings, captures):
    import_captures(store, settings, captures)
    return store


def read(settings, name: str, folder: str = "") -> bytes:
    return (settings.feeds.dir / folder / name).read_bytes()


def parsed(settings, name: str, folder: str = ""):
    result = feedparser.parse(read(settings, name, folder))
    assert result.bozo == 0, result.get("bozo_exception")
    return result


def strict(data: bytes):
    """Both XML parsers, strictly: a forbidden character or bad nesting raises."""
    ElementTree.fromstring(data)
    return etree.fromstring(data, etree.XMLParser(recover=False))


def json_feed_problems(document: object) -> list[str]:
    """The JSON Feed 1.1 rules (https://jsonfeed.org/version/1.1) for required fields and types."""
    problems: list[str] = []

    def check(where: str, value: object, kind: type | tuple, required: bool = False) -> None:
        if value is None:
            if required:
                problems.append(f"{where} is required")
        elif not isinstance(value, kind) or isinstance(value, bool):
            problems.append(f"{where} should be {kind}, is {type(value).__name__}")

    def check_url(where: str, value: object, required: bool = False) -> None:
        check(where, value, str, required)
        if isinstance(value, str) and not re.match(r"^https?://[^/]+", value):
            problems.append(f"{where} is not an absolute URL: {value!r}")

    def check_authors(where: str, authors: object) -> None:
        check(where, authors, list)
        for i, author in enumerate(authors or []):
            if not isinstance(author, dict) or not any(
                isinstance(author.get(k), str) for k in ("name", "url", "avatar")
            ):
                problems.append(f"{where}[{i}] needs a name, url or avatar string")

    def check_date(where: str, value: object) -> None:
        check(where, value, str)
        if isinstance(value, str) and not RFC_3339.match(value):
            problems.append(f"{where} is not RFC 3339: {value!r}")

    if not isinstance(document, dict):
        return ["the top level is not an object"]
    if document.get("version") != "https://jsonfeed.org/version/1.1":
        problems.append(f"version is {document.get('version')!r}")
    check("title", document.get("title"), str, required=True)
    check_url("home_page_url", document.get("home_page_url"))
    check_url("feed_url", document.get("feed_url"))
    for key in ("description", "user_comment", "language", "icon", "favicon"):
        check(key, document.get(key), str)
    check_authors("authors", document.get("authors"))
    for i, hub in enumerate(document.get("hubs") or []):
        if not (isinstance(hub, dict) and isinstance(hub.get("type"), str) and isinstance(hub.get("url"), str)):
            problems.append(f"hubs[{i}] needs type and url strings")
    check("items", document.get("items"), list, required=True)
    ids = []
    for i, item in enumerate(document.get("items") or []):
        where = f"items[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where} is not an object")
            continue
        check(f"{where}.id", item.get("id"), str, required=True)
        ids.append(item.get("id"))
        if not isinstance(item.get("content_html"), str) and not isinstance(item.get("content_text"), str):
            problems.append(f"{where} needs content_html or content_text")
        check_url(f"{where}.url", item.get("url"))
        for key in ("title", "summary", "content_html", "content_text"):
            check(f"{where}.{key}", item.get(key), str)
        check_date(f"{where}.date_published", item.get("date_published"))
        check_date(f"{where}.date_modified", item.get("date_modified"))
        check_authors(f"{where}.authors", item.get("authors"))
        tags = item.get("tags")
        if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            problems.append(f"{where}.tags should be a list of strings")
    if len(ids) != len(set(ids)):
        problems.append("item ids are not unique")
    return problems


def atom_problems(feed) -> list[str]:
    """RFC 4287's must-haves: feed and entry id, title, updated; an author; content or an alternate link."""
    problems = []

    def need(element, name: str, where: str) -> None:
        if len(element.findall(f"atom:{name}", NS)) != 1:
            problems.append(f"{where} needs exactly one atom:{name}")

    for name in ("id", "title", "updated"):
        need(feed, name, "feed")
    if not feed.findall("atom:link[@rel='self']", NS):
        problems.append("feed has no rel=self link")
    feed_author = bool(feed.findall("atom:author/atom:name", NS))
    for i, entry in enumerate(feed.iterfind("atom:entry", NS)):
        for name in ("id", "title", "updated"):
            need(entry, name, f"entry {i}")
        if not feed_author and not entry.findall("atom:author/atom:name", NS):
            problems.append(f"entry {i} has no author and neither has the feed")
        content = entry.find("atom:content", NS)
        if content is None and entry.find("atom:link", NS) is None:
            problems.append(f"entry {i} has neither content nor an alternate link")
        if content is not None and content.get("type") not in ("text", "html", "xhtml"):
            problems.append(f"entry {i} content type {content.get('type')!r}")
    for stamp in feed.iterfind(".//atom:updated", NS):
        if not RFC_3339.match(stamp.text or ""):
            problems.append(f"updated {stamp.text!r} is not RFC 3339")
    return problems


def rss_problems(rss) -> list[str]:
    """RSS 2.0's must-haves: channel title, link, description; items with a title or description."""
    channel = rss.find("channel")
    problems = [f"channel needs <{name}>" for name in ("title", "link", "description") if not channel.findtext(name)]
    for i, item in enumerate(channel.iter("item")):
        if not item.findtext("title") and not item.findtext("description"):
            problems.append(f"item {i} needs a title or a description")
        if item.find("guid") is None:
            problems.append(f"item {i} has no guid")
    return problems


def json_feed(settings, folder: str = "") -> dict:
    document = json.loads(read(settings, "feed.json", folder).decode("utf-8"))
    assert json_feed_problems(document) == []
    return document


# ---------------------------------------------------------------------------- the site feeds


def test_site_feeds_are_valid_with_every_article_newest_first(seeded, settings, captures):
    build_feeds(seeded, settings)
    expected = [a.title for a in seeded.articles.newest()]
    assert len(expected) == captures.total
    rss, atom = parsed(settings, "rss.xml"), parsed(settings, "atom.xml")
    assert rss.version == "rss20" and atom.version == "atom10"
    assert [e.title for e in rss.entries] == expected
    assert [e.title for e in atom.entries] == expected
    assert [item["title"] for item in json_feed(settings)["items"]] == expected
    assert expected[0] == captures.issue_2[0]
    assert rss_problems(strict(read(settings, "rss.xml"))) == []
    assert atom_problems(strict(read(settings, "atom.xml"))) == []


def test_only_the_newest_limit_articles_are_published(store, make_settings, database_url, captures):
    settings = make_settings({"feeds": {"limit": 5}}, database_url=database_url)
    import_captures(store, settings, captures)
    build_feeds(store, settings)
    expected = [a.title for a in store.articles.newest(5)]
    assert [e.title for e in parsed(settings, "rss.xml").entries] == expected
    assert [e.title for e in parsed(settings, "atom.xml").entries] == expected
    assert [item["title"] for item in json_feed(settings)["items"]] == expected


def test_feeds_link_to_themselves_and_to_the_site(seeded, settings):
    build_feeds(seeded, settings)
    rss, atom = parsed(settings, "rss.xml").feed, parsed(settings, "atom.xml").feed
    assert rss.link == f"{SITE}/"
    assert atom.link == f"{SITE}/"
    channel = strict(read(settings, "rss.xml")).find("channel")
    self_links = channel.findall("atom:link[@rel='self']", NS)
    assert [(l.get("href"), l.get("type")) for l in self_links] == [(f"{SITE}/feeds/rss.xml", "application/rss+xml")]
    atom_links = {l.rel: l.href for l in atom.links}
    assert atom_links == {"self": f"{SITE}/feeds/atom.xml", "alternate": f"{SITE}/"}
    document = json_feed(settings)
    assert (document["home_page_url"], document["feed_url"]) == (f"{SITE}/", f"{SITE}/feeds/feed.json")
    first = seeded.articles.newest(1)[0]
    assert parsed(settings, "rss.xml").entries[0].link == f"{SITE}/{first.slug}/"
    assert rss.language == "en" and rss.generator == "publisher"


def test_full_content_is_html_in_every_format(seeded, settings):
    build_feeds(seeded, settings)
    article = next(a for a in seeded.articles.newest() if not a.truncated)
    atom = strict(read(settings, "atom.xml"))
    assert {c.get("type") for c in atom.iterfind("atom:entry/atom:content", NS)} == {"html"}
    assert {s.get("type") for s in atom.iterfind("atom:entry/atom:summary", NS)} == {"html"}
    rss = strict(read(settings, "rss.xml"))
    items = {item.findtext("title"): item for item in rss.iter("item")}
    assert items[article.title].findtext("content:encoded", namespaces=NS) == article.content_html
    assert items[article.title].findtext("description") == article.summary_html
    entry = next(e for e in parsed(settings, "atom.xml").entries if e.title == article.title)
    assert entry.content[0].type == "text/html"
    items = {item["title"]: item for item in json_feed(settings)["items"]}
    assert items[article.title]["content_html"] == article.content_html


def test_a_teaser_links_to_its_permalink_with_continue_reading(seeded, settings):
    build_feeds(seeded, settings)
    teaser = next(a for a in seeded.articles.newest() if a.truncated)
    item = next(i for i in json_feed(settings)["items"] if i["title"] == teaser.title)
    assert item["content_html"].startswith(teaser.content_html)
    assert item["content_html"].endswith(f'<a href="{SITE}/{teaser.slug}/">Continue reading {teaser.title}</a></p>')


def test_guids_are_stable_across_a_rebuild_and_a_reimport(seeded, settings, captures):
    build_feeds(seeded, settings)
    rss = strict(read(settings, "rss.xml"))
    guids = [(g.text, g.get("isPermaLink")) for g in rss.iter("guid")]
    assert len(set(guids)) == captures.total and {flag for _, flag in guids} == {"false"}
    assert all(text.startswith("tag:news.example.org,") for text, _ in guids)
    atom_ids = [e.id for e in parsed(settings, "atom.xml").entries]
    for name in FILES:
        (settings.feeds.dir / name).unlink()
    import_captures(seeded, settings, captures, now_shift=timedelta(days=3))  # a later re-import of both pages
    build_feeds(seeded, settings)
    assert [(g.text, g.get("isPermaLink")) for g in strict(read(settings, "rss.xml")).iter("guid")] == guids
    assert [e.id for e in parsed(settings, "atom.xml").entries] == atom_ids
    assert [item["id"] for item in json_feed(settings)["items"]] == atom_ids


def test_an_edited_article_keeps_its_guid_and_moves_the_feed_updated(seeded, settings, captures):
    build_feeds(seeded, settings)
    before = {e.title: e for e in parsed(settings, "atom.xml").entries}
    drafts = read_textpage(captures.late.path, as_of=captures.late.as_of)
    assert drafts[3].title in captures.issue_2  # new in the late capture, so fourth in the feeds
    edited = replace(
        drafts[3], content_html=drafts[3].content_html + "<p>Correction.</p>", updated=LATE_AS_OF + timedelta(days=1)
    )
    add_drafts(seeded, settings, edited)
    report = build_feeds(seeded, settings)
    assert [(p.name, status) for p, status in report.files] == [(name, "changed") for name in FILES]
    atom = parsed(settings, "atom.xml")
    entry = next(e for e in atom.entries if e.title == edited.title)
    assert entry.id == before[edited.title].id
    assert "<p>Correction.</p>" in entry.content[0].value
    assert atom.feed.updated == (LATE_AS_OF + timedelta(days=1)).isoformat()
    assert parsed(settings, "rss.xml").entries[3].title == edited.title  # still in publication order


def test_dates_are_rfc_822_in_rss_and_rfc_3339_in_atom_and_json(seeded, settings):
    build_feeds(seeded, settings)
    articles = seeded.articles.newest()
    rss = strict(read(settings, "rss.xml"))
    pub_dates = [item.findtext("pubDate") for item in rss.iter("item")]
    assert all(RFC_822.match(d) for d in pub_dates), pub_dates[:3]
    assert [parsedate_to_datetime(d) for d in pub_dates] == [a.published for a in articles]
    assert RFC_822.match(rss.find("channel").findtext("lastBuildDate"))
    assert parsedate_to_datetime(rss.find("channel").findtext("lastBuildDate")) == max(a.updated for a in articles)
    atom = strict(read(settings, "atom.xml"))
    stamps = [e.text for e in atom.iterfind(".//atom:published", NS)] + [
        e.text for e in atom.iterfind(".//atom:updated", NS)
    ]
    assert all(RFC_3339.match(s) for s in stamps), stamps[:3]
    published = [datetime.fromisoformat(e.text) for e in atom.iterfind("atom:entry/atom:published", NS)]
    assert published == [a.published for a in articles]
    assert atom.findtext("atom:updated", namespaces=NS) == "2025-10-20T00:00:00+00:00"  # newest entry, not now


def test_typography_is_kept_exactly(seeded, settings, captures):
    build_feeds(seeded, settings)
    articles = seeded.articles.newest()
    rss_items = {e.title: e for e in parsed(settings, "rss.xml").entries}
    atom_items = {e.title: e for e in parsed(settings, "atom.xml").entries}
    json_items = {item["title"]: item for item in json_feed(settings)["items"]}
    for mark in "’–“”":
        article = next(a for a in articles if mark in a.content_html)
        assert mark in rss_items[article.title].content[0].value
        assert mark in atom_items[article.title].content[0].value
        assert json_items[article.title]["content_html"].startswith(article.content_html)
        for name in FILES:
            assert mark.encode("utf-8") in read(settings, name)
    typographic = [t for t in (*captures.issue_1, *captures.issue_2) if any(mark in t for mark in "’‘–“”")]
    assert len(typographic) >= 3  # "China’s Premier champions peace, …" among the seeds
    for title in typographic:
        assert title in rss_items and title in atom_items and title in json_items


def test_links_inside_the_content_are_made_absolute(store, settings):
    draft = replace(
        tagged("Links", 1, ()),
        content_html='<p><a href="/about/">About</a> <img src="pic.png" alt="">'
        ' <a href="https://elsewhere.example/x">away</a> <a href="#notes">notes</a></p>',
    )
    add_drafts(store, settings, draft)
    build_feeds(store, settings)
    expected = (
        f'<p><a href="{SITE}/about/">About</a> <img src="{SITE}/links/pic.png" alt="">'
        f' <a href="https://elsewhere.example/x">away</a> <a href="{SITE}/links/#notes">notes</a></p>'
    )
    assert json_feed(settings)["items"][0]["content_html"] == expected
    rss = strict(read(settings, "rss.xml"))
    assert rss.find("channel/item").findtext("content:encoded", namespaces=NS) == expected
    atom = strict(read(settings, "atom.xml"))
    assert atom.find("atom:entry/atom:content", NS).text == expected


def test_the_site_settings_describe_every_feed(store, make_settings, database_url):
    settings = make_settings(
        {
            "site": {
                "title": "La Gazette",
                "description": "Les nouvelles – chaque jour",
                "language": "fr-FR",
                "author": "La rédaction",
            }
        },
        database_url=database_url,
    )
    add_drafts(store, settings, tagged("Bonjour", 1, ("Été",)))
    build_feeds(store, settings)
    for folder, title in (("", "La Gazette"), ("tags/ete", "La Gazette: Été")):
        rss, atom = parsed(settings, "rss.xml", folder).feed, parsed(settings, "atom.xml", folder).feed
        assert rss.title == atom.title == json_feed(settings, folder)["title"] == title
        assert rss.language == json_feed(settings, folder)["language"] == "fr-FR"
        assert strict(read(settings, "atom.xml", folder)).get("{http://www.w3.org/XML/1998/namespace}lang") == "fr-FR"
        assert atom.author == "La rédaction"
        assert json_feed(settings, folder)["authors"] == [{"name": "La rédaction"}]
    assert parsed(settings, "rss.xml").feed.subtitle == "Les nouvelles – chaque jour"


def test_an_empty_store_gives_valid_empty_feeds_that_do_not_change(store, settings):
    first = build_feeds(store, settings)
    assert [(p.name, status) for p, status in first.files] == [(name, "created") for name in FILES]
    for name in ("rss.xml", "atom.xml"):
        assert parsed(settings, name).entries == []
    assert json_feed(settings)["items"] == []
    assert parsed(settings, "atom.xml").feed.updated == "1970-01-01T00:00:00+00:00"  # not "now"
    assert build_feeds(store, settings).changed == []


# ---------------------------------------------------------------------------- determinism and writing


def test_a_second_build_gives_identical_bytes_and_leaves_files_alone(seeded, settings):
    first = build_feeds(seeded, settings)
    assert [(p.name, status) for p, status in first.files] == [(name, "created") for name in FILES]
    paths = [settings.feeds.dir / name for name in FILES]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in paths}
    old = datetime(2020, 1, 1).timestamp()
    for path in paths:
        os.utime(path, (old, old))  # so a rewrite could not hide inside the clock's resolution
    second = build_feeds(seeded, settings)
    assert second.changed == [] and second.count("unchanged") == 3
    for path in paths:
        assert path.read_bytes() == before[path][0]
        assert path.stat().st_mtime == old
        assert path.stat().st_ino == before[path][2]


def test_a_rebuild_from_scratch_gives_identical_bytes(seeded, settings):
    build_feeds(seeded, settings)
    before = {name: read(settings, name) for name in FILES}
    for name in FILES:
        (settings.feeds.dir / name).unlink()
    build_feeds(seeded, settings)
    assert {name: read(settings, name) for name in FILES} == before


def test_a_changed_feed_is_replaced_without_leaving_temporary_files(seeded, settings):
    build_feeds(seeded, settings)
    inode = (settings.feeds.dir / "rss.xml").stat().st_ino
    add_drafts(seeded, settings, tagged("Fresh news", 60, ()))
    build_feeds(seeded, settings)
    assert (settings.feeds.dir / "rss.xml").stat().st_ino != inode  # renamed into place, not rewritten
    assert parsed(settings, "rss.xml").entries[0].title == "Fresh news"
    assert sorted(p.name for p in settings.feeds.dir.iterdir() if p.is_file()) == sorted(FILES)
    assert oct((settings.feeds.dir / "rss.xml").stat().st_mode & 0o777) == oct(0o644)


def test_golden_site_feeds(store, make_settings, database_url, captures):
    settings = make_settings({"feeds": {"limit": 5}}, database_url=database_url)
    import_captures(store, settings, captures)
    build_feeds(store, settings)
    for name in FILES:
        if os.environ.get("PUBLISHER_REGENERATE_GOLDEN"):
            (GOLDEN / captures.name).mkdir(parents=True, exist_ok=True)
            (GOLDEN / captures.name / name).write_bytes(read(settings, name))
        assert read(settings, name) == (GOLDEN / captures.name / name).read_bytes(), name


# ---------------------------------------------------------------------------- bad characters


def test_a_control_character_in_an_article_does_not_break_any_feed(seeded, settings, captures):
    bad = tagged("Bell\x07 and\x1b escape", 60, ("Odd\x01",), authors=("Ann\x0c",))
    bad = replace(bad, summary_html="<p>vertical\x0btab</p>", content_html="<p>nul-ish\x08 back\x1fspace</p>")
    add_drafts(seeded, settings, bad)
    build_feeds(seeded, settings)
    for folder in ("", "tags/odd"):
        assert rss_problems(strict(read(settings, "rss.xml", folder))) == []
        assert atom_problems(strict(read(settings, "atom.xml", folder))) == []
        for name in ("rss.xml", "atom.xml"):
            assert parsed(settings, name, folder).entries[0].title == "Bell and escape"
        assert json_feed(settings, folder)["items"][0]["content_html"] == "<p>nul-ish backspace</p>"
    assert len(parsed(settings, "rss.xml").entries) == captures.total + 1


def test_a_lone_surrogate_in_an_article_does_not_break_any_feed(seeded, settings, captures):
    articles = seeded.articles.newest()
    planted = replace(
        articles[0],
        title=articles[0].title + " \ud800",
        content_html="<p>half \udfff a pair</p>",
        summary_html="<p>\ud83d</p>",
    )
    spec = make_spec(settings, "", settings.site.title, settings.site.description)
    entries = [article_entry(a, settings.site.url) for a in [planted, *articles[1:]]]
    written = write_feed_set(spec, entries, settings.feeds)
    assert sorted(p.name for p in written) == sorted(FILES)
    for name in ("rss.xml", "atom.xml"):
        strict(read(settings, name))
        result = parsed(settings, name)
        assert result.entries[0].title == articles[0].title
        assert len(result.entries) == captures.total
    assert json_feed(settings)["items"][0]["content_html"].startswith("<p>half  a pair</p>")


# ---------------------------------------------------------------------------- per-tag feeds


def test_each_tag_has_its_own_feeds_with_only_its_articles(seeded, settings):
    add_drafts(
        seeded,
        settings,
        tagged("Rust notes", 10, ("Rust", "Programming")),
        tagged("Python notes", 20, ("Python", "Programming"), authors=("Ann Author",)),
        tagged("More Python", 30, ("Python",)),
    )
    report = build_feeds(seeded, settings)
    assert report.count("created") == 3 * 4  # the site and three tags
    for slug, titles in {
        "python": ["More Python", "Python notes"],
        "rust": ["Rust notes"],
        "programming": ["Python notes", "Rust notes"],
    }.items():
        folder = f"tags/{slug}"
        rss, atom = parsed(settings, "rss.xml", folder), parsed(settings, "atom.xml", folder)
        assert [e.title for e in rss.entries] == titles
        assert [e.title for e in atom.entries] == titles
        assert [i["title"] for i in json_feed(settings, folder)["items"]] == titles
        assert {l.rel: l.href for l in atom.feed.links}["self"] == f"{SITE}/feeds/{folder}/atom.xml"
        assert atom_problems(strict(read(settings, "atom.xml", folder))) == []
        assert rss_problems(strict(read(settings, "rss.xml", folder))) == []
        assert rss.feed.link == f"{SITE}/tags/{slug}/"  # the tag's page on the site
    python = parsed(settings, "atom.xml", "tags/python")
    assert python.feed.title == "A publisher sample: Python"
    assert [t.term for t in python.entries[1].tags] == ["Python", "Programming"]
    assert python.entries[1].author == "Ann Author"
    rss_item = strict(read(settings, "rss.xml", "tags/python")).find("channel/item[2]")
    assert [c.text for c in rss_item.iter("category")] == ["Python", "Programming"]
    assert rss_item.findtext("dc:creator", namespaces=NS) == "Ann Author"
    assert json_feed(settings, "tags/python")["items"][1]["tags"] == ["Python", "Programming"]
    assert parsed(settings, "rss.xml").entries[0].title == "More Python"  # the site feed has them all


def test_tag_feeds_are_limited_too(store, make_settings, database_url):
    settings = make_settings({"feeds": {"limit": 2}}, database_url=database_url)
    add_drafts(store, settings, *(tagged(f"Note {i}", i, ("Notes",)) for i in range(5)))
    build_feeds(store, settings)
    assert [e.title for e in parsed(settings, "atom.xml", "tags/notes").entries] == ["Note 4", "Note 3"]


def test_the_feeds_of_a_tag_no_longer_used_are_removed(seeded, settings):
    draft = tagged("Once tagged", 10, ("Gone",))
    add_drafts(seeded, settings, draft)
    build_feeds(seeded, settings)
    assert (settings.feeds.dir / "tags" / "gone" / "feed.json").exists()
    add_drafts(seeded, settings, replace(draft, tags=()))
    report = build_feeds(seeded, settings)
    assert report.count("removed") == 3
    assert not (settings.feeds.dir / "tags" / "gone").exists()


# ---------------------------------------------------------------------------- WebSub


def recording_client(requests: list, response: int = 204) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(response)

    return httpx.Client(transport=httpx.MockTransport(handle))


def test_a_hub_is_announced_and_pinged_only_for_changed_feeds(store, make_settings, database_url, captures):
    hub = "https://hub.example.net/"
    settings = make_settings({"feeds": {"hub": hub}}, database_url=database_url)
    import_captures(store, settings, captures)
    requests: list[httpx.Request] = []
    with recording_client(requests) as client:
        build_feeds(store, settings, client=client)
        assert [(r.method, str(r.url)) for r in requests] == [("POST", hub)] * 3
        topics = [parse_qs(r.content.decode()) for r in requests]
        assert topics == [{"hub.mode": ["publish"], "hub.url": [f"{SITE}/feeds/{name}"]} for name in FILES]
        build_feeds(store, settings, client=client)
        assert len(requests) == 3  # nothing changed, nobody pinged
    channel = strict(read(settings, "rss.xml")).find("channel")
    assert [l.get("href") for l in channel.findall("atom:link[@rel='hub']", NS)] == [hub]
    assert {l.rel: l.href for l in parsed(settings, "atom.xml").feed.links}["hub"] == hub
    assert json_feed(settings)["hubs"] == [{"type": "WebSub", "url": hub}]


def test_an_unreachable_hub_is_logged_and_the_feeds_still_publish(store, make_settings, database_url, caplog):
    settings = make_settings({"feeds": {"hub": "https://hub.example.net/"}}, database_url=database_url)
    add_drafts(store, settings, tagged("Tagged", 1, ("One",)))
    attempts = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    with (
        caplog.at_level(logging.WARNING, logger="publisher.feeds"),
        httpx.Client(transport=httpx.MockTransport(refuse)) as client,
    ):
        report = build_feeds(store, settings, client=client)
    assert report.count("created") == 6
    assert len(attempts) == 1  # a dead hub costs one try per build, not one per feed
    assert "hub.example.net" in caplog.text and "unreachable" in caplog.text


def test_a_hub_refusal_is_logged_per_feed(store, make_settings, database_url, caplog):
    settings = make_settings({"feeds": {"hub": "https://hub.example.net/"}}, database_url=database_url)
    add_drafts(store, settings, tagged("Plain", 1, ()))
    requests: list[httpx.Request] = []
    with caplog.at_level(logging.WARNING, logger="publisher.feeds"), recording_client(requests, 500) as client:
        build_feeds(store, settings, client=client)
    assert len(requests) == 3
    assert caplog.text.count("HTTP 500") == 3


# ---------------------------------------------------------------------------- the command


@pytest.fixture
def cli_stores(monkeypatch):
    """The stores the command opens, closed afterwards (PostgreSQL warns about open connections)."""
    from publisher.cli import app

    opened = []
    original = app.Store.open

    def tracked(url: str):
        opened.append(original(url))
        return opened[-1]

    monkeypatch.setattr(app.Store, "open", tracked)
    yield opened
    for store in opened:
        store.close()


def test_publisher_feeds_reports_each_file_and_a_summary(seeded, settings, cli_stores):
    settings.path.write_text(
        f'[site]\nurl = "{SITE}"\n\n[database]\nurl = "{settings.database.url}"\n', encoding="utf-8"
    )
    add_drafts(seeded, settings, tagged("Tagged", 1, ("Only tag",)))
    runner = CliRunner()
    first = runner.invoke(cli, ["--config", str(settings.path), "feeds"])
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == [
        "created   rss.xml",
        "created   atom.xml",
        "created   feed.json",
        "created   tags/only-tag/rss.xml",
        "created   tags/only-tag/atom.xml",
        "created   tags/only-tag/feed.json",
        f"6 created, 0 changed, 0 unchanged, 0 removed in {settings.feeds.dir}",
    ]
    again = runner.invoke(cli, ["--config", str(settings.path), "feeds"])
    assert again.exit_code == 0
    assert again.output.splitlines()[0] == "unchanged rss.xml"
    assert again.output.splitlines()[-1] == f"0 created, 0 changed, 6 unchanged, 0 removed in {settings.feeds.dir}"
    add_drafts(seeded, settings, tagged("Untagged", 2, ()))
    third = runner.invoke(cli, ["--config", str(settings.path), "feeds"])
    assert third.output.splitlines() == [
        "changed   rss.xml",
        "changed   atom.xml",
        "changed   feed.json",
        "unchanged tags/only-tag/rss.xml",
        "unchanged tags/only-tag/atom.xml",
        "unchanged tags/only-tag/feed.json",
        f"0 created, 3 changed, 3 unchanged, 0 removed in {settings.feeds.dir}",
    ]


def test_publisher_feeds_has_help():
    result = CliRunner().invoke(cli, ["feeds", "--help"])
    assert result.exit_code == 0 and "RSS, Atom and JSON" in result.output


def test_an_unwritable_feeds_dir_is_a_one_line_error(store, make_settings, database_url, tmp_path, cli_stores):
    settings = make_settings({"feeds": {"dir": "blocked"}}, database_url=database_url)
    (tmp_path / "blocked").write_text("a file where the feeds folder should be")
    add_drafts(store, settings, tagged("Plain", 1, ()))
    settings.path.write_text(
        f'[site]\nurl = "{SITE}"\n\n[database]\nurl = "{database_url}"\n\n[feeds]\ndir = "blocked"\n', encoding="utf-8"
    )
    result = CliRunner().invoke(cli, ["--config", str(settings.path), "feeds"])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: cannot write the feed {tmp_path / 'blocked' / 'rss.xml'}: ")
    assert len(result.output.splitlines()) == 1
