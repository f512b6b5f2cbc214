"""The Markdown importer: front matter, the teaser break, sanitising."""

import re
import tracemalloc
from datetime import UTC, datetime

import pytest

from publisher.errors import ContentError
from publisher.importers.markdown import parse_markdown

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_yaml_front_matter_and_more_break():
    draft = parse_markdown(
        "---\ntitle: Hello, world’s end\ndate: 2026-02-03\ntags: [a, B c]\nauthors: Ann\n---\n"
        "Intro *text*.\n\n<!--more-->\n\nRest.\n",
        where="post.md",
        now=NOW,
    )
    assert draft.title == "Hello, world’s end" and draft.slug == "hello-worlds-end"
    assert draft.published == datetime(2026, 2, 3, tzinfo=UTC)
    assert draft.tags == ("a", "B c") and draft.authors == ("Ann",)
    assert draft.truncated
    assert draft.summary_html == "<p>Intro <em>text</em>.</p>"
    assert "<p>Rest.</p>" in draft.content_html and "more" not in draft.content_html


def test_toml_front_matter_slug_and_summary():
    draft = parse_markdown(
        '+++\ntitle = "T"\nslug = "Custom Slug"\nsummary = "Short **one**"\n+++\nBody\n', where="post.md", now=NOW
    )
    assert draft.slug == "custom-slug"
    assert draft.summary_html == "<p>Short <strong>one</strong></p>"
    assert not draft.truncated and draft.published == NOW


def test_scripts_and_handlers_are_removed():
    draft = parse_markdown(
        '---\ntitle: T\n---\n<script>alert(1)</script>\n\n<a href="x" onclick="y">l</a>\n', where="p.md", now=NOW
    )
    assert "<script" not in draft.content_html and "onclick" not in draft.content_html


def test_draft_files_are_skipped():
    assert parse_markdown("---\ntitle: T\ndraft: true\n---\nx\n", where="p.md", now=NOW) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\ntitle: T\n", r"p\.md:1: front matter opened with --- is never closed"),
        ("---\n- a list\n---\nx", r"p\.md:2: front matter must be a table"),
        ("---\ntitel: T\n---\nx", r"p\.md: unknown front matter key titel"),
        ("---\ndate: 2026-01-01\n---\nx", r"p\.md: front matter needs a title"),
        ("---\ntitle: T\ndate: soon\n---\nx", r"p\.md: front matter date: 'soon' is not an ISO-8601 date"),
        ("+++\ntitle = \n+++\nx", r"p\.md:1: invalid TOML front matter"),
    ],
)
def test_broken_front_matter_is_named(text, message):
    with pytest.raises(ContentError, match=message):
        parse_markdown(text, where="p.md", now=NOW)


def test_an_impossible_date_is_an_error_not_a_crash():
    with pytest.raises(ContentError, match=r"p\.md:2: invalid front matter"):
        parse_markdown("---\ntitle: T\ndate: 2025-13-45\n---\nx\n", where="p.md", now=NOW)


def test_only_http_https_and_mailto_links_survive():
    text = (
        "---\ntitle: Links\n---\n[a](javascript:alert(1)) [b](JaVaScRiPt:x) "
        '<a href="vbscript:x">c</a> <a href="tel:123">d</a> ![i](data:image/png;base64,AAAA) '
        "[ok](https://e.org/) [mail](mailto:ed@e.org) [rel](/about)\n"
    )
    draft = parse_markdown(text, where="p.md", now=NOW)
    hrefs = re.findall(r'(?:href|src)="([^"]*)"', draft.content_html)
    assert hrefs == ["https://e.org/", "mailto:ed@e.org", "/about"]


LAUGHS = (
    "---\n"
    + "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
        for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
    )
    + "tags: *i\n---\nbody\n"
)


def test_yaml_aliases_are_refused_before_they_expand():
    tracemalloc.start()
    try:
        with pytest.raises(
            ContentError, match=r"^p\.md:3: invalid YAML front matter: aliases \(\*name\) are not allowed"
        ):
            parse_markdown(LAUGHS, where="p.md", now=NOW)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(LAUGHS) < 500 and peak < 5_000_000


@pytest.mark.parametrize(
    "front",
    [
        "title: T\ntags: " + str(list(range(20_000))),
        "title: T\ndate: " + "9" * 20_000,
        "title: T\n" + "".join(f"k{n}: v\n" for n in range(10_000)),
        "title: T\n1: a\nb: c",
        "title: [" + "[" * 50 + "]" * 51,
    ],
)
def test_error_messages_stay_one_short_line(front):
    with pytest.raises(ContentError) as raised:
        parse_markdown(f"---\n{front}\n---\nbody\n", where="p.md", now=NOW)
    message = str(raised.value)
    assert "\n" not in message and len(message) < 500, message[:1000]


