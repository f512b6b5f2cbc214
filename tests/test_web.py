"""The public web app over HTTP (Starlette's TestClient), on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import email
import email.policy
import gzip
import logging
import re
import threading
import time
import warnings
from datetime import UTC, datetime, timedelta

import httpx
import itsdangerous.timed
import pytest

from publisher import signup, tokens, verp
from publisher.errors import ConfigError
from publisher.model import Subscriber
from publisher.publication import Publication
from publisher.transports import MemoryTransport
from publisher.web import create_app
from tests.helpers import CORPUS, SAMPLE_TOKEN, make_issue

with warnings.catch_warnings():
    # Starlette asks for httpx2 in its test client; httpx is what the project uses.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

CONFIRM_LINK = re.compile(r"https://news\.example\.org(/confirm/[\w.-]+)")
RSS = b'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>t</title></channel></rss>\n'


@pytest.fixture
def web_settings(make_settings, database_url):
    return make_settings(
        {
            "newsletters": {"weekly": {"title": "The Weekly"}, "daily": {"title": "The Daily"}},
            "web": {"topics": ["python", "email"], "subscribe_per_ip_per_hour": 5},
        },
        database_url=database_url,
    )


@pytest.fixture
def outbox() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture
def client(web_settings, store, outbox):
    with TestClient(
        create_app(Publication(web_settings, store, transport=outbox)), base_url="https://news.example.org"
    ) as test_client:
        yield test_client


def parse(message) -> email.message.EmailMessage:
    return email.message_from_bytes(message.data, policy=email.policy.default)


def confirm_path(message) -> str:
    return CONFIRM_LINK.search(parse(message).get_content())[1]


def subscribe(client, address="reader@example.com", **extra):
    data = {"email": address, "name": "Reader", "newsletter": ["weekly"], "topic": ["python"], **extra}
    return client.post("/subscribe", data=data)


def confirmed(store, web_settings, address="fan@example.com", newsletters=("weekly", "daily")) -> Subscriber:
    now = datetime.now(UTC)
    store.subscribers.add(
        Subscriber(email=address, status="confirmed", newsletters=newsletters, consent_at=now, source="cli"), now
    )
    return store.subscribers.get(address)


def unsubscribe_path(web_settings, person, newsletter="weekly") -> str:
    return tokens.unsubscribe_url("", web_settings.secret_keys, person.id, newsletter)


# --- subscribe ------------------------------------------------------------------------------


def test_the_form_asks_for_email_name_newsletters_and_topics(client):
    page = client.get("/subscribe")
    assert page.status_code == 200
    for field in ('name="email"', 'name="name"', 'value="weekly"', 'value="daily"', 'value="python"'):
        assert field in page.text
    assert "I agree to receive" in page.text
    # one script, our own file (the time-zone guess); nothing inline, and the CSP allows only 'self'
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/static/timezone.js" defer>']
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "Intl.DateTimeFormat" in client.get("/static/timezone.js").text


def test_subscribing_makes_a_pending_subscriber_and_sends_one_confirmation(client, store, outbox):
    page = subscribe(client, "Reader@Example.com")
    assert page.status_code == 200 and "Check your inbox" in page.text
    person = store.subscribers.get("reader@example.com")
    # Nothing the form asked for is attached before the owner confirms: it travels in the link.
    assert (person.status, person.newsletters, person.name, person.source) == ("pending", (), "", "web form")
    [message] = outbox.sent
    mail = parse(message)
    assert message.recipient == "reader@example.com" and mail["To"] == "reader@example.com"
    assert mail["Message-ID"].endswith("@news.example.org>")
    assert b"\r\n" in message.data and b"\n" not in message.data.replace(b"\r\n", b"")
    assert confirm_path(message).startswith("/confirm/")


def test_the_response_is_the_same_whether_or_not_the_address_is_known(client, store, web_settings):
    confirmed(store, web_settings, "known@example.com")
    known = subscribe(client, "known@example.com")
    unknown = subscribe(client, "nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace("known@", "X@") == unknown.text.replace("nobody@", "X@")


def test_a_known_confirmed_subscriber_is_not_changed_by_the_form(client, store, web_settings):
    confirmed(store, web_settings, "known@example.com", newsletters=("weekly",))
    subscribe(client, "known@example.com", newsletter=["daily"])
    assert store.subscribers.get("known@example.com").newsletters == ("weekly",)


def test_the_honeypot_gets_the_same_page_and_nothing_happens(client, store, outbox):
    page = subscribe(client, "bot@example.com", website="http://spam.example")
    assert page.status_code == 200 and "Check your inbox" in page.text
    assert store.subscribers.get("bot@example.com") is None and outbox.sent == []


def test_an_invalid_form_is_shown_again_with_the_reason(client, store):
    page = subscribe(client, "not-an-address")
    assert page.status_code == 400 and "not a valid email address" in page.text
    assert 'aria-invalid="true"' in page.text
    assert client.post("/subscribe", data={"email": "a@example.com"}).status_code == 400  # no newsletter
    assert store.subscribers.count() == 0


def test_at_most_one_confirmation_mail_per_address_per_hour(client, outbox):
    for _ in range(3):
        assert subscribe(client).status_code == 200
    assert len(outbox.sent) == 1


def test_a_burst_from_one_ip_is_rate_limited(client, outbox):
    answers = [subscribe(client, f"r{number}@example.com").status_code for number in range(7)]
    assert answers == [200] * 5 + [429] * 2
    limited = subscribe(client, "late@example.com")
    assert limited.headers["retry-after"] == "3600" and "Too many requests" in limited.text
    assert len(outbox.sent) == 5


# --- confirm --------------------------------------------------------------------------------


def test_confirming_takes_a_post_records_consent_then_sends_the_welcome(client, store, outbox):
    subscribe(client)
    path = confirm_path(outbox.sent[0])
    page = client.get(path)
    assert page.status_code == 200 and '<form method="post"' in page.text
    assert store.subscribers.get("reader@example.com").status == "pending"  # a GET confirms nothing
    assert len(outbox.sent) == 1

    done = client.post(path)
    assert done.status_code == 200 and "You are subscribed" in done.text
    person = store.subscribers.get("reader@example.com")
    assert (person.status, person.source, person.name, person.topics) == (
        "confirmed",
        "web form",
        "Reader",
        ("python",),
    )
    assert person.consent_at is not None
    assert person.consent_text.startswith(signup.CONSENT_VERSION + ": I agree to receive The Weekly")
    welcome = parse(outbox.sent[1])
    assert welcome["Subject"].startswith("Welcome") and "/unsubscribe/" in welcome.get_content()


def test_a_confirmation_link_works_once(client, outbox):
    subscribe(client)
    path = confirm_path(outbox.sent[0])
    assert client.post(path).status_code == 200
    again = client.post(path)
    assert again.status_code == 400 and "already been used" in again.text
    assert client.get(path).status_code == 400


def test_an_expired_confirmation_link_is_refused(client, store, outbox, monkeypatch):
    subscribe(client)
    path = confirm_path(outbox.sent[0])
    later = itsdangerous.timed.time.time() + 3 * 86400  # confirm_expiry is 2 days
    monkeypatch.setattr(itsdangerous.timed, "time", type("Clock", (), {"time": staticmethod(lambda: later)}))
    page = client.post(path)
    assert page.status_code == 400 and "expired" in page.text
    assert store.subscribers.get("reader@example.com").status == "pending"


def test_a_stranger_posting_the_form_cannot_add_newsletters_or_a_name_to_a_pending_address(client, store, outbox):
    subscribe(client, "victim@example.com", name="Victim", newsletter=["weekly"])
    link = confirm_path(outbox.sent[0])
    subscribe(client, "victim@example.com", name="<Evil>", newsletter=["daily"])  # no second mail within the hour
    assert len(outbox.sent) == 1
    assert client.post(link).status_code == 200
    person = store.subscribers.get("victim@example.com")
    assert (person.status, person.newsletters, person.name) == ("confirmed", ("weekly",), "Victim")


def test_confirming_adds_the_newsletters_asked_for_to_a_known_subscriber(client, store, web_settings, outbox):
    confirmed(store, web_settings, "known@example.com", newsletters=("weekly",))
    subscribe(client, "known@example.com", newsletter=["daily"])
    client.post(confirm_path(outbox.sent[0]))
    assert store.subscribers.get("known@example.com").newsletters == ("daily", "weekly")


# --- unsubscribe ----------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["form", "multipart"])
def test_one_click_unsubscribe_without_cookies_answers_2xx_without_redirect(client, store, web_settings, encoding):
    person = confirmed(store, web_settings, newsletters=("weekly",))
    body = {"data": {"List-Unsubscribe": "One-Click"}}
    if encoding == "multipart":
        body["files"] = {"List-Unsubscribe": (None, "One-Click")}
        del body["data"]
    client.cookies.clear()
    answer = client.post(unsubscribe_path(web_settings, person), follow_redirects=False, **body)
    assert 200 <= answer.status_code < 300 and "location" not in answer.headers
    assert "set-cookie" not in answer.headers
    after = store.subscribers.get(person.email)
    assert (after.status, after.newsletters) == ("unsubscribed", ())


def test_one_click_leaves_the_other_newsletters(client, store, web_settings):
    person = confirmed(store, web_settings)
    client.post(unsubscribe_path(web_settings, person, "daily"), data={"List-Unsubscribe": "One-Click"})
    after = store.subscribers.get(person.email)
    assert (after.status, after.newsletters) == ("confirmed", ("weekly",))


def test_a_get_to_the_unsubscribe_url_changes_nothing(client, store, web_settings):
    person = confirmed(store, web_settings)
    page = client.get(unsubscribe_path(web_settings, person))
    assert page.status_code == 200 and "The Weekly" in page.text and 'method="post"' in page.text
    assert store.subscribers.get(person.email).newsletters == ("daily", "weekly")


def test_unsubscribing_is_idempotent_and_offers_to_resubscribe(client, store, web_settings):
    person = confirmed(store, web_settings, newsletters=("weekly",))
    path = unsubscribe_path(web_settings, person)
    client.post(path)
    page = client.post(path)
    assert page.status_code == 200 and "Subscribe again" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]
    assert client.post(f"{path}/resubscribe", data={}).status_code == 403
    back = client.post(f"{path}/resubscribe", data={"csrf": csrf})
    assert back.status_code == 200 and "Welcome back" in back.text
    after = store.subscribers.get(person.email)
    assert (after.status, after.newsletters, after.source) == ("confirmed", ("weekly",), "web resubscribe")


def _tampered(token: str) -> str:
    position = len(token) // 2
    return token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_forged_tampered_and_cross_purpose_tokens_get_a_400_page(client, store, web_settings, method):
    person = confirmed(store, web_settings)
    keys = web_settings.secret_keys
    unsubscribe = tokens.sign(keys, tokens.UNSUBSCRIBE, [person.id, "weekly"])
    preferences = tokens.sign(keys, tokens.PREFERENCES, person.id)
    confirm = tokens.sign_timed(keys, tokens.CONFIRM, {"s": person.id, "n": "x", "l": [], "t": [], "m": ""})
    other_key = tokens.sign(("another key",), tokens.UNSUBSCRIBE, [person.id, "weekly"])
    refused = [
        f"/unsubscribe/{_tampered(unsubscribe)}",
        f"/unsubscribe/{preferences}",
        f"/unsubscribe/{confirm}",
        f"/unsubscribe/{other_key}",
        "/unsubscribe/garbage",
        f"/preferences/{unsubscribe}",
        f"/preferences/{_tampered(preferences)}",
        f"/confirm/{unsubscribe}",
        f"/confirm/{_tampered(confirm)}",
    ]
    for path in refused:
        page = client.request(method, path, data={"List-Unsubscribe": "One-Click"} if method == "POST" else None)
        assert page.status_code == 400, path
        assert "This link does not work" in page.text and "Traceback" not in page.text
    assert store.subscribers.get(person.email).newsletters == ("daily", "weekly")


def test_tokens_signed_with_an_older_key_still_work(make_settings, database_url, store, monkeypatch):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "old-key-8d1e5b7f3a9c2e6d0b4f8a1c7e3d5b92")
    old = make_settings({"newsletters": {"weekly": {}}}, database_url=database_url)
    person = confirmed(store, old, newsletters=("weekly",))
    path = unsubscribe_path(old, person)
    monkeypatch.setenv(
        "PUBLISHER_SECRET_KEY", "new-key-2c6a9e1f5d3b7a0c8e4f2d6b1a9c5e73, old-key-8d1e5b7f3a9c2e6d0b4f8a1c7e3d5b92"
    )
    rotated = make_settings({"newsletters": {"weekly": {}}}, database_url=database_url)
    with TestClient(create_app(Publication(rotated, store, transport=MemoryTransport()))) as test_client:
        assert test_client.post(path).status_code == 200
    assert store.subscribers.get(person.email).status == "unsubscribed"


# --- preferences ----------------------------------------------------------------------------


def _preferences(client, web_settings, person):
    path = tokens.preferences_url("", web_settings.secret_keys, person.id)
    page = client.get(path)
    return path, page, re.search(r'name="csrf" value="([^"]+)"', page.text)[1]


def test_preferences_change_name_newsletters_and_topics(client, store, web_settings):
    person = confirmed(store, web_settings)
    path, page, csrf = _preferences(client, web_settings, person)
    assert page.status_code == 200 and person.email in page.text
    saved = client.post(path, data={"csrf": csrf, "name": "Fan", "newsletter": ["daily"], "topic": ["email"]})
    assert saved.status_code == 200 and "Saved." in saved.text
    after = store.subscribers.get(person.email)
    assert (after.name, after.newsletters, after.topics, after.status) == ("Fan", ("daily",), ("email",), "confirmed")
    client.post(path, data={"csrf": csrf, "name": "Fan"})
    assert store.subscribers.get(person.email).status == "unsubscribed"


def test_preferences_refuse_a_post_without_our_csrf_token(client, store, web_settings):
    person = confirmed(store, web_settings)
    other = confirmed(store, web_settings, "other@example.com")
    path, _, _ = _preferences(client, web_settings, person)
    _, _, other_csrf = _preferences(client, web_settings, other)
    for data in ({}, {"csrf": "forged"}, {"csrf": other_csrf}):
        answer = client.post(path, data={"name": "Mallory", "newsletter": [], **data})
        assert answer.status_code == 403
    after = store.subscribers.get(person.email)
    assert (after.name, after.newsletters) == ("", ("daily", "weekly"))


# --- feeds, archive, health, headers ---------------------------------------------------------


@pytest.fixture
def built(web_settings):
    feeds, archive = web_settings.feeds.dir, web_settings.archive.dir
    (feeds / "tags" / "python").mkdir(parents=True)
    (feeds / "rss.xml").write_bytes(RSS * 20)
    (feeds / "atom.xml").write_bytes(b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"/>')
    (feeds / "feed.json").write_bytes(b'{"version": "https://jsonfeed.org/version/1.1"}')
    (feeds / "tags" / "python" / "rss.xml").write_bytes(RSS)
    (archive / "weekly").mkdir(parents=True)
    (archive / "index.html").write_text("<html><body>Archive</body></html>")
    (archive / "weekly" / "index.html").write_text("<html><body>Weekly issues</body></html>")
    (archive / "weekly" / "1.html").write_text('<html><body style="margin:0">Issue 1</body></html>')
    return web_settings


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/feeds/rss.xml", "application/rss+xml; charset=utf-8"),
        ("/feeds/atom.xml", "application/atom+xml; charset=utf-8"),
        ("/feeds/feed.json", "application/feed+json"),
        ("/feeds/tags/python/rss.xml", "application/rss+xml; charset=utf-8"),
    ],
)
def test_feeds_have_their_content_types_and_validators(built, client, path, media_type):
    answer = client.get(path)
    assert answer.status_code == 200 and answer.headers["content-type"] == media_type
    assert answer.headers["etag"] and answer.headers["last-modified"]


def test_conditional_feed_requests_get_304(built, client):
    first = client.get("/feeds/rss.xml")
    again = client.get("/feeds/rss.xml", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == first.headers["etag"]
    assert again.headers["vary"] == "Accept-Encoding"  # a cache must not serve a gzip 304'd body to others
    since = client.get("/feeds/rss.xml", headers={"if-modified-since": first.headers["last-modified"]})
    assert since.status_code == 304
    stale = client.get("/feeds/rss.xml", headers={"if-none-match": 'W/"other"'})
    assert stale.status_code == 200 and stale.content == RSS * 20


def test_feeds_are_gzipped_for_clients_that_accept_it(built, client):
    answer = client.get("/feeds/rss.xml", headers={"accept-encoding": "gzip"})
    assert answer.headers["content-encoding"] == "gzip" and "Accept-Encoding" in answer.headers["vary"]
    raw = client.get("/feeds/rss.xml", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert gzip.compress(RSS * 20) != RSS * 20 and answer.content == RSS * 20  # httpx decoded it


def test_a_missing_feed_or_feed_dir_is_a_404_page(client):
    answer = client.get("/feeds/rss.xml")
    assert answer.status_code == 404 and "Page not found" in answer.text


def test_the_archive_is_served_with_its_own_csp(built, client):
    index = client.get("/archive/")
    assert index.status_code == 200 and "Archive" in index.text
    issue = client.get("/archive/weekly/1.html")
    assert "Issue 1" in issue.text and "'unsafe-inline'" in issue.headers["content-security-policy"]
    for path, target in (("/archive", "/archive/"), ("/archive/weekly", "/archive/weekly/")):
        redirect = client.get(path, follow_redirects=False, headers={"host": "evil.example"})
        assert redirect.headers["location"] == target
    assert client.get("/archive/../config.toml").status_code == 404


def test_pages_carry_security_headers_and_feed_discovery(client):
    page = client.get("/subscribe")
    headers = page.headers
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    for media_type in ("application/rss+xml", "application/atom+xml", "application/feed+json"):
        assert f'<link rel="alternate" type="{media_type}"' in page.text
    assert client.get("/static/web.css").status_code == 200


def test_healthz_follows_the_store(client, store, monkeypatch):
    assert client.get("/healthz").status_code == 200
    monkeypatch.setattr(store, "ping", lambda: False)
    down = client.get("/healthz")
    assert down.status_code == 503 and down.json() == {
        "status": "unavailable",
        "database": "unreachable",
        "scheduler": None,
        "last_success": {},
    }


def test_healthz_names_the_active_scheduler_and_the_last_success_of_each_job(
    client, web_settings, store, database_url, tmp_path
):
    import os
    import signal
    import subprocess
    import sys

    from publisher import jobs

    assert client.get("/healthz").json()["scheduler"] is None
    config = tmp_path / "run.toml"
    config.write_text(f'[site]\nurl = "https://news.example.org"\n[database]\nurl = "{database_url}"\n')
    timetable = subprocess.Popen(
        [sys.executable, "-m", "publisher", "--config", str(config), "run", "--no-web"],
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PUBLISHER_SECRET_KEY": "healthz-test-2c7f9a4e1b8d3f6a0e5c9b2d7a4f1e83"},
    )
    try:
        deadline = time.monotonic() + 60
        while (health := client.get("/healthz").json())["scheduler"] is None:
            assert timetable.poll() is None and time.monotonic() < deadline, "publisher run did not become active"
            time.sleep(0.1)
        assert health["status"] == "ok" and health["database"] == "ok"
        assert health["scheduler"]["holder"].endswith(f":{timetable.pid}") and not health["scheduler"]["stale"]
    finally:
        timetable.send_signal(signal.SIGTERM)
        assert timetable.wait(timeout=60) == 0
    assert client.get("/healthz").json()["scheduler"] is None  # a clean stop gives the lock and the record up
    jobs.run_job(Publication(web_settings, store), "feeds", "")
    last = client.get("/healthz").json()["last_success"]
    assert {"job:feeds", "feeds"} <= set(last)
    assert datetime.fromisoformat(last["job:feeds"]).tzinfo is not None


def test_errors_are_pages_without_stack_traces(web_settings, store, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(signup, "read_preferences", broken)
    with TestClient(
        create_app(Publication(web_settings, store, transport=MemoryTransport())), raise_server_exceptions=False
    ) as test_client:
        crash = test_client.get("/preferences/anything")
        assert crash.status_code == 500 and "Something went wrong" in crash.text
        assert "secret internals" not in crash.text and "Traceback" not in crash.text
        assert crash.headers["x-frame-options"] == "DENY"
        wrong = test_client.put("/subscribe")
        assert wrong.status_code == 405 and "Method not allowed" in wrong.text


def test_no_open_redirects(client):
    for path in ("//evil.example/", "/subscribe/", "/subscribe?next=https://evil.example", "/archive//evil.example"):
        answer = client.get(path, follow_redirects=False, headers={"host": "evil.example"})
        assert "evil" not in answer.headers.get("location", ""), path


# --- mail details, store and command ---------------------------------------------------------


def test_the_confirmation_mail_never_carries_the_name_typed_into_the_form(client, outbox):
    subscribe(client, name="Visit https://spam.example now")
    mail = parse(outbox.sent[0])
    assert "spam.example" not in mail.as_string()
    assert mail["From"].addresses[0].addr_spec == "newsletter@news.example.org"


def test_a_refused_confirmation_mail_can_be_asked_for_again_at_once(web_settings, store):
    from publisher.transports import SendResult

    refusing = MemoryTransport(reply=lambda _message: SendResult("failed", 550, "5.7.1", "no"))
    with TestClient(create_app(Publication(web_settings, store, transport=refusing))) as test_client:
        assert subscribe(test_client).status_code == 200
    working = MemoryTransport()
    with TestClient(create_app(Publication(web_settings, store, transport=working))) as test_client:
        subscribe(test_client)
    assert len(working.sent) == 1


def test_no_welcome_mail_when_welcome_is_off(make_settings, database_url, store):
    settings = make_settings({"newsletters": {"weekly": {}}, "web": {"welcome": False}}, database_url=database_url)
    sent = MemoryTransport()
    with TestClient(
        create_app(Publication(settings, store, transport=sent)), base_url="https://news.example.org"
    ) as test_client:
        subscribe(test_client)
        assert test_client.post(confirm_path(sent.sent[0])).status_code == 200
    assert len(sent.sent) == 1 and store.subscribers.get("reader@example.com").status == "confirmed"


def test_web_events_count_within_their_window(store):
    start = datetime(2025, 10, 20, 12, 0, tzinfo=UTC)
    hour = timedelta(hours=1)
    allowed = [store.web_events.hit("k", "s", start + timedelta(minutes=n), window=hour, limit=2) for n in range(3)]
    assert allowed == [True, True, False]
    assert store.web_events.hit("k", "other", start, window=hour, limit=2)
    assert store.web_events.hit("k", "s", start + timedelta(minutes=61), window=hour, limit=2)
    assert store.web_events.count("k", "s", start - hour) == 3


def test_the_serve_command_is_registered():
    from click.testing import CliRunner

    from publisher.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "--port" in result.output and "--host" in result.output


def test_make_server_listens_where_settings_say(web_settings, store):
    from publisher.web import make_server

    server = make_server(Publication(web_settings, store))
    assert (server.config.host, server.config.port) == ("127.0.0.1", 8080)
    assert make_server(Publication(web_settings, store), host="0.0.0.0", port=0).config.port == 0


def test_oversized_or_file_carrying_forms_are_refused(client, store):
    big = client.post("/subscribe", data={"email": "a@example.com", "name": "x" * 70_000})
    assert big.status_code == 413
    chunked = client.post(
        "/subscribe",
        content=(b"email=a%40example.com&name=" + b"x" * 1000 for _ in range(70)),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 413  # no Content-Length to go by: the body itself is counted
    with_file = client.post("/subscribe", data={"email": "a@example.com"}, files={"name": ("n.txt", b"x")})
    assert with_file.status_code == 400
    assert store.subscribers.count() == 0


# --- the real server: access log and proxies -------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def running(settings, store):
    """`make_server` on a free loopback port in a thread; yields (base URL, access log lines)."""
    from publisher.web import make_server

    publication = Publication(settings, store, transport=MemoryTransport())
    server = make_server(publication, host="127.0.0.1", port=0, log_level="warning")
    server.config.access_log = True
    records = _Records()
    access = logging.getLogger("uvicorn.access")
    access.addHandler(records)
    level = access.level
    access.setLevel(logging.INFO)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", records.lines
    finally:
        server.should_exit = True
        thread.join(10)
        access.removeHandler(records)
        access.setLevel(level)


def test_the_access_log_names_the_route_not_the_token(web_settings, store):
    person = confirmed(store, web_settings)
    unsubscribe = unsubscribe_path(web_settings, person)
    preferences = tokens.preferences_url("", web_settings.secret_keys, person.id)
    secret = [unsubscribe.rsplit("/", 1)[1], preferences.rsplit("/", 1)[1], "abc.def-ghi"]
    with running(web_settings, store) as (base, lines):
        httpx.get(base + unsubscribe)
        httpx.get(base + preferences + "?x=1")
        httpx.get(base + "/confirm/abc.def-ghi")
        httpx.post(base + unsubscribe + "/resubscribe", data={"csrf": "x"})
    logged = "\n".join(lines)
    assert "GET /unsubscribe/{token} HTTP/1.1" in logged and "GET /preferences/{token}?x=1" in logged
    assert "GET /confirm/{token}" in logged and "POST /unsubscribe/{token}/resubscribe" in logged
    assert not [token for token in secret if token in logged]


@pytest.mark.parametrize(
    ("trusted", "seen"), [(None, "203.0.113.9"), (["10.0.0.0/8", "192.0.2.1"], "127.0.0.1")], ids=["default", "set"]
)
def test_x_forwarded_for_counts_only_from_trusted_proxies(make_settings, database_url, store, trusted, seen):
    web = {"trusted_proxies": trusted} if trusted else {}
    settings = make_settings({"web": web, "newsletters": {"weekly": {}}}, database_url=database_url)
    with running(settings, store) as (base, lines):
        httpx.get(base + "/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
    assert lines and lines[-1].startswith(f"{seen}:"), lines


def test_trusted_proxies_must_be_addresses_or_networks(make_settings):
    with pytest.raises(ConfigError, match=r"web\.trusted_proxies: 'proxy\.local' is not an IP address or network"):
        make_settings({"web": {"trusted_proxies": ["127.0.0.1", "proxy.local"]}})


@pytest.mark.parametrize("path", ["/feeds/rss.xml", "/feeds/tags/python/rss.xml", "/archive/weekly/1.html"])
def test_a_304_says_vary_accept_encoding_like_its_200(built, client, path):
    first = client.get(path, headers={"accept-encoding": "gzip"})
    again = client.get(path, headers={"accept-encoding": "gzip", "if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.headers["vary"] == "Accept-Encoding"


def test_addresses_never_confirmed_are_forgotten_after_their_link_expired(client, store, web_settings, outbox):
    now = datetime.now(UTC)
    long_ago = now - web_settings.web.confirm_expiry - timedelta(days=2)
    lately = now - timedelta(hours=2)
    people = {
        "stale@example.com": ("pending", "web form", long_ago),
        "recent@example.com": ("pending", "web form", lately),
        "confirmed@example.com": ("confirmed", "web form", long_ago),
        "operator@example.com": ("pending", "cli", long_ago),
    }
    for address, (status, source, when) in people.items():
        store.subscribers.add(Subscriber(email=address, status=status, source=source), when)
        store.subscribers.claim_confirmation(store.subscribers.get(address).id, "n", when, not_since=when)
    assert subscribe(client, "new@example.com").status_code == 200
    kept = {person.email for person in store.subscribers.all()}
    assert kept == {"recent@example.com", "confirmed@example.com", "operator@example.com", "new@example.com"}


def test_the_time_zone_the_browser_guessed_travels_in_the_confirmation_link(client, store, outbox):
    subscribe(client, timezone="America/Los_Angeles")
    assert store.subscribers.get("reader@example.com").timezone == ""  # nothing attached before confirming
    client.post(confirm_path(outbox.sent[0]))
    assert store.subscribers.get("reader@example.com").timezone == "America/Los_Angeles"
    subscribe(client, "other@example.com", timezone="Not/AZone")  # a bad guess is ignored, not an error
    client.post(confirm_path(outbox.sent[-1]))
    assert store.subscribers.get("other@example.com").status == "confirmed"
    assert store.subscribers.get("other@example.com").timezone == ""


def test_preferences_set_the_time_zone(client, store, web_settings):
    person = confirmed(store, web_settings)
    path, page, csrf = _preferences(client, web_settings, person)
    assert '<option value="" selected>' in page.text and "<option>Australia/Sydney</option>" in page.text
    form = {"csrf": csrf, "name": "Fan", "newsletter": ["weekly"]}
    saved = client.post(path, data={**form, "timezone": "Australia/Sydney"})
    assert saved.status_code == 200 and "<option selected>Australia/Sydney</option>" in saved.text
    assert store.subscribers.get(person.email).timezone == "Australia/Sydney"
    refused = client.post(path, data={**form, "timezone": "Mars/Olympus"})
    assert refused.status_code == 400 and "unknown time zone" in refused.text
    assert store.subscribers.get(person.email).timezone == "Australia/Sydney"
    assert "<option>Africa/Asmera</option>" not in page.text  # old aliases are not offered ...
    assert "<option>Africa/Asmara</option>" in page.text and "<option>Europe/Amsterdam</option>" in page.text
    client.post(path, data={**form, "timezone": "Africa/Asmera"})  # ... but a reader's own stays selected
    assert "<option selected>Africa/Asmera</option>" in _preferences(client, web_settings, person)[1].text


FORGED_ZONES = ["America", "Etc", "A" * 300, "posix/UTC", "right/UTC", "localtime", "Factory", "../../etc/passwd"]


def test_a_forged_time_zone_is_ignored_on_the_form_and_refused_on_preferences(client, store, web_settings, outbox):
    for n, zone in enumerate(("America", "A" * 300, "posix/UTC")):  # the form's rate limit allows a few
        assert subscribe(client, f"r{n}@example.com", timezone=zone).status_code == 200, zone[:20]
        client.post(confirm_path(outbox.sent[-1]))
        assert store.subscribers.get(f"r{n}@example.com").timezone == ""
    person = confirmed(store, web_settings)
    path, _, csrf = _preferences(client, web_settings, person)
    form = {"csrf": csrf, "name": "Fan", "newsletter": ["weekly"]}
    for zone in FORGED_ZONES:
        refused = client.post(path, data={**form, "timezone": zone})
        assert refused.status_code == 400 and "unknown time zone" in refused.text, zone[:20]
        assert store.subscribers.get(person.email).timezone == ""


def test_saving_preferences_keeps_a_zone_the_usual_list_leaves_out(client, store, web_settings):
    now = datetime.now(UTC)
    reader = Subscriber(email="utc@example.com", status="confirmed", newsletters=("weekly",), timezone="UTC")
    store.subscribers.add(reader, now)
    person = store.subscribers.get("utc@example.com")
    path, page, csrf = _preferences(client, web_settings, person)
    assert "<option selected>UTC</option>" in page.text  # shown as chosen, though not in the usual list
    assert '<option value="" selected>' not in page.text
    form = {"csrf": csrf, "name": "Fan", "newsletter": ["weekly"]}
    assert client.post(path, data={**form, "timezone": "UTC"}).status_code == 200
    assert store.subscribers.get(person.email).timezone == "UTC"
    assert client.post(path, data={**form, "timezone": ""}).status_code == 200  # an empty choice keeps it
    assert store.subscribers.get(person.email).timezone == "UTC"


def test_secret_query_parameters_never_reach_the_access_log():
    from publisher.web import route_of

    logged = route_of("/admin/?access_token=pub_abc123&page=2&csrf=xyz&my_password=hunter22&q=tokens")
    assert logged == "/admin/?access_token=***&page=2&csrf=***&my_password=***&q=tokens"
    assert route_of("/unsubscribe/abcdef?x=1") == "/unsubscribe/{token}?x=1"


# --- the subscriber's language -------------------------------------------------------------


def visible(page: str) -> str:
    """The words a reader sees on a page: tag contents, without markup, with spaces collapsed."""
    page = re.sub(r"<(style|head|script)[^>]*>.*?</\1>", " ", page, flags=re.S)
    page = re.sub(r"</?(strong|em|a|span)\b[^>]*>", "", page)  # inline: no space of their own
    return re.sub(r"[ \t\r\n]+", " ", re.sub(r"<[^>]+>", " ", page))  # no-break spaces stay


@contextlib.contextmanager
def client_in(make_settings, database_url, store, outbox, language: str):
    settings = make_settings(
        {
            "site": {"title": "Le Quotidien", "language": language},
            "newsletters": {"weekly": {"title": "La Semaine"}},
            "topics": [{"name": "asia", "label": "Asie", "tags": ["asia"]}],
        },
        database_url=database_url,
    )
    app = create_app(Publication(settings, store, transport=outbox))
    with TestClient(app, base_url="https://news.example.org") as test_client:
        yield settings, test_client


def test_a_french_publication_speaks_french_from_the_form_to_the_unsubscribe_page(
    make_settings, database_url, store, outbox
):
    """Issue 16 leftovers: the subscriber's pages and the sign-up mails were English only."""
    with client_in(make_settings, database_url, store, outbox, "fr") as (settings, client):
        form = client.get("/subscribe")
        seen = visible(form.text)
        for french in (
            "S’abonner à Le Quotidien",
            "Adresse e-mail",
            "Les thèmes qui vous intéressent",
            "J’accepte de recevoir La Semaine par e-mail de la part de Le Quotidien.",
            "Nous vous enverrons un e-mail avec un lien de confirmation.",
            "Archives",
        ):
            assert french in seen, french
        assert '<html lang="fr">' in form.text
        left = [word for word in ("Subscribe to", "Email address", "I agree", "Topics you", "optional") if word in seen]
        assert not left, left

        sent = client.post("/subscribe", data={"email": "lea@example.fr", "newsletter": "weekly"})
        assert "Consultez votre boîte de réception" in visible(sent.text)
        assert "Le lien est valable 2 jours." in visible(sent.text)

        mail = parse(outbox.sent[0])
        assert mail["Subject"] == "Confirmez votre abonnement à Le Quotidien"
        body = " ".join(mail.get_content().split())
        for french in ("Bonjour,", "Quelqu’un, probablement vous, a demandé à recevoir La Semaine", "valable 2 jours"):
            assert french in body, french
        assert "someone" not in body.lower() and "The link works" not in body

        page = client.get(confirm_path(outbox.sent[0]))
        assert "Confirmez votre abonnement" in visible(page.text) and "Oui, abonnez-moi" in page.text
        done = client.post(confirm_path(outbox.sent[0]))
        assert "Votre abonnement est confirmé" in visible(done.text)
        welcome = parse(outbox.sent[1])
        assert welcome["Subject"] == "Bienvenue chez Le Quotidien"
        assert "Se désabonner de La Semaine\u00a0:" in welcome.get_content()
        person = store.subscribers.get("lea@example.fr")
        assert "J’accepte de recevoir La Semaine" in person.consent_text  # the words the reader agreed to

        path = unsubscribe_path(settings, person)
        ask = visible(client.get(path).text)
        assert "Ne plus envoyer La Semaine à lea@example.fr\u00a0?" in ask
        assert "Se désabonner" in ask and "Ou bien modifiez vos préférences." in ask
        gone = visible(client.post(path).text)
        assert "Votre désabonnement est confirmé" in gone and "Me réabonner" in gone
        assert "unsubscribed" not in gone.lower()


