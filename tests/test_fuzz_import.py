"""Fuzzing the importers: mutated and hostile captures, Markdown files and feeds.

Whatever the bytes, an import either stores sanitised articles or fails with one `ContentError`
line, within a bounded amount of memory, leaving the store exactly as it was. Hypothesis runs a
fixed number of examples, derandomised, so a run is repeatable and takes a few seconds.
"""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.config import SourceSettings, settings_from_dict
from publisher.content import import_sources
from publisher.errors import ContentError
from publisher.store import Store
from publisher.text import safe_links, safe_url

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PEAK_BYTES = 64_000_000
FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

TEXTPAGE = """Less is more
Why small tools win.
• They do one thing
• They compose
Continue reading Less is more

A full post
With “quotes” – and dashes.
Another paragraph.
""".encode()
MARKDOWN = b"""---
title: "A post"
date: 2025-01-02T03:04:05+01:00
tags: [python, "email"]
authors: Ada
---
Intro with a [link](https://e.org/a) and ![img](/i.png).

<!--more-->

* one
* two

<a href="https://e.org" onclick="x()">raw</a>
"""
ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://e.org/">
  <title>Elsewhere</title><id>urn:x</id><updated>2025-01-02T00:00:00Z</updated>
  <entry><id>urn:uuid:1</id><title type="html">Second &amp;amp; post</title><link href="/2"/>
    <updated>2025-01-02T10:00:00Z</updated><author><name>Bo</name></author><category term="news"/>
    <content type="html">&lt;p&gt;Full &lt;a href="/x"&gt;x&lt;/a&gt;&lt;/p&gt;</content></entry>
  <entry><id>urn:uuid:0</id><title>First</title><link href="https://e.org/1"/>
    <updated>2025-01-01T00:00:00Z</updated><summary>Only a summary</summary></entry>
</feed>"""
RSS = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>T</title><link>https://blog.example.net/</link><description>d</description>
<item><title>Tom</title><link>/posts/1</link><guid isPermaLink="false">p1</guid>
<description>&lt;a href="/about"&gt;about&lt;/a&gt;</description><pubDate>Tue, 10 Jun 2003 04:00:00 GMT</pubDate></item>
</channel></rss>"""

# Pieces an attacker (or a broken CMS) would put in: links with other schemes, entities, YAML
# aliases, NUL bytes, invalid UTF-8, control characters, markers of our own formats.
HOSTILE = [
    b"javascript:alert(1)",
    b" JaVaScRiPt:alert(1)",
    b"data:text/html;base64,PHNjcmlwdD4=",
    b'<a href="javascript:alert(1)">x</a>',
    b"<script>alert(1)</script>",
    b'<img src=x onerror="alert(1)">',
    b"&lt;a href=&quot;vbscript:x&quot;&gt;",
    b"<link>javascript:alert(1)</link>",
    b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>',
    b"&d;&d;&d;",
    b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>&e;',
    b"a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n",
    b"*a",
    b"!!python/object/apply:os.system ['true']",
    b"date: 2025-13-45\n",
    b"tags: {a: b}\n",
    b"1: 2\n",
    b"---\n",
    b"+++\n",
    b"<!--more-->",
    b"Continue reading ",
    "• ".encode(),
    b"\x00",
    b"\xff\xfe",
    b"\xed\xa0\x80",
    b"\x1b[31m",
    b"\r",
    b"\x0b\x0c",
    b"\xef\xbb\xbf",
    b"]]><![CDATA[",
    b"&#0;&#xD800;&#x1F600;",
    "\u202e\ufeff\ud7ff".encode(),
    b"9" * 400,
    b"x" * 5000,
]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed with a few insertions (random or hostile), deletions, overwrites and repetitions."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["insert", "hostile", "delete", "overwrite", "repeat"]))
        if operation == "insert":
            data[at:at] = draw(st.binary(max_size=12))
        elif operation == "hostile":
            data[at:at] = draw(st.sampled_from(HOSTILE))
        elif operation == "delete":
            del data[at : at + draw(st.integers(1, 80))]
        elif operation == "overwrite":
            piece = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(piece)] = piece
        else:
            data[at:at] = bytes(data[at : at + draw(st.integers(1, 120))]) * draw(st.integers(1, 40))
    return bytes(data)


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """One store and settings for every example; examples that import add to it."""
    folder = tmp_path_factory.mktemp("fuzz")
    settings_ = settings_from_dict(
        {"site": {"url": "https://news.example.org"}, "database": {"url": f"sqlite:///{folder / 'p.db'}"}},
        folder / "config.toml",
    )
    store = Store.open(settings_.database.url)
    yield folder, settings_, store
    store.close()