def test_a_symlink_out_of_the_content_folder_is_refused_and_one_inside_is_followed(tmp_path):
    from publisher.importers.markdown import read_markdown

    content, elsewhere = tmp_path / "content", tmp_path / "private"
    (content / "drafts").mkdir(parents=True)
    elsewhere.mkdir()
    (content / "a.md").write_text("---\ntitle: A\n---\nbody\n")
    (content / "drafts" / "b.txt").write_text("---\ntitle: B\n---\nbody\n")
    (content / "b.md").symlink_to(content / "drafts" / "b.txt")  # inside the folder: followed
    assert [d.title for d in read_markdown(content, now=NOW)] == ["A", "B"]

    (elsewhere / "secret.md").write_text("---\ntitle: Secret\n---\nthe password is hunter2\n")
    (content / "leak.md").symlink_to(elsewhere / "secret.md")
    with pytest.raises(ContentError, match=r"leak\.md: a symbolic link to .*secret\.md, outside the source folder"):
        read_markdown(content, now=NOW)
    (content / "leak.md").unlink()
    (content / "linked").symlink_to(elsewhere, target_is_directory=True)  # a linked folder is not entered
    assert [d.title for d in read_markdown(content, now=NOW)] == ["A", "B"]


@pytest.mark.parametrize("fence", ["---\nx: " + "[" * 5000 + "]" * 5000, "+++\nx = " + "[" * 5000 + "]" * 5000])
def test_deeply_nested_front_matter_is_a_content_error(fence):
    closing = fence.partition("\n")[0]
    text = f"{fence}\ntitle: t\n{closing}\nBody.\n" if closing == "---" else f"{fence}\n{closing}\nBody.\n"
    with pytest.raises(ContentError, match=r"^deep\.md:\d+: invalid (YAML |TOML )?front matter"):
        parse_markdown(text, where="deep.md", now=NOW)


def test_html_nested_absurdly_deep_is_refused_not_sanitised_for_minutes():
    text = "---\ntitle: Deep\n---\n" + "<div>" * 60_000 + "x\n"  # ~300 KB; nh3 would take minutes
    with pytest.raises(ContentError, match=r"^deep\.md: its HTML nests deeper than 200 levels"):
        parse_markdown(text, where="deep.md", now=NOW)
    fine = parse_markdown("---\ntitle: Fine\n---\n" + "<div>" * 150 + "x" + "</div>" * 150, where="f.md", now=NOW)
    assert fine is not None and fine.content_html.count("<div>") == 150


def test_editing_a_title_updates_the_article_in_place(store, tmp_path):
    """Without a `slug`, a Markdown article is its file: a new title is an update, not a second article."""
    from dataclasses import replace

    from publisher.importers.markdown import read_markdown

    def ingest(drafts):
        return store.articles.ingest(drafts, guid_authority="n.org", now=NOW, source="content")

    folder = tmp_path / "content"
    (folder / "2026").mkdir(parents=True)
    post, pinned = folder / "2026" / "post.md", folder / "pinned.md"
    pinned.write_text("---\ntitle: Pinned\nslug: pinned\n---\nBody.\n")
    post.write_text("---\ntitle: First title\ndate: 2026-01-01T08:00:00Z\n---\nBody.\n")
    # stored by a version that keyed Markdown by the title's slug: it is found, not doubled
    ingest([replace(d, key=d.slug, former_key="") for d in read_markdown(folder, now=NOW)])
    (before,) = [a for a in store.articles.newest() if a.title == "First title"]
    assert ingest(read_markdown(folder, now=NOW)).added == []

    post.write_text("---\ntitle: A better title\ndate: 2026-01-01T08:00:00Z\n---\nBody.\n")
    report = ingest(read_markdown(folder, now=NOW))
    assert (report.added, report.updated) == ([], ["A better title"])
    titles = sorted(a.title for a in store.articles.newest())
    assert titles == ["A better title", "Pinned"]
    (after,) = [a for a in store.articles.newest() if a.title == "A better title"]
    assert (after.guid, after.published) == (before.guid, before.published)
    pinned.write_text("---\ntitle: Pinned, renamed\nslug: pinned\n---\nBody.\n")  # a slug still keys it
    assert ingest(read_markdown(folder, now=NOW)).updated == ["Pinned, renamed"]
    assert len(store.articles.newest()) == 2