def test_french_errors_a_subscriber_can_meet(make_settings, database_url, store, outbox):
    with client_in(make_settings, database_url, store, outbox, "fr") as (_, client):
        bad = client.post("/subscribe", data={"email": "pas-une-adresse", "newsletter": "weekly"})
        assert bad.status_code == 400
        assert "«\u00a0pas-une-adresse\u00a0» n’est pas une adresse e-mail valide" in visible(bad.text)
        tampered = client.post("/subscribe", data={"email": "ana@example.com", "newsletter": "no-such-list"})
        assert tampered.status_code == 400 and "no-such-list" not in visible(tampered.text)
        assert "Ce formulaire n’a pas pu être lu\u00a0: revenez en arrière" in visible(tampered.text)
        broken = client.get("/unsubscribe/not-a-token")
        assert broken.status_code == 400
        seen = visible(broken.text)
        assert "Ce lien ne fonctionne pas" in seen and "Ce lien n’est pas valide\u00a0: il a peut-être" in seen
        assert "Aller à la page d’accueil ou vous réabonner." in seen


def test_a_language_without_a_catalogue_gets_english_pages_and_mails(make_settings, database_url, store, outbox):
    with client_in(make_settings, database_url, store, outbox, "pt-BR") as (_, client):
        assert "Subscribe to Le Quotidien" in visible(client.get("/subscribe").text)
        client.post("/subscribe", data={"email": "ana@example.com", "newsletter": "weekly"})
        mail = parse(outbox.sent[0])
        assert mail["Subject"] == "Confirm your subscription to Le Quotidien"
        assert "The link works for 2 days." in " ".join(mail.get_content().split())


