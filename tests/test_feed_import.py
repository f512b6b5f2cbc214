"""The feed importer, from files and over HTTP with conditional GET."""

import contextlib
import functools
import gzip
import re
import socket
import threading
import time
import tracemalloc
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from publisher.errors import ConfigError, ContentError
from publisher.importers.feed import parse_feed, read_feed
from publisher.model import SourceState

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Elsewhere</title><id>urn:x</id><updated>2025-01-02T00:00:00Z</updated>
  <entry><id>urn:uuid:1</id><title>Second \xe2\x80\x93 post</title><link href="https://e.org/2"/>
    <updated>2025-01-02T10:00:00Z</updated><published>2025-01-02T09:00:00+01:00</published>
    <author><name>Bo</name></author><category term="news"/>
    <content type="html">&lt;p&gt;Full&lt;/p&gt;&lt;script&gt;x()&lt;/script&gt;</content></entry>
  <entry><id>urn:uuid:0</id><title>First</title><link href="https://e.org/1"/>
    <updated>2025-01-01T00:00:00Z</updated><summary>Only a summary</summary></entry>
</feed>"""


def test_atom_entries_become_sanitised_drafts():
    second, first = parse_feed(ATOM, where="f.xml", now=NOW)
    assert second.title == "Second – post" and second.guid == "urn:uuid:1"
    assert second.published == datetime(2025, 1, 2, 8, 0, tzinfo=UTC)
    assert second.content_html == "<p>Full</p>" and not second.truncated
    assert second.authors == ("Bo",) and second.tags == ("news",) and second.url == "https://e.org/2"
    assert first.truncated and first.summary_html == "Only a summary"


def test_not_xml_is_an_error_with_a_line():
    with pytest.raises(ContentError, match=r"^f\.xml:\d+: not a valid RSS or Atom feed"):
        parse_feed(b"<html><body>oops", where="f.xml", now=NOW)


class _FeedServer(BaseHTTPRequestHandler):
    requests: ClassVar[list] = []

    def do_GET(self):
        type(self).requests.append(dict(self.headers))
        if self.headers.get("If-None-Match") == '"v1"':
            self.send_response(304)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("ETag", '"v1"')
        self.send_header("Content-Type", "application/atom+xml")
        self.end_headers()
        self.wfile.write(ATOM)

    def log_message(self, *args):
        pass


def test_url_import_uses_conditional_get(store):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FeedServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
        drafts, state = read_feed(url, store=store, now=NOW)
        assert len(drafts) == 2 and state == SourceState(url, '"v1"', "")
        store.articles.ingest(
            drafts, site_url="https://n.org", guid_authority="n.org", now=NOW, source=url, source_state=state
        )
        assert read_feed(url, store=store, now=NOW) == ([], None)
        assert _FeedServer.requests[-1].get("If-None-Match") == '"v1"'
    finally:
        server.shutdown()
        server.server_close()


RELATIVE = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>T</title><link>https://blog.example.net/</link><description>d</description>
<item><title>Tom &amp;amp; Jerry &amp;#8217; &lt;b&gt;x&lt;/b&gt;</title><link>/posts/1</link>
<guid isPermaLink="false">p1</guid><description>&lt;a href="/about"&gt;about&lt;/a&gt;</description></item>
</channel></rss>"""


def test_html_titles_become_text_and_relative_links_absolute():
    (draft,) = parse_feed(RELATIVE, where="f.xml", now=NOW)
    assert draft.title == "Tom & Jerry ’ x"
    assert draft.url == "https://blog.example.net/posts/1"
    (fetched,) = parse_feed(RELATIVE, where="u", now=NOW, url="https://mirror.example.org/feeds/rss.xml")
    assert fetched.url == "https://mirror.example.org/posts/1"
    assert 'href="https://mirror.example.org/about"' in fetched.summary_html


def test_very_long_titles_and_ids_fit_the_store(store, settings):
    from publisher.importers.markdown import parse_markdown

    long_title = "A very long title " * 20
    draft = parse_markdown(f"---\ntitle: {long_title}\n---\nbody\n", where="p.md", now=NOW)
    entry_id = "urn:" + "x" * 600
    feed = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:f</id><updated>2025-01-01T00:00:00Z'
        b"</updated><entry><id>" + entry_id.encode() + b"</id><title>Short</title>"
        b'<updated>2025-01-01T00:00:00Z</updated><link href="https://e.org/s"/></entry></feed>'
    )
    drafts = [draft, *parse_feed(feed, where="f.xml", now=NOW)]
    store.articles.ingest(drafts, site_url=settings.site.url, guid_authority="x", now=NOW, source="t")
    stored = store.articles.newest()
    assert len(stored) == 2 and max(len(a.slug) for a in stored) <= 200
    assert long_title.strip() in {a.title for a in stored}


