"""The feed importer, from files and over HTTP with conditional GET."""

import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from publisher.errors import ContentError
from publisher.importers.feed import parse_feed, read_feed

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
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
    assert second.published == datetime(2025, 1, 2, 8, 0, tzinfo=timezone.utc)
    assert second.content_html == "<p>Full</p>" and not second.truncated
    assert second.authors == ("Bo",) and second.tags == ("news",) and second.url == "https://e.org/2"
    assert first.truncated and first.summary_html == "Only a summary"


def test_not_xml_is_an_error_with_a_line():
    with pytest.raises(ContentError, match=r"^f\.xml:\d+: not a valid RSS or Atom feed"):
        parse_feed(b"<html><body>oops", where="f.xml", now=NOW)


class _FeedServer(BaseHTTPRequestHandler):
    requests: list = []

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
        assert len(read_feed(url, store=store, now=NOW)) == 2
        assert read_feed(url, store=store, now=NOW) == []
        assert _FeedServer.requests[-1].get("If-None-Match") == '"v1"'
    finally:
        server.shutdown()
        server.server_close()