def test_the_public_sites_sign_up_block_and_404_page_are_in_french_too(make_settings, database_url, store, outbox):
    """The consent sentence is French on a French site: the words around it must be too."""
    with client_in(make_settings, database_url, store, outbox, "fr") as (_, client):
        home = visible(client.get("/").text)
        for french in (
            "Recevez les nouveaux articles par e-mail",
            "J’accepte de recevoir La Semaine",
            "Nous envoyons d’abord un lien de confirmation.",
            "Aller au contenu",
            "Rien n’a encore été publié.",
        ):
            assert french in home, french
        missing = client.get("/no-such-page")
        assert missing.status_code == 404
        seen = visible(missing.text)
        assert "Page introuvable" in seen and "Essayez la page d’accueil ou les archives." in seen
        english = ("Get new articles", "We send", "Skip to", "Page not found", "Archive ")
        left = [word for word in english if word in seen]
        assert not left, left


# --- suppressed addresses and the bounce address of the sign-up mails ----------------------------


def complaint_about(store, settings, person, folder) -> None:
    """An ARF complaint about an issue sent to `person`, read as `publisher inbound import` reads it."""
    issue = make_issue(store, "Issue 1", datetime.now(UTC), 1)
    token = verp.make_token(settings.secret_keys, issue.id, person.id)
    raw = (CORPUS / "arf-complaint.eml").read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode())
    (folder / "complaint.eml").write_bytes(raw.replace(b"alice@example.com", person.email.encode()))
    Publication(settings, store).import_inbound([folder / "complaint.eml"])