HOSTILE_LINKS = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>T</title><link>https://blog.example.net/</link><description>d</description>
<item><title>Script link</title><link>javascript:alert(1)</link><guid isPermaLink="false">h1</guid>
<description>&lt;a href="javascript:alert(2)"&gt;a&lt;/a&gt; &lt;a href=" JaVaScRiPt:alert(3)"&gt;b&lt;/a&gt;
&lt;a href=""&gt;c&lt;/a&gt; &lt;img src="data:text/html;base64,PHNjcmlwdD4=" alt="i"&gt;
&lt;a href="vbscript:x"&gt;d&lt;/a&gt; &lt;a href="mailto:ed@example.org"&gt;mail&lt;/a&gt;</description></item>
<item><title>Data link</title><link>data:text/html,&lt;script&gt;alert(4)&lt;/script&gt;</link>
<guid isPermaLink="false">h2</guid><description>x</description></item>
</channel></rss>"""


def test_only_http_https_and_mailto_links_leave_the_feed_importer():
    script, data = parse_feed(HOSTILE_LINKS, where="f.xml", now=NOW)
    assert script.url == "" and data.url == ""  # the store gives them our own permalink
    assert "mailto:ed@example.org" in script.summary_html
    for bad in ("javascript", "JaVaScRiPt", "vbscript", "data:", 'href=""'):
        assert bad not in script.summary_html + script.content_html


def test_a_hostile_feed_leaves_no_foreign_scheme_in_feeds_email_or_archive(make_settings, database_url, store):
    from publisher.archive import write_archive
    from publisher.feeds import build_feeds
    from publisher.issues import build_issue, load_digest
    from publisher.links import article_url
    from publisher.message import compile_message
    from publisher.render import render_digest

    settings = make_settings({"newsletters": {"weekly": {"title": "Weekly"}}}, database_url=database_url)
    drafts = parse_feed(HOSTILE_LINKS, where="f.xml", now=NOW)
    store.articles.ingest(drafts, site_url=settings.site.url, guid_authority="x", now=NOW, source="f.xml")
    assert {article_url(a, settings.site.url) for a in store.articles.newest()} == {
        "https://news.example.org/script-link/",
        "https://news.example.org/data-link/",
    }
    build_feeds(store, settings)
    issue = build_issue(store, settings, "weekly", NOW, NOW)
    store.issues.transition("weekly", issue.number, "sending", NOW)
    write_archive(store, settings, "weekly")
    weekly = settings.newsletter("weekly")
    rendered = render_digest(load_digest(store, issue, weekly), settings=settings, newsletter=weekly)
    mail = compile_message(rendered, settings=settings, newsletter=weekly, issue_number=1)
    outputs = [path.read_text() for path in (*settings.feeds.dir.rglob("*.*"), *settings.archive.dir.rglob("*.*"))]
    outputs += [
        rendered.html,
        rendered.text,
        mail.personalise(subscriber_id=1, email="a@b.org", unsubscribe_url="https://n.org/u").decode(),
    ]
    assert len(outputs) >= 6
    for text in outputs:
        assert not re.search(r"(?i)\b(javascript|vbscript|data):", text)
        assert 'href=""' not in text and 'src=""' not in text


class _Server:
    """A real HTTP server on loopback answering every GET with `body` and `headers`; it records
    each request's headers. `chunks` sends the body in pieces without a Content-Length."""

    def __init__(self, body: bytes, headers: dict | None = None, *, chunked: bool = False):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.requests.append(dict(self.headers))
                if self.headers.get("If-None-Match") and self.headers["If-None-Match"] == (headers or {}).get("ETag"):
                    self.send_response(304)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    try:
                        for start in range(0, len(body), 65536):
                            piece = body[start : start + 65536]
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.write(b"0\r\n\r\n")
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/feed.xml"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@functools.cache
def _gzip_bomb() -> bytes:
    """About 60 KB of gzip that expands to 60 MB (made on first use, not at collection)."""
    return gzip.compress(ATOM[:-7] + b"<!--" + b" " * 60_000_000 + b"-->" + ATOM[-7:], compresslevel=9)


