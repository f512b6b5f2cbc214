"""Importing into the store: idempotency, updates keep the guid, bad input changes nothing."""

from datetime import timedelta
from pathlib import Path

import pytest

from publisher.config import SourceSettings
from publisher.content import detect_format, import_sources
from publisher.errors import ContentError
from tests.helpers import EARLY_AS_OF, LATE_AS_OF, REPO


def _import(store, settings, path, as_of, fmt="auto", now=None):
    return import_sources(store, settings, [SourceSettings(path=str(path), format=fmt)], as_of=as_of, now=now or as_of)[
        0
    ]


def test_both_captures_give_each_article_once_and_reimport_changes_nothing(store, settings, captures):
    early, late = captures.early, captures.late
    first = _import(store, settings, early.path, early.as_of)
    second = _import(store, settings, late.path, late.as_of)
    new, shared = len(captures.issue_2), captures.shared  # 18 and 2 in the seeds
    assert (len(first.added), len(second.added), second.unchanged) == (early.count, new, shared)
    assert store.articles.count() == captures.total
    before = store.articles.newest()
    again = _import(store, settings, early.path, early.as_of + timedelta(days=60))
    assert (again.added, again.updated, again.unchanged) == ([], [], early.count)
    assert store.articles.newest() == before


def test_articles_keep_first_seen_dates_and_come_back_newest_first(store, settings, captures):
    early, late = captures.early, captures.late
    _import(store, settings, early.path, early.as_of)
    _import(store, settings, late.path, late.as_of)
    articles = store.articles.newest()
    assert [a.published for a in articles] == sorted((a.published for a in articles), reverse=True)
    shared = store.articles.by_slug(captures.shared_slug)
    assert shared.published == early.as_of - timedelta(minutes=captures.shared_position)
    assert articles[0].title == captures.issue_2[0]
    assert all(a.origin == "" for a in articles)  # our own links are computed, never stored
    assert all(a.guid.startswith("tag:news.example.org,") for a in articles)


def test_changed_content_updates_in_place_and_keeps_guid(store, settings, tmp_path: Path):
    capture = tmp_path / "page.txt"
    capture.write_text("A title\n\nOld teaser.\n\nContinue reading A title\n", encoding="utf-8")
    _import(store, settings, capture, EARLY_AS_OF)
    original = store.articles.newest()[0]
    capture.write_text("A title\n\nNew teaser.\n\nContinue reading A title\n", encoding="utf-8")
    report = _import(store, settings, capture, LATE_AS_OF)
    changed = store.articles.newest()[0]
    assert report.updated == ["A title"]
    assert (changed.guid, changed.published) == (original.guid, original.published)
    assert changed.content_html == "<p>New teaser.</p>"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.txt", b"", r"empty\.txt:1: the capture is empty"),
        ("binary.txt", b"\x00\x01\x02\xff", r"binary\.txt:1: binary data"),
        ("latin1.txt", b"Caf\xe9\n", r"latin1\.txt:1: not UTF-8"),
        ("marker.txt", b"Title\n\nContinue reading Other\n", r"marker\.txt:3: .*Continue reading Other"),
        ("broken.md", b"---\ntitle: [unclosed\n---\nbody\n", r"broken\.md:\d+: invalid YAML front matter"),
        ("nofront.md", b"# Just markdown\n", r"nofront\.md:1: missing front matter"),
        ("notxml.xml", b"this is not xml at all", r"notxml\.xml:\d+: not a valid RSS or Atom feed"),
    ],
)
def test_malformed_input_names_file_and_line_and_stores_nothing(
    store, settings, captures, tmp_path, name, data, message
):
    _import(store, settings, captures.early.path, captures.early.as_of)
    before = store.articles.newest()
    assert before
    bad = tmp_path / name
    bad.write_bytes(data)
    with pytest.raises(ContentError, match=message):
        _import(store, settings, bad, captures.late.as_of)
    assert store.articles.newest() == before


def test_sample_publication_imports_as_markdown(store, settings):
    report = _import(store, settings, REPO / "sample" / "content", LATE_AS_OF)
    assert len(report.added) == 5
    tags = store.articles.tags()
    assert {"design", "newsletter", "feeds"} <= set(tags)
    assert len(store.articles.newest(tag_slug="design")) == 3


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("a.txt", b"Title", "textpage"),
        ("a.md", b"---", "markdown"),
        ("a.xml", b"<rss/>", "feed"),
        ("capture", b"Plain title\n", "textpage"),
        ("feed", b"\xef\xbb\xbf <?xml version='1.0'?><feed/>", "feed"),
    ],
)
def test_auto_format_by_extension_then_content(tmp_path, name, head, expected):
    path = tmp_path / name
    path.write_bytes(head)
    assert detect_format(str(path)) == expected
    assert detect_format("https://example.org/feed") == "feed"
    assert detect_format(str(tmp_path)) == "markdown"


def test_unstorable_characters_are_dropped_not_fatal(store, settings, tmp_path):
    from publisher.model import Draft

    draft = Draft(
        key="odd",
        slug="odd",
        title="Odd\ud800 one",
        summary_html="<p>a\x00b</p>",
        content_html="<p>c\udfffd</p>",
        truncated=False,
        published=EARLY_AS_OF,
    )
    store.articles.ingest([draft], site_url=settings.site.url, guid_authority="x", now=EARLY_AS_OF, source="t")
    stored = store.articles.by_slug("odd")
    assert (stored.title, stored.summary_html, stored.content_html) == ("Odd one", "<p>ab</p>", "<p>cd</p>")
