"""The JSON API at /api/v1/: bearer tokens, subscribers, sign-ups, articles, issues, OpenAPI, problems."""

from __future__ import annotations

import re
import threading
import time
import warnings
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import httpx
import pytest
from openapi_spec_validator import validate
from sink import free_port

from publisher import api
from publisher.content import article_json
from publisher.operators import Permission, cli_actor
from publisher.publication import Publication
from publisher.transports import MemoryTransport
from publisher.web import ServerThread, create_app, make_server

with warnings.catch_warnings():
    # Starlette asks for httpx2 in its test client; httpx is what the project uses.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

SHELL = cli_actor("root")
PROBLEM = "application/problem+json"


@pytest.fixture
def api_settings(make_settings, database_url):
    return make_settings(
        {
            "newsletters": {"weekly": {"title": "The Weekly", "require_approval": True, "lookback": "3650d"}},
            "web": {"topics": ["python"]},
            "api": {"cors_origins": ["https://shop.example.com"]},
        },
        database_url=database_url,
    )


@pytest.fixture
def outbox() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture
def publication(api_settings, store, outbox) -> Publication:
    return Publication(api_settings, store, transport=outbox)


@pytest.fixture
def client(publication):
    with TestClient(create_app(publication), base_url="https://news.example.org") as test_client:
        yield test_client


def token(publication: Publication, name: str, scope: Permission) -> dict[str, str]:
    _stored, secret = publication.create_token(name, scope, actor=SHELL)
    return {"authorization": f"Bearer {secret}"}


def is_problem(answer, status: int) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["status"] == status and body["type"].startswith("https://") and body["title"]
    return body


def test_no_token_or_a_revoked_one_is_401_and_a_read_token_writing_is_403(client, publication):
    is_problem(client.get("/api/v1/subscribers"), 401)
    assert client.get("/api/v1/subscribers").headers["www-authenticate"].startswith("Bearer")
    is_problem(client.get("/api/v1/subscribers", headers={"authorization": "Bearer pub_not-a-real-token"}), 401)
    viewer = token(publication, "dashboard", Permission.READ)
    writer = token(publication, "cms", Permission.WRITE)
    assert client.get("/api/v1/subscribers", headers=viewer).json() == {"data": [], "next_cursor": None}
    refused = client.post("/api/v1/subscribers", headers=viewer, json={"email": "a@example.org"})
    assert "scope" in is_problem(refused, 403)["detail"]
    assert client.post("/api/v1/articles", headers=viewer, json={"title": "x", "html": "x"}).status_code == 403
    assert publication.subscribers() == []  # nothing was written
    assert client.get("/api/v1/subscribers", headers=writer).status_code == 200
    publication.revoke_token("cms", actor=SHELL)
    is_problem(client.get("/api/v1/subscribers", headers=writer), 401)
    for path in ("/api/v1/articles", "/api/v1/newsletters/weekly/issues", "/api/v1/subscribers/a@example.org"):
        is_problem(client.get(path), 401)


def test_unknown_addresses_and_methods_are_problems_too(client, publication):
    reader = token(publication, "dashboard", Permission.READ)
    is_problem(client.get("/api/v1/nothing-here", headers=reader), 404)
    is_problem(client.put("/api/v1/subscribers", headers=reader), 405)
    is_problem(client.get("/api/v1/subscribers/nobody@example.org", headers=reader), 404)
    is_problem(client.get("/api/v1/newsletters/nope/issues", headers=reader), 404)
    writer = token(publication, "cms", Permission.WRITE)
    is_problem(
        client.post(
            "/api/v1/subscribers",
            headers=writer,
            content=b"{",
        ),
        415,
    )
    bad = client.post("/api/v1/subscribers", headers={**writer, "content-type": "application/json"}, content=b"{")
    is_problem(bad, 400)