@pytest.mark.parametrize(
    ("body", "headers", "chunked"),
    [
        ("bomb", {"Content-Encoding": "gzip"}, False),
        ("bomb", {"Content-Encoding": "gzip"}, True),
        (ATOM + b" " * 3_000_000, {}, False),
        (ATOM + b" " * 3_000_000, {}, True),
    ],
    ids=["gzip-bomb", "gzip-bomb-chunked", "large", "large-chunked"],
)
def test_a_feed_larger_than_max_bytes_stops_at_the_cap_with_one_line(store, body, headers, chunked):
    body = _gzip_bomb() if body == "bomb" else body
    with _Server(body, headers, chunked=chunked) as server:
        tracemalloc.start()
        try:
            with pytest.raises(ContentError) as raised:
                read_feed(server.url, store=store, now=NOW, max_bytes=1_000_000)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert str(raised.value) == (
        f"{server.url}: the feed is larger than 1000000 bytes ([[sources]] max_bytes); not imported"
    )
    assert peak < 12_000_000


def test_a_gzip_feed_under_the_cap_is_read(store):
    with _Server(gzip.compress(ATOM), {"Content-Encoding": "gzip"}) as server:
        drafts, _ = read_feed(server.url, store=store, now=NOW, max_bytes=len(ATOM))
    assert [d.title for d in drafts] == ["Second – post", "First"]


def test_max_bytes_is_read_from_the_sources_table(make_settings):
    settings = make_settings({"sources": [{"path": "https://e.org/feed", "max_bytes": 5000}]})
    assert settings.sources[0].max_bytes == 5000
    assert make_settings({"sources": [{"path": "x.txt"}]}).sources[0].max_bytes == 20_000_000
    with pytest.raises(ConfigError, match=r"sources\[0\]\.max_bytes must be at least 1, got 0"):
        make_settings({"sources": [{"path": "x", "max_bytes": 0}]})


def test_the_etag_is_saved_only_with_the_imported_articles(make_settings, database_url, store, monkeypatch):
    """A failed ingest leaves no validator behind: the next poll fetches the whole feed again."""
    from publisher.content import import_sources
    from publisher.errors import StoreError
    from publisher.store.articles import ArticleStore

    with _Server(ATOM, {"ETag": '"v1"', "Content-Type": "application/atom+xml"}) as server:
        settings = make_settings({"sources": [{"path": server.url}]}, database_url=database_url)

        def broken(*args, **kwargs):
            raise StoreError("the disk is full")

        with monkeypatch.context() as patched:
            patched.setattr(ArticleStore, "_set_tags", broken)  # fails after the validators were written
            with pytest.raises(StoreError):
                import_sources(store, settings, settings.sources, as_of=NOW, now=NOW)
        assert store.articles.source_state(server.url) == ("", "")
        (report,) = import_sources(store, settings, settings.sources, as_of=NOW, now=NOW)
        assert "If-None-Match" not in server.requests[-1] and len(report.added) == 2
        (again,) = import_sources(store, settings, settings.sources, as_of=NOW, now=NOW)
        assert server.requests[-1].get("If-None-Match") == '"v1"' and not again.added


class _Redirecting(BaseHTTPRequestHandler):
    """/loop redirects to itself; /feed.xml redirects, with a gzip bomb as the redirect's body."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path in ("/feed.xml", "/loop"):
            self.send_response(301)
            self.send_header("Location", "/loop" if self.path == "/loop" else "/real.xml")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(_gzip_bomb())))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(_gzip_bomb())
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(ATOM)))
        self.end_headers()
        self.wfile.write(ATOM)

    def log_message(self, *args):
        pass


def test_a_redirect_body_is_never_read_and_redirects_are_bounded(store):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        tracemalloc.start()
        try:
            drafts, state = read_feed(f"{base}/feed.xml", store=store, now=NOW, max_bytes=1_000_000)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(drafts) == 2 and state is not None and peak < 12_000_000
        assert drafts[0].url == "https://e.org/2"
        with pytest.raises(ContentError, match=r"/loop: more than 5 redirects$"):
            read_feed(f"{base}/loop", store=store, now=NOW)
    finally:
        server.shutdown()
        server.server_close()


class _Dribbling(BaseHTTPRequestHandler):
    """Sends the feed a few bytes at a time, each within the read timeout, never finishing soon."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for start in range(0, len(ATOM), 16):
                piece = ATOM[start : start + 16]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(0.2)
            self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args):
        pass