def _snapshot(store: Store) -> list[tuple]:
    return [(a.guid, a.slug, a.content_hash, a.updated) for a in store.articles.newest()]


def _import_checked(place, name: str, data: bytes, fmt: str) -> None:
    """Import `data` as file `name`: a ContentError of one line and an unchanged store, or success."""
    folder, settings_, store = place
    path = folder / name
    path.write_bytes(data)
    before = _snapshot(store)
    tracemalloc.start()
    try:
        import_sources(store, settings_, [SourceSettings(path=str(path), format=fmt)], as_of=NOW, now=NOW)
    except ContentError as error:
        message = str(error)
        assert message and "\n" not in message and len(message) < 2000, message[:3000]
        assert _snapshot(store) == before
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < PEAK_BYTES, peak
    for article in store.articles.newest(20):
        assert safe_url(article.origin) == article.origin
        assert safe_links(article.content_html) == article.content_html
        assert safe_links(article.summary_html) == article.summary_html


@FUZZ
@given(data=mutated([TEXTPAGE]))
def test_textpage_captures(place, data: bytes):
    _import_checked(place, "capture.txt", data, "textpage")


@FUZZ
@given(data=mutated([MARKDOWN]))
def test_markdown_files(place, data: bytes):
    _import_checked(place, "post.md", data, "markdown")


@FUZZ
@given(data=mutated([ATOM, RSS]))
def test_feeds(place, data: bytes):
    _import_checked(place, "feed.xml", data, "feed")


@pytest.mark.parametrize("snippet", HOSTILE)
@pytest.mark.parametrize(("seed", "name", "fmt"), [(TEXTPAGE, "c.txt", "textpage"), (MARKDOWN, "p.md", "markdown")])
def test_every_hostile_snippet_at_the_start_middle_and_end(place, snippet: bytes, seed: bytes, name: str, fmt: str):
    middle = len(seed) // 2
    for data in (snippet + seed, seed[:middle] + snippet + seed[middle:], seed + snippet):
        _import_checked(place, name, data, fmt)


@pytest.mark.parametrize("snippet", HOSTILE)
def test_every_hostile_snippet_inside_a_feed(place, snippet: bytes):
    for seed in (ATOM, RSS):
        head, tail = seed.split(b"?>", 1)
        _import_checked(place, "f.xml", head + b"?>" + snippet + tail, "feed")
        at = seed.index(b"<title>") + len(b"<title>")
        _import_checked(place, "f.xml", seed[:at] + snippet + seed[at:], "feed")
        _import_checked(place, "f.xml", seed.replace(b"/x", snippet).replace(b"/about", snippet), "feed")


def test_the_seeds_themselves_import(place):
    """The fuzzing starts from inputs that work: it is not just watching errors."""
    _, _, store = place
    folder, settings_, _ = place
    for data, name, fmt in ((TEXTPAGE, "c.txt", "textpage"), (MARKDOWN, "p.md", "markdown"), (ATOM, "f.xml", "feed")):
        (folder / name).write_bytes(data)
        source = SourceSettings(path=str(folder / name), format=fmt)
        (report,) = import_sources(store, settings_, [source], as_of=NOW, now=NOW)  # raises if it fails
        assert report.added or report.updated or report.unchanged