def test_a_complainer_confirming_a_new_sign_up_gets_only_what_they_chose_and_the_suppression_is_lifted(
    client, store, web_settings, outbox, tmp_path
):
    person = confirmed(store, web_settings, "fan@example.com", newsletters=("weekly", "daily"))
    complaint_about(store, web_settings, person, tmp_path)
    publication = Publication(web_settings, store)
    assert [(s.email, s.reason) for s in publication.suppressed()] == [("fan@example.com", "complaint")]

    subscribe(client, "fan@example.com", newsletter=["weekly"])
    assert client.post(confirm_path(outbox.sent[0])).status_code == 200
    fan = store.subscribers.get("fan@example.com")
    assert (fan.status, fan.newsletters) == ("confirmed", ("weekly",))
    assert publication.suppressed() == []
    [lifted] = publication.subscriber_history("fan@example.com").suppressions
    assert (lifted["reason"], lifted["lift_reason"]) == ("complaint", "re-subscribed by confirming a sign-up")


def test_a_bounced_address_signing_up_is_sent_nothing_and_sees_the_usual_page(client, store, web_settings, outbox):
    now = datetime.now(UTC)
    store.subscribers.add(Subscriber(email="gone@example.com", status="bounced", newsletters=("weekly",)), now)
    bounced = subscribe(client, "gone@example.com")
    unknown = subscribe(client, "new@example.com")
    assert bounced.status_code == unknown.status_code == 200
    assert bounced.text.replace("gone@", "X@") == unknown.text.replace("new@", "X@")
    assert [message.recipient for message in outbox.sent] == ["new@example.com"]
    assert store.subscribers.get("gone@example.com").status == "bounced"