def test_a_download_that_never_ends_stops_at_the_total_timeout(store, monkeypatch):
    import publisher.importers.feed as feed

    monkeypatch.setattr(feed, "FETCH_TIMEOUT", 0.5)  # the real one is 120 s: too long for a test
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dribbling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
    try:
        started = time.monotonic()
        with pytest.raises(ContentError, match=r"^http://127\.0\.0\.1:\d+/feed\.xml: the download took longer than"):
            read_feed(url, store=store, now=NOW)
        assert time.monotonic() - started < 5
    finally:
        server.shutdown()
        server.server_close()


def test_a_feed_url_error_never_shows_its_credentials(store):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ContentError) as raised:
        read_feed(f"http://reader:hunter2@127.0.0.1:{port}/feed.xml", store=store, now=datetime.now(UTC))
    assert "hunter2" not in str(raised.value) and "//***@127.0.0.1" in str(raised.value)


def test_an_entry_with_html_nested_absurdly_deep_is_refused_quickly():
    deep = ("&lt;div&gt;" * 60_000) + "x"  # 660 KB of description: nh3 would take minutes
    rss = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>https://a.example/</link>'
        f"<item><title>Deep</title><link>https://a.example/1</link><description>{deep}</description></item>"
        "</channel></rss>"
    ).encode()
    with pytest.raises(ContentError, match=r"^deep\.xml: entry 1: its HTML nests deeper than 200 levels"):
        parse_feed(rss, where="deep.xml", now=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def dribbling_server():
    """Answers with one header line every 0.3 s for 6 s: each read is quick, the whole is not."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        with contextlib.suppress(OSError):
            connection, _ = listener.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"HTTP/1.1 200 OK\r\n")
                for i in range(20):
                    if stop.wait(0.3):
                        return
                    connection.sendall(f"X-Slow-{i}: a\r\n".encode())
                body = b"<rss version='2.0'><channel><title>T</title></channel></rss>"
                connection.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/feed.xml"
    stop.set()
    listener.close()
    thread.join(5)


def test_the_total_time_limit_covers_slowly_sent_headers(store, dribbling_server, monkeypatch):
    monkeypatch.setattr("publisher.importers.feed.FETCH_TIMEOUT", 1.5)
    with pytest.raises(ContentError, match=r"the download took longer than 1\.5 seconds"):
        read_feed(dribbling_server, store=store, now=datetime(2026, 1, 1, tzinfo=UTC))


MEDIA_RSS = b"""<?xml version="1.0"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><title>t</title><link>https://ex.org/</link>
<item><title>With media</title><link>https://ex.org/1</link><guid>https://ex.org/1</guid><description>Text.</description>
<media:content url="https://cdn.ex.org/1.jpg" medium="image" width="1200" height="800"/></item>
<item><title>With enclosure</title><link>https://ex.org/2</link><guid>https://ex.org/2</guid><description>Text.</description>
<enclosure url="https://cdn.ex.org/2.png" type="image/png" length="1000"/></item>
<item><title>Podcast</title><link>https://ex.org/3</link><guid>https://ex.org/3</guid><description>Text.</description>
<enclosure url="https://cdn.ex.org/3.mp3" type="audio/mpeg" length="1000"/></item>
<item><title>Plain http</title><link>https://ex.org/4</link><guid>https://ex.org/4</guid><description>Text.</description>
<media:thumbnail url="http://cdn.ex.org/4.jpg"/></item>
<item><title>Forged</title><link>https://ex.org/5</link><guid>https://ex.org/5</guid><description>Text.</description>
<media:content url="https://cdn.ex.org/5.jpg" medium="image" width="&#178;" height="NINES"/></item>
</channel></rss>""".replace(b"NINES", b"9" * 300)


def test_media_tags_and_image_enclosures_give_an_entry_its_image_for_the_email():
    from publisher.images import first_image

    media, enclosure, podcast, insecure, forged = parse_feed(MEDIA_RSS, where="f.xml", now=NOW)
    assert first_image(media.content_html) is not None
    assert first_image(media.content_html).src == "https://cdn.ex.org/1.jpg"
    assert first_image(media.content_html).alt == "With media"
    assert "https://cdn.ex.org/2.png" in enclosure.content_html
    assert first_image(enclosure.content_html) is None  # no size: it could be a pixel shown at 576 px
    assert first_image(forged.content_html) is None  # a forged size leaves it out, the issue still goes
    assert "<img" not in podcast.content_html and "<img" not in insecure.content_html
    assert media.summary_html == media.content_html  # a whole article stays whole (no "Continue reading")