def test_subscribers_create_list_with_a_cursor_update_and_delete(client, publication, outbox):
    writer = token(publication, "cms", Permission.WRITE)
    consent = {"text": "Ticked 'send me the weekly' at the shop's checkout", "at": "2026-11-01T10:00:00+00:00"}
    for n in range(5):
        made = client.post(
            "/api/v1/subscribers",
            headers=writer,
            json={"email": f"R{n}@Example.org", "name": f"Reader {n}", "confirmed": True, "consent": consent},
        )
        assert made.status_code == 201 and made.headers["location"] == f"/api/v1/subscribers/r{n}@example.org"
        assert made.json()["status"] == "confirmed" and made.json()["consent_text"] == consent["text"]
    assert outbox.sent == []  # confirmed with a consent record: no confirmation mail
    refused = client.post("/api/v1/subscribers", headers=writer, json={"email": "x@example.org", "confirmed": True})
    assert is_problem(refused, 422)["type"].endswith("/consent-required")
    is_problem(client.post("/api/v1/subscribers", headers=writer, json={"email": "r0@example.org"}), 422)

    emails, cursor = [], ""
    while True:
        page = client.get(f"/api/v1/subscribers?limit=2{'&cursor=' + cursor if cursor else ''}", headers=writer)
        emails += [person["email"] for person in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert emails == [f"r{n}@example.org" for n in range(5)]

    pending = client.post("/api/v1/subscribers", headers=writer, json={"email": "new@example.org"})
    assert pending.status_code == 201 and pending.json()["status"] == "pending"
    assert [m.recipient for m in outbox.sent] == ["new@example.org"]  # double opt-in: one confirmation mail

    changed = client.patch("/api/v1/subscribers/r1@example.org", headers=writer, json={"name": "R. One", "topics": []})
    assert (changed.json()["name"], changed.json()["newsletters"]) == ("R. One", ["weekly"])
    assert client.delete("/api/v1/subscribers/r2@example.org", headers=writer).status_code == 204
    assert client.get("/api/v1/subscribers/r2@example.org", headers=writer).json()["status"] == "unsubscribed"
    actions = [(entry.actor, entry.action) for entry in publication.audit_log(SHELL)]
    assert ("token:cms", "subscriber.remove") in actions and ("token:cms", "subscriber.update") in actions
    assert actions.count(("token:cms", "subscriber.add")) == 6


def test_subscribe_sends_one_mail_and_answers_the_same_for_known_and_unknown(client, publication, outbox):
    publication.add_subscriber("known@example.org", newsletters=["weekly"], confirmed=True)
    origin = {"origin": "https://shop.example.com"}
    first = client.post("/api/v1/subscribe", json={"email": "new@example.org"}, headers=origin)
    again = client.post("/api/v1/subscribe", json={"email": "known@example.org"}, headers=origin)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json() == {"status": "accepted", "detail": api.NEUTRAL}
    assert first.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert [m.recipient for m in outbox.sent] == ["new@example.org", "known@example.org"]
    assert b"/confirm/" in outbox.sent[0].data  # a confirmation link, and nothing else, went to each
    assert client.post("/api/v1/subscribe", json={"email": "new@example.org"}).status_code == 202
    assert len(outbox.sent) == 2  # asked twice within the hour: still one mail
    assert (
        "access-control-allow-origin"
        not in client.post(
            "/api/v1/subscribe", json={"email": "x@example.org"}, headers={"origin": "https://evil.example"}
        ).headers
    )
    preflight = client.options("/api/v1/subscribe", headers={**origin, "access-control-request-method": "POST"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-methods"] == "POST"
    is_problem(client.post("/api/v1/subscribe", json={"email": "not an address"}), 422)


def test_subscribe_keeps_the_forms_rate_limit(make_settings, database_url, store, outbox):
    settings = make_settings(
        {"newsletters": {"weekly": {}}, "web": {"subscribe_per_ip_per_hour": 2}}, database_url=database_url
    )
    with TestClient(create_app(Publication(settings, store, transport=outbox))) as client:
        answers = [client.post("/api/v1/subscribe", json={"email": f"p{n}@example.org"}) for n in range(3)]
        form = client.post("/subscribe", data={"email": "q@example.org"})
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert "retry-after" in answers[2].headers and form.status_code == 429  # one limit for the form and the API


def test_an_article_posted_through_the_api_is_in_the_feeds_and_the_next_issue(client, publication, outbox):
    writer = token(publication, "cms", Permission.WRITE)
    publication.add_subscriber("fan@example.org", newsletters=["weekly"], confirmed=True)
    posted = client.post(
        "/api/v1/articles",
        headers=writer,
        json={
            "title": "Spring   tyre pressures",
            "markdown": "Run them *lower*.<script>alert(1)</script>\n\n<!--more-->\n\nThe rest.",
            "tags": ["Gravel", "Tech"],
        },
    )
    assert posted.status_code == 201, posted.text
    body = posted.json()
    stored = publication.store.articles.by_slug("spring-tyre-pressures")
    assert body == article_json(stored, publication.settings.site.url)  # as `publisher articles --json` shows it
    assert body["title"] == "Spring tyre pressures" and body["tags"] == ["Gravel", "Tech"] and body["truncated"]
    assert "<script>" not in body["content_html"] and "<em>lower</em>" in body["content_html"]
    assert "Spring tyre pressures" in (publication.settings.feeds.dir / "rss.xml").read_text()
    assert client.get("/api/v1/articles/spring-tyre-pressures", headers=writer).json() == body
    assert client.get("/api/v1/articles?q=tyre", headers=writer).json()["total"] == 1

    twin = client.post("/api/v1/articles", headers=writer, json={"title": "Spring tyre pressures", "html": "<p>v2"})
    assert "slug" in is_problem(twin, 409)["detail"]  # the same title does not silently replace it
    again = client.post(
        "/api/v1/articles",
        headers=writer,
        json={"title": "Spring tyre pressures", "html": "<p>v2", "slug": "spring-tyre-pressures"},
    )
    assert again.status_code == 200 and again.json()["guid"] == body["guid"]  # its slug, given, updates it

    built = publication.build("weekly")
    assert built.issue is not None and stored.id in built.issue.article_ids
    issues = client.get("/api/v1/newsletters/weekly/issues", headers=writer).json()["data"]
    assert [(i["number"], i["state"]) for i in issues] == [(1, "draft")]
    is_problem(client.post("/api/v1/newsletters/weekly/issues/1/send", headers=writer), 409)  # a draft
    approved = client.post("/api/v1/newsletters/weekly/issues/1/approve", headers=writer)
    assert approved.json()["state"] == "approved"
    started = client.post("/api/v1/newsletters/weekly/issues/1/send", headers=writer)
    assert started.status_code == 202 and started.headers["location"] == "/api/v1/newsletters/weekly/issues/1"
    deadline = time.monotonic() + 60
    while (status := client.get(started.headers["location"], headers=writer).json())["state"] != "sent":
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["counts"]["delivered"] == 1 and status["recipients"] == 1
    delivered = [m for m in outbox.sent if m.recipient == "fan@example.org"]
    assert len(delivered) == 1 and b"Spring tyre pressures" in delivered[0].data
    actions = [entry.action for entry in publication.audit_log(SHELL) if entry.actor == "token:cms"]
    assert {"article.post", "issue.approve", "issue.send"} <= set(actions)


def test_a_posted_article_is_checked_like_an_import(client, publication):
    writer = token(publication, "cms", Permission.WRITE)
    both = client.post("/api/v1/articles", headers=writer, json={"title": "t", "markdown": "a", "html": "b"})
    assert "exactly one" in is_problem(both, 422)["detail"]
    assert is_problem(client.post("/api/v1/articles", headers=writer, json={"html": "b"}), 422)["detail"]
    naive = client.post("/api/v1/articles", headers=writer, json={"title": "t", "html": "b", "published": "2026-01-01"})
    assert "offset" in is_problem(naive, 422)["detail"]
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    future = client.post("/api/v1/articles", headers=writer, json={"title": "Soon", "html": "b", "published": later})
    assert future.status_code == 201
    assert "Soon" not in (publication.settings.feeds.dir / "rss.xml").read_text()  # not before its time


def test_the_openapi_document_validates_and_lists_every_route(client, publication):
    reader = token(publication, "dashboard", Permission.READ)
    document = client.get("/api/v1/openapi.json", headers=reader).json()
    validate(document)  # OpenAPI 3.1, by openapi-spec-validator
    assert document["openapi"].startswith("3.1")
    listed = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    routed = {(method, route.path) for route in api.routes() for method in route.methods or () if method != "HEAD"}
    assert listed == routed
    assert document["servers"] == [{"url": "https://news.example.org/api/v1"}]


def test_a_crash_is_a_problem_without_internals(publication, monkeypatch):
    reader = token(publication, "dashboard", Permission.READ)

    def broken(*_args, **_kwargs):
        raise RuntimeError("SELECT secret FROM somewhere")

    monkeypatch.setattr(publication, "subscriber_page", broken)
    with TestClient(create_app(publication), raise_server_exceptions=False) as client:
        crashed = client.get("/api/v1/subscribers", headers=reader)
    assert is_problem(crashed, 500)["type"].endswith("/internal") and "SELECT" not in crashed.text


def test_no_endpoint_but_the_sign_up_and_the_document_answers_without_a_token(client):
    values = {"email": "a@example.org", "slug": "a", "newsletter": "weekly", "number": "1"}
    for endpoint in api.ENDPOINTS:
        path = api.PREFIX + endpoint.path.format(**values)
        answer = client.request(endpoint.method, path, json={})
        if endpoint.permission is None:
            assert answer.status_code != 401, path
        else:
            assert is_problem(answer, 401)["type"].endswith("/unauthorized"), (endpoint.method, path)


@pytest.mark.parametrize("bad", ["²", "١٢", "99999999999999999999999", "1" * 5000, "-1", "+1"])
def test_a_number_that_is_not_plain_ascii_digits_is_a_400_problem(client, publication, bad):
    reader = token(publication, "dashboard", Permission.READ)
    for path in (
        f"/api/v1/subscribers?limit={bad}",
        f"/api/v1/subscribers?cursor={bad}",
        f"/api/v1/articles?offset={bad}",
        f"/api/v1/newsletters/weekly/issues/{bad}",
    ):
        assert "whole number" in is_problem(client.get(path, headers=reader), 400)["detail"], path
    assert client.get("/api/v1/subscribers?limit=2", headers=reader).status_code == 200


class GatedTransport(MemoryTransport):
    """A real outbox whose mail waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def send(self, message):
        self.gate.wait(30)
        return super().send(message)


def test_subscribe_answers_before_any_mail_is_sent_for_new_and_known_addresses(api_settings, store):
    outbox = GatedTransport()
    publication = Publication(api_settings, store, transport=outbox)
    publication.add_subscriber("known@example.org", newsletters=["weekly"], confirmed=True)
    port = free_port()
    server = ServerThread(make_server(publication, port=port, log_level="warning", access_log=False), "api")
    try:
        for _ in range(200):
            if server.server.started:
                break
            time.sleep(0.05)
        for address in ("new@example.org", "known@example.org"):
            answer = httpx.post(f"http://127.0.0.1:{port}/api/v1/subscribe", json={"email": address}, timeout=10)
            assert answer.status_code == 202  # answered while the mail still waits at the gate
        assert outbox.sent == []
        outbox.gate.set()
        for _ in range(200):
            if len(outbox.sent) == 2:
                break
            time.sleep(0.05)
    finally:
        outbox.gate.set()
        server.stop()
    assert sorted(m.recipient for m in outbox.sent) == ["known@example.org", "new@example.org"]


def test_subscribe_without_newsletters_means_all_and_an_unknown_one_lists_none(make_settings, database_url, store):
    settings = make_settings(
        {"newsletters": {"weekly": {"title": "Weekly"}, "daily": {"title": "Daily"}}}, database_url=database_url
    )
    outbox = MemoryTransport()
    publication = Publication(settings, store, transport=outbox)
    with TestClient(create_app(publication)) as client:
        assert client.post("/api/v1/subscribe", json={"email": "all@example.org"}).status_code == 202
        refused = is_problem(
            client.post("/api/v1/subscribe", json={"email": "b@example.org", "newsletters": ["x"]}), 422
        )
    assert "x" in refused["detail"] and "weekly" not in refused["detail"] and "daily" not in refused["detail"]
    mail = message_from_bytes(outbox.sent[0].data, policy=default_policy)
    body = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    token = re.search(r"/confirm/(\S+)", body)[1]
    publication.confirm(token)
    assert set(publication.subscriber("all@example.org").newsletters) == {"weekly", "daily"}


def test_a_posted_article_never_replaces_an_imported_one(client, publication, tmp_path):
    folder = tmp_path / "posts"
    folder.mkdir()
    (folder / "opening-hours.md").write_text(
        "---\ntitle: Opening hours\ndate: 2026-01-05T08:00:00Z\n---\nFrom the content files.\n", encoding="utf-8"
    )
    publication.import_sources([str(folder)], fmt="markdown")
    imported = publication.store.articles.by_slug("opening-hours")
    assert imported is not None and imported.source != "api"
    writer = token(publication, "cms", Permission.WRITE)
    for body in (
        {"title": "Opening hours", "html": "<p>mine"},
        {"title": "x", "html": "<p>x", "slug": "opening-hours"},
    ):
        refused = is_problem(client.post("/api/v1/articles", headers=writer, json=body), 409)
        assert str(tmp_path) not in refused["detail"]
    kept = publication.store.articles.by_slug("opening-hours")
    assert kept is not None and "From the content files" in kept.content_html and kept.source == imported.source


def test_a_year_9999_published_time_is_a_422(client, publication):
    writer = token(publication, "cms", Permission.WRITE)
    body = {"title": "Far", "html": "<p>x", "published": "9999-12-31T23:59:59+00:00"}
    assert "year" in is_problem(client.post("/api/v1/articles", headers=writer, json=body), 422)["detail"]


def test_a_problem_names_no_file_on_the_server(client, publication):
    reader = token(publication, "dashboard", Permission.READ)
    refused = is_problem(client.get("/api/v1/subscribers?newsletter=nope", headers=reader), 422)
    assert "nope" in refused["detail"] and str(publication.settings.path.parent) not in refused["detail"]
    assert api.without_paths("see https://example.org/a/b and /srv/news/config.toml: x") == (
        "see https://example.org/a/b and config.toml: x"
    )


def test_a_body_with_unknown_fields_is_a_422_naming_them(client, publication, outbox):
    writer = token(publication, "cms", Permission.WRITE)
    publication.add_subscriber("ada@example.org", name="Ada", newsletters=["weekly"], confirmed=True)
    typo = client.patch("/api/v1/subscribers/ada@example.org", headers=writer, json={"nmae": "Ada L.", "name": "A"})
    problem = is_problem(typo, 422)
    assert problem["type"].endswith("/unknown-field") and "'nmae'" in problem["detail"]
    assert publication.subscriber("ada@example.org").name == "Ada"  # nothing half-applied
    made = client.post("/api/v1/subscribers", headers=writer, json={"email": "b@example.org", "newsleters": ["x"]})
    assert "'newsleters'" in is_problem(made, 422)["detail"] and outbox.sent == []
    consent = {"text": "Ticked at checkout", "at": "2026-11-01T10:00:00+00:00", "ip": "192.0.2.1"}
    nested = client.post(
        "/api/v1/subscribers", headers=writer, json={"email": "c@example.org", "confirmed": True, "consent": consent}
    )
    assert "consent.'ip'" in is_problem(nested, 422)["detail"]
    article = client.post("/api/v1/articles", headers=writer, json={"title": "T", "html": "b", "tag": ["x"]})
    assert "'tag'" in is_problem(article, 422)["detail"]
    origin = {"origin": "https://shop.example.com"}
    signup = client.post("/api/v1/subscribe", headers=origin, json={"email": "d@example.org", "list": "weekly"})
    assert "'list'" in is_problem(signup, 422)["detail"]
    assert signup.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert client.post("/api/v1/subscribe", json={"email": "d@example.org", "website": ""}).status_code == 202
    approve = client.post("/api/v1/newsletters/weekly/issues/1/approve", headers=writer, json={"force": True})
    assert is_problem(approve, 422)["detail"] == "this endpoint takes no body"
    assert {p.email for p in publication.subscribers()} == {"ada@example.org", "d@example.org"}
    document = client.get("/api/v1/openapi.json", headers=writer).json()
    for schema in ("NewSubscriber", "SubscriberChange", "SignUp", "NewArticle", "Consent"):
        assert document["components"]["schemas"][schema]["additionalProperties"] is False