def test_confirmation_and_welcome_mails_carry_a_verp_sender_naming_the_subscriber(make_settings, database_url, store):
    settings = make_settings(
        {"newsletters": {"weekly": {}}, "delivery": {"return_path": "bounces@news.example.org"}},
        database_url=database_url,
    )
    sent = MemoryTransport()
    with TestClient(
        create_app(Publication(settings, store, transport=sent)), base_url="https://news.example.org"
    ) as test_client:
        subscribe(test_client)
        test_client.post(confirm_path(sent.sent[0]))
    person = store.subscribers.get("reader@example.com")
    assert [parse(message)["Subject"].startswith("Welcome") for message in sent.sent] == [False, True]
    for message in sent.sent:
        local, _, domain = message.sender.partition("@")
        assert local.startswith("bounces+") and domain == "news.example.org"
        named = verp.read_token(settings.secret_keys, verp.tokens_in(message.sender)[0])
        assert (named.subscriber_id, named.issue_id, named.purpose) == (person.id, None, verp.BOUNCE)
        assert parse(message)["From"].addresses[0].addr_spec == "newsletter@news.example.org"


def test_a_complainer_coming_back_from_the_unsubscribe_page_is_no_longer_listed_as_suppressed(
    client, store, web_settings, tmp_path
):
    person = confirmed(store, web_settings, "fan@example.com", newsletters=("weekly",))
    complaint_about(store, web_settings, person, tmp_path)
    path = unsubscribe_path(web_settings, person)
    page = client.post(path)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]
    assert client.post(f"{path}/resubscribe", data={"csrf": csrf}).status_code == 200
    publication = Publication(web_settings, store)
    assert store.subscribers.get("fan@example.com").status == "confirmed"
    assert publication.suppressed() == []
    [lifted] = publication.subscriber_history("fan@example.com").suppressions
    assert lifted["lift_reason"] == "re-subscribed from the unsubscribe page"
