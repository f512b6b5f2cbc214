"""The console at /admin/ over HTTP (Starlette's TestClient), on SQLite and PostgreSQL: login and
its security (CSRF, session fixation, cookie flags, lockout, no page without a session, no token in
logs), roles, and the operations an editor runs: preview, approve, send; subscribers; articles."""

from __future__ import annotations

import logging
import re
import time
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from publisher.errors import SubscriberError
from publisher.operators import Role, cli_actor
from publisher.publication import Publication
from publisher.store.schema import subscribers
from publisher.transports import MemoryTransport
from publisher.web import create_app
from tests.helpers import three_articles_and_readers

with warnings.catch_warnings():
    # Starlette asks for httpx2 in its test client; httpx is what the project uses.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

SITE = "https://news.example.org"
PASSWORD = "correct horse battery staple"
SHELL = cli_actor("root")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def outbox() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture
def publication(make_settings, store, outbox):
    settings = make_settings(
        {"newsletters": {"weekly": {"title": "Weekly", "lookback": "3650d", "require_approval": True}}},
        database_url=store.url,
    )
    publication = Publication(settings, store, transport=outbox)
    publication.add_operator("owner@example.org", Role.OWNER, PASSWORD, actor=SHELL)
    publication.add_operator("editor@example.org", Role.EDITOR, PASSWORD, actor=SHELL)
    publication.add_operator("viewer@example.org", Role.VIEWER, PASSWORD, actor=SHELL)
    return publication


@pytest.fixture
def client(publication):
    app = create_app(publication)
    with TestClient(app, base_url=SITE, follow_redirects=False) as test_client:
        yield test_client
    if hasattr(app.state, "console_sends"):
        app.state.console_sends.wait()


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "the page has no form with a CSRF token"
    return found[1]


def log_in(client: TestClient, email: str, password: str = PASSWORD):
    form = client.get("/admin/login")
    return client.post(
        "/admin/login", data={"email": email, "password": password, "csrf": csrf_of(form.text), "next": "/admin/"}
    )


def session_cookie(client: TestClient) -> str:
    return client.cookies.get("__Host-publisher-console") or ""


# --- login and the session ----------------------------------------------------------------------


def test_no_console_page_is_reachable_without_logging_in(client):
    for path in ("/admin/", "/admin/issues/", "/admin/issues/weekly/", "/admin/subscribers/", "/admin/audit"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/admin/login"), path
    for path in ("/admin/issues/weekly/approve", "/admin/subscribers/add", "/admin/articles/import"):
        response = client.post(path, data={"number": "1"})
        assert response.status_code == 403, path


def test_logging_in_sets_a_flagged_cookie_and_shows_the_dashboard(client):
    response = log_in(client, "editor@example.org")
    assert response.status_code == 303 and response.headers["location"] == "/admin/"
    header = next(h for h in response.headers.get_list("set-cookie") if h.startswith("__Host-publisher-console="))
    flags = {part.strip().lower() for part in header.split(";")}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags
    page = client.get("/admin/")
    assert page.status_code == 200 and "editor@example.org" in page.text and "Dashboard" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_a_session_id_planted_before_login_is_never_the_logged_in_one(client):
    client.cookies.set("__Host-publisher-console", "planted-by-an-attacker-0123456789abcdef", domain="news.example.org")
    log_in(client, "editor@example.org")
    assert session_cookie(client) not in ("", "planted-by-an-attacker-0123456789abcdef")
    first = session_cookie(client)
    client.post("/admin/logout", data={"csrf": csrf_of(client.get("/admin/").text)})
    log_in(client, "editor@example.org")
    assert session_cookie(client) not in ("", first)  # a new id at every login
    stolen = TestClient(client.app, base_url=SITE, follow_redirects=False)
    stolen.cookies.set("__Host-publisher-console", first, domain="news.example.org")
    assert stolen.get("/admin/").status_code == 303  # the logged-out id opens nothing


def test_a_wrong_password_or_address_gets_the_same_refusal(client):
    wrong = log_in(client, "editor@example.org", "not the password")
    unknown = log_in(client, "nobody@example.org", PASSWORD)
    assert wrong.status_code == unknown.status_code == 403
    assert "wrong email address or password" in wrong.text and "wrong email address or password" in unknown.text
    assert session_cookie(client) == ""


def test_five_wrong_passwords_lock_the_account(client):
    for _ in range(4):
        assert "wrong email address or password" in log_in(client, "editor@example.org", "not the password").text
    locked = log_in(client, "editor@example.org", "not the password")
    assert locked.status_code == 403
    right = log_in(client, "editor@example.org")  # the right password waits too
    unknown = log_in(client, "nobody@example.org")
    # a locked account answers as an unknown address does: the page names no account
    assert right.status_code == unknown.status_code == 403
    for page in (locked, right):
        assert "locked" not in page.text and "wrong email address or password" in page.text
    assert session_cookie(client) == ""


def test_the_login_form_needs_its_csrf_token(client):
    client.get("/admin/login")
    response = client.post("/admin/login", data={"email": "editor@example.org", "password": PASSWORD, "csrf": "x"})
    assert response.status_code == 403 and session_cookie(client) == ""


def test_every_form_needs_the_sessions_csrf_token(client, publication):
    log_in(client, "editor@example.org")
    for csrf in ("", "forged"):
        response = client.post("/admin/subscribers/add", data={"email": "new@example.org", "csrf": csrf})
        assert response.status_code == 403
    assert publication.find_subscribers("new@")[1] == 0
    other = TestClient(client.app, base_url=SITE, follow_redirects=False)
    log_in(other, "owner@example.org")
    theirs = csrf_of(other.get("/admin/").text)
    assert client.post("/admin/subscribers/add", data={"email": "new@example.org", "csrf": theirs}).status_code == 403


def test_logging_out_everywhere_ends_every_session(client):
    log_in(client, "editor@example.org")
    other = TestClient(client.app, base_url=SITE, follow_redirects=False)
    log_in(other, "editor@example.org")
    response = client.post("/admin/logout-everywhere", data={"csrf": csrf_of(client.get("/admin/").text)})
    assert response.status_code == 303 and response.headers["location"] == "/admin/login"
    assert client.get("/admin/").status_code == 303 and other.get("/admin/").status_code == 303


def test_the_login_redirect_stays_in_the_console(client):
    form = client.get("/admin/login?next=https://evil.example/")
    assert 'value="/admin/"' in form.text
    response = client.post(
        "/admin/login",
        data={
            "email": "editor@example.org",
            "password": PASSWORD,
            "csrf": csrf_of(form.text),
            "next": "//evil.example/",
        },
    )
    assert response.headers["location"] == "/admin/"


def test_no_session_id_or_password_reaches_the_logs_or_the_audit_log(client, publication, caplog):
    caplog.set_level(logging.DEBUG)
    log_in(client, "editor@example.org")
    client.get("/admin/")
    session_id = session_cookie(client)
    assert session_id and session_id not in caplog.text and PASSWORD not in caplog.text
    entries = publication.audit_log(SHELL)
    assert [e.action for e in entries][:1] == ["login"]
    assert all(session_id not in str(e.detail) and PASSWORD not in str(e.detail) for e in entries)


# --- roles --------------------------------------------------------------------------------------


def articles_and_a_draft(publication) -> int:
    now = datetime.now(UTC)
    three_articles_and_readers(publication.store, publication.settings, now, readers=3)
    built = publication.build("weekly")
    assert built.issue is not None
    return built.issue.number


def test_a_viewer_sees_no_approve_button_and_the_post_is_refused(client, publication):
    number = articles_and_a_draft(publication)
    log_in(client, "viewer@example.org")
    page = client.get(f"/admin/issues/weekly/{number}")
    assert page.status_code == 200 and "draft" in page.text and ">Approve<" not in page.text
    response = client.post("/admin/issues/weekly/approve", data={"number": str(number), "csrf": csrf_of(page.text)})
    assert response.status_code == 403
    assert publication.issue("weekly", number).state == "draft"
    assert publication.audit_log(SHELL)[0].action == "refused"


def test_only_owners_read_the_audit_log(client):
    log_in(client, "editor@example.org")
    assert client.get("/admin/audit").status_code == 403
    owner = TestClient(client.app, base_url=SITE, follow_redirects=False)
    log_in(owner, "owner@example.org")
    page = owner.get("/admin/audit")
    assert page.status_code == 200 and "operator:editor@example.org" in page.text and "login" in page.text


# --- issues -------------------------------------------------------------------------------------


def test_an_editor_previews_approves_and_sends(client, publication, outbox):
    number = articles_and_a_draft(publication)
    log_in(client, "editor@example.org")
    page = client.get("/admin/issues/weekly/")
    assert page.status_code == 200 and f"Issue {number}" in page.text and "Held back" in page.text
    assert 'src="/admin/issues/weekly/preview.html"' in page.text and "Text part" in page.text
    frame = client.get("/admin/issues/weekly/preview.html")
    assert frame.status_code == 200 and "<html" in frame.text.lower()
    assert frame.headers["x-frame-options"] == "SAMEORIGIN" and "sandbox" in frame.headers["content-security-policy"]
    approved = client.post("/admin/issues/weekly/approve", data={"number": str(number), "csrf": csrf_of(page.text)})
    assert approved.status_code == 303 and publication.issue("weekly", number).state == "approved"
    issue_page = client.get(f"/admin/issues/weekly/{number}")
    assert f"Issue {number} approved" in issue_page.text and ">Send now<" in issue_page.text
    form = {"number": str(number), "csrf": csrf_of(issue_page.text)}
    asked = client.post("/admin/issues/weekly/send", data=form)  # Send now asks first, without JavaScript
    assert asked.status_code == 200 and f"Send issue {number} now?" in asked.text and "3 subscribers" in asked.text
    assert publication.issue("weekly", number).state == "approved" and outbox.sent == []
    sent = client.post("/admin/issues/weekly/send", data={**form, "confirm": "yes"})
    assert sent.status_code == 303
    client.app.state.console_sends.wait()
    done = client.get(f"/admin/issues/weekly/{number}")
    assert 'id="issue-state">sent<' in done.text and '<strong id="delivered">3</strong>' in done.text
    assert 'http-equiv="refresh"' not in done.text
    assert len(outbox.sent) == 3
    actions = [e.action for e in publication.audit_log(SHELL)]
    assert {"issue.approve", "issue.send"} <= set(actions)


def test_a_send_in_progress_refreshes_its_page(client, publication):
    number = articles_and_a_draft(publication)
    publication.approve("weekly", number)
    issue = publication.issue("weekly", number)
    from publisher import dispatch

    dispatch.start_issue(publication.store, issue, publication.now())  # started, nothing delivered yet
    log_in(client, "viewer@example.org")
    page = client.get(f"/admin/issues/weekly/{number}")
    assert '<meta http-equiv="refresh" content="2">' in page.text and '<strong id="delivered">0</strong>' in page.text


def test_a_wrong_action_comes_back_as_a_notice(client, publication):
    number = articles_and_a_draft(publication)
    log_in(client, "editor@example.org")
    page = client.get(f"/admin/issues/weekly/{number}")
    response = client.post(
        "/admin/issues/weekly/send",
        data={"number": str(number), "csrf": csrf_of(page.text), "back": f"/admin/issues/weekly/{number}"},
    )
    assert response.status_code == 303
    shown = client.get(response.headers["location"])
    assert "draft: approve it first" in shown.text
    assert client.get("/admin/issues/nope/").status_code == 400


# --- subscribers and articles -------------------------------------------------------------------


def test_an_editor_adds_finds_changes_and_unsubscribes_a_subscriber(client, publication):
    log_in(client, "editor@example.org")
    csrf = csrf_of(client.get("/admin/subscribers/").text)
    form = {"email": "Reader@Example.com", "name": "Rea", "newsletter": "weekly", "confirmed": "1", "csrf": csrf}
    refused = client.post("/admin/subscribers/add", data=form, follow_redirects=True)
    assert "consent required" in refused.text  # the API's consent-required rule, in the console too
    assert publication.find_subscribers("reader@")[1] == 0
    added = client.post("/admin/subscribers/add", data={**form, "consent": "Signed the form at the spring fair"})
    assert added.headers["location"] == "/admin/subscribers/reader@example.com"
    assert publication.subscriber("reader@example.com").consent_text == "Signed the form at the spring fair"
    found = client.get("/admin/subscribers/?q=rea")
    assert "reader@example.com" in found.text and "confirmed" in found.text
    assert "reader@example.com" not in client.get("/admin/subscribers/?q=zzz").text
    detail = client.get("/admin/subscribers/reader@example.com")
    assert "Issues received" in detail.text and "Unsubscribe from everything" in detail.text
    client.post("/admin/subscribers/reader@example.com/newsletters", data={"csrf": csrf})
    assert publication.subscriber("reader@example.com").newsletters == ()
    client.post("/admin/subscribers/reader@example.com/unsubscribe", data={"csrf": csrf})
    assert publication.subscriber("reader@example.com").status == "unsubscribed"
    exported = client.get("/admin/subscribers/export.csv")
    assert exported.headers["content-type"].startswith("text/csv") and "reader@example.com" in exported.text
    actions = {e.action for e in publication.audit_log(SHELL)}
    assert {"subscriber.add", "subscriber.newsletters", "subscriber.unsubscribe", "subscribers.export"} <= actions


def test_a_csv_import_shows_its_mapping_before_writing(client, publication):
    log_in(client, "editor@example.org")
    csrf = csrf_of(client.get("/admin/subscribers/import").text)
    body = "Email Address,First Name,Last Name\nann@example.com,Ann,Lee\nbad-address,Bob,\n"
    preview = client.post(
        "/admin/subscribers/import",
        data={"csrf": csrf, "newsletter": "weekly", "confirmed": "1"},
        files={"file": ("audience.csv", body.encode(), "text/csv")},
    )
    assert preview.status_code == 200 and "Mailchimp" in preview.text and "Email Address" in preview.text
    assert publication.find_subscribers()[1] == 0  # nothing written yet
    upload = re.search(r'name="upload" value="([0-9a-f]+)"', preview.text)
    assert upload
    done = client.post(
        "/admin/subscribers/import/confirm",
        data={"csrf": csrf, "upload": upload[1], "newsletter": "weekly", "confirmed": "1", "filename": "audience.csv"},
    )
    assert done.status_code == 303
    assert publication.subscriber("ann@example.com").newsletters == ("weekly",)
    again = client.post("/admin/subscribers/import/confirm", data={"csrf": csrf, "upload": upload[1]})
    assert "expired" in client.get(again.headers["location"]).text


def test_a_csv_import_preview_counts_new_rows_and_names_the_uploaded_file(client, publication):
    publication.add_subscriber("old@example.com", newsletters=["weekly"])
    log_in(client, "editor@example.org")
    csrf = csrf_of(client.get("/admin/subscribers/import").text)
    rows = ["email,name,newsletters", "ann@example.com,Ann,weekly", "bob@example.com,Bob,weekly"]
    body = "\n".join([*rows, "old@example.com,Old,weekly", "not-an-address,X,"]) + "\n"
    preview = client.post(
        "/admin/subscribers/import",
        data={"csrf": csrf},
        files={"file": ("../../My People.csv", body.encode(), "text/csv")},
    )
    assert preview.status_code == 200
    assert re.search(r"<dt>new</dt><dd>2</dd>", preview.text), preview.text  # two addresses are new
    assert "My_People.csv:5" in preview.text and "publisher-console-uploads" not in preview.text
    upload = re.search(r'name="upload" value="([0-9a-f]+)"', preview.text)
    assert upload
    client.post("/admin/subscribers/import/confirm", data={"csrf": csrf, "upload": upload[1]})
    assert publication.subscriber("ann@example.com").source == "import:My_People.csv"


def upload_csv(client: TestClient, csrf: str, name: str, body: bytes):
    return client.post("/admin/subscribers/import", data={"csrf": csrf}, files={"file": (name, body, "text/csv")})


def upload_id(page: str) -> str:
    found = re.search(r'name="upload" value="([0-9a-f]+)"', page)
    assert found, page
    return found[1]


def test_an_operator_keeps_only_the_newest_previews_and_shutdown_deletes_them(publication):
    app = create_app(publication)
    with TestClient(app, base_url=SITE, follow_redirects=False) as client:
        log_in(client, "editor@example.org")
        csrf = csrf_of(client.get("/admin/subscribers/import").text)
        ids = [
            upload_id(upload_csv(client, csrf, f"list{n}.csv", f"email\nr{n}@example.com\n".encode()).text)
            for n in range(5)
        ]
        kept = app.state.console_uploads.kept()
        assert sorted(path.name for path in kept) == ["list2.csv", "list3.csv", "list4.csv"]
        oldest = client.post("/admin/subscribers/import/confirm", data={"csrf": csrf, "upload": ids[0]})
        assert "expired" in client.get(oldest.headers["location"]).text
        assert publication.find_subscribers()[1] == 0
        client.post("/admin/logout", data={"csrf": csrf})
        log_in(client, "owner@example.org")  # another operator cannot confirm the editor's upload
        csrf = csrf_of(client.get("/admin/subscribers/import").text)
        theirs = client.post("/admin/subscribers/import/confirm", data={"csrf": csrf, "upload": ids[4]})
        assert "expired" in client.get(theirs.headers["location"]).text
        folder = app.state.console_uploads.root
        assert folder.is_dir()
    assert not folder.exists()  # the web app shut down: no uploaded list is left on disk


def test_previews_expire_and_all_of_them_stay_under_the_size_cap(tmp_path):
    import os

    from publisher.console.uploads import Uploads

    kept = Uploads(max_age=3600, per_operator=10, max_bytes=250, root=tmp_path)
    first, first_path = kept.keep(1, "a.csv", b"x" * 100)
    second, _ = kept.keep(2, "b.csv", b"x" * 100)
    old = first_path.stat().st_mtime - 10
    os.utime(first_path, (old, old))
    kept.keep(1, "c.csv", b"x" * 100)  # 300 bytes kept: the oldest goes
    assert [path.name for path in kept.kept()] == ["b.csv", "c.csv"]
    with pytest.raises(SubscriberError, match="expired"):
        kept.find(1, first)
    hour_ago = time.time() - 3601
    os.utime(kept.find(2, second), (hour_ago, hour_ago))
    with pytest.raises(SubscriberError, match="expired"):
        kept.find(2, second)
    assert [path.name for path in kept.kept()] == ["c.csv"]


def test_an_oversize_upload_is_refused_with_the_limit_and_the_shell_command(client):
    log_in(client, "editor@example.org")
    csrf = csrf_of(client.get("/admin/subscribers/import").text)
    refused = upload_csv(client, csrf, "huge.csv", b"email\n" + b"a@example.com\n" * (21 * 1024 * 1024 // 14))
    assert refused.status_code == 413
    assert "larger than 20 MB" in refused.text and "publisher subscribers import" in refused.text
    kept = getattr(client.app.state, "console_uploads", None)
    assert kept is None or kept.kept() == []  # nothing of it was kept


def test_after_an_import_an_editor_asks_the_pending_addresses_to_confirm_once(client, publication, outbox):
    log_in(client, "editor@example.org")
    csrf = csrf_of(client.get("/admin/subscribers/import").text)
    body = b"email,name,newsletters\nann@example.com,Ann,weekly\nbob@example.com,Bob,weekly\n"
    preview = upload_csv(client, csrf, "people.csv", body)
    done = client.post("/admin/subscribers/import/confirm", data={"csrf": csrf, "upload": upload_id(preview.text)})
    assert done.headers["location"] == "/admin/subscribers/confirm-pending"
    page = client.get(done.headers["location"])
    assert "Imported 2 rows" in page.text and ">Send confirmation to 2 pending<" in page.text
    assert client.post("/admin/subscribers/confirm-pending", data={"csrf": "forged"}).status_code == 403
    asked = client.post("/admin/subscribers/confirm-pending", data={"csrf": csrf})
    assert asked.status_code == 200 and "Send 2 confirmation mails?" in asked.text and outbox.sent == []
    sent = client.post("/admin/subscribers/confirm-pending", data={"csrf": csrf, "confirm": "yes"})
    assert sent.status_code == 303
    client.app.state.console_sends.wait()
    assert sorted(m.recipient for m in outbox.sent) == ["ann@example.com", "bob@example.com"]
    assert all(b"/confirm/" in m.data for m in outbox.sent)
    after = client.get("/admin/subscribers/confirm-pending").text
    assert "Every pending address has been asked" in after and "Send confirmation to" not in after
    again = client.post("/admin/subscribers/confirm-pending", data={"csrf": csrf, "confirm": "yes"})
    assert "No pending address is waiting" in client.get(again.headers["location"]).text
    cli = publication.confirm_pending()  # what `subscribers confirm-pending --send` runs: the same ledger
    assert (cli.queued, cli.sent, cli.ledger.get("sent")) == (0, 0, 2) and len(outbox.sent) == 2
    actions = [(e.actor, e.action) for e in publication.audit_log(SHELL)]
    assert actions.count(("operator:editor@example.org", "subscribers.confirm_pending")) == 1
    viewer = TestClient(client.app, base_url=SITE, follow_redirects=False)
    log_in(viewer, "viewer@example.org")
    assert viewer.get("/admin/subscribers/confirm-pending").status_code == 403
    refused = viewer.post("/admin/subscribers/confirm-pending", data={"csrf": csrf_of(viewer.get("/admin/").text)})
    assert refused.status_code == 403


def test_an_import_says_what_it_left_unchanged_and_which_suppressed_addresses_it_kept_out(client, publication):
    log_in(client, "editor@example.org")
    csrf = csrf_of(client.get("/admin/subscribers/import").text)
    first = upload_csv(client, csrf, "people.csv", b"email,name,newsletters\nann@example.com,Ann,weekly\n")
    client.post("/admin/subscribers/import/confirm", data={"csrf": csrf, "upload": upload_id(first.text)})
    with publication.store.engine.begin() as connection:  # it bounced since: suppressed
        connection.execute(update(subscribers).where(subscribers.c.email == "ann@example.com").values(status="bounced"))
    body = b"email,name,newsletters\nann@example.com,Ann,weekly\nbob@example.com,Bob,weekly\n"
    again = upload_csv(client, csrf, "people.csv", body)
    done = client.post("/admin/subscribers/import/confirm", data={"csrf": csrf, "upload": upload_id(again.text)})
    page = client.get(done.headers["location"]).text
    assert "Imported 2 rows: 1 added, 0 updated, 0 unchanged, 1 left unchanged because they are suppressed" in page
    assert publication.store.subscribers.get("ann@example.com").status == "bounced"


def test_articles_are_listed_searched_and_show_their_issues(client, publication):
    number = articles_and_a_draft(publication)
    log_in(client, "viewer@example.org")
    listed = client.get("/admin/articles/")
    slugs = re.findall(r'href="/admin/articles/([a-z0-9-]+)"', listed.text)
    assert len(slugs) == 3
    article, _ = publication.article(slugs[0])
    assert article.title in client.get(f"/admin/articles/?q={article.title[:6]}").text
    detail = client.get(f"/admin/articles/{slugs[0]}")
    assert detail.status_code == 200 and f"weekly {number}" in detail.text
    assert client.get("/admin/articles/no-such-article").status_code == 400


# --- access (owners) ----------------------------------------------------------------------------


def test_an_owner_adds_operators_and_creates_a_token_shown_once(client, publication, caplog):
    caplog.set_level(logging.DEBUG)
    log_in(client, "owner@example.org")
    page = client.get("/admin/access")
    assert page.status_code == 200 and "viewer@example.org" in page.text
    csrf = csrf_of(page.text)
    added = client.post(
        "/admin/access/operators/add",
        data={"csrf": csrf, "email": "new@example.org", "role": "viewer", "password": "a long new password"},
    )
    assert added.status_code == 303 and publication.login("new@example.org", "a long new password").role == "viewer"
    created = client.post("/admin/access/tokens/create", data={"csrf": csrf, "name": "cms", "scope": "write"})
    secret = re.search(r"<code>(pub_[\w-]+)</code>", created.text)
    assert created.status_code == 200 and secret and publication.token_actor(secret[1]).label == "token:cms"
    assert secret[1] not in client.get("/admin/access").text  # shown once
    assert secret[1] not in caplog.text and secret[1] not in str([e.detail for e in publication.audit_log(SHELL)])
    client.post("/admin/access/tokens/revoke", data={"csrf": csrf, "name": "cms"})
    assert publication.tokens()[0].revoked_at is not None
    client.post("/admin/access/operators/remove", data={"csrf": csrf, "email": "new@example.org"})
    assert "new@example.org" not in [o.email for o in publication.operators()]


def test_editors_cannot_manage_access(client, publication):
    log_in(client, "editor@example.org")
    assert client.get("/admin/access").status_code == 403
    csrf = csrf_of(client.get("/admin/").text)
    response = client.post("/admin/access/tokens/create", data={"csrf": csrf, "name": "x", "scope": "admin"})
    assert response.status_code == 403 and publication.tokens() == []


def test_build_dry_run_cancel_pause_and_resume_from_the_console(client, publication, outbox):
    three_articles_and_readers(publication.store, publication.settings, datetime.now(UTC), readers=2)
    log_in(client, "editor@example.org")
    csrf = csrf_of(client.get("/admin/issues/weekly/").text)
    dry = client.post("/admin/issues/weekly/dry-run", data={"csrf": csrf})
    shown = client.get(dry.headers["location"]).text
    assert "Dry run of issue 1: 2 messages (one per recipient) written to dry-run/weekly-1/" in shown
    assert outbox.sent == [] and publication.issues("weekly") == []  # nothing sent or stored
    built = client.post("/admin/issues/weekly/build", data={"csrf": csrf})
    assert built.headers["location"] == "/admin/issues/weekly/1" and publication.issue("weekly", 1).state == "draft"
    asked = client.post("/admin/issues/weekly/cancel", data={"csrf": csrf, "number": "1"})
    assert "Cancel issue 1?" in asked.text and publication.issue("weekly", 1).state == "draft"
    client.post("/admin/issues/weekly/cancel", data={"csrf": csrf, "number": "1", "confirm": "yes"})
    assert publication.issue("weekly", 1).state == "cancelled"
    again = client.post("/admin/issues/weekly/build", data={"csrf": csrf})  # the same slot: one issue
    assert "Issue 1 was already built" in client.get(again.headers["location"]).text
    publication.build("weekly", datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=5))
    publication.approve("weekly", 2)
    from publisher import dispatch

    dispatch.start_issue(publication.store, publication.issue("weekly", 2), publication.now())
    client.post("/admin/issues/weekly/pause", data={"csrf": csrf, "number": "2"})
    assert publication.issue("weekly", 2).state == "paused"
    assert ">Resume<" in client.get("/admin/issues/weekly/2").text
    client.post("/admin/issues/weekly/resume", data={"csrf": csrf, "number": "2"})
    client.app.state.console_sends.wait()
    assert publication.issue("weekly", 2).state == "sent" and len(outbox.sent) == 2
    actions = [e.action for e in publication.audit_log(SHELL)]
    assert {"issue.dry_run", "issue.build", "issue.cancel", "issue.pause", "issue.resume"} <= set(actions)


@pytest.mark.parametrize("bad", ["²", "99999999999999999999999", "1" * 5000])
def test_a_page_number_that_is_not_plain_ascii_digits_is_a_400_page(client, bad):
    log_in(client, "owner@example.org")
    for path in (f"/admin/subscribers/?page={bad}", f"/admin/articles/?page={bad}", f"/admin/audit?before={bad}"):
        answer = client.get(path)
        assert answer.status_code == 400 and "whole number" in answer.text, path
    assert client.get("/admin/issues/weekly/99999999999999999999999").status_code in (400, 404)
    assert client.get("/admin/subscribers/?page=2").status_code == 200


def test_after_a_send_held_back_lists_only_what_the_next_issue_holds_back(client, publication, outbox):
    from publisher.model import Draft

    number = articles_and_a_draft(publication)
    publication.approve("weekly", number)
    publication.send("weekly", immediately=True)
    assert len(outbox.sent) == 3
    soon = Draft(
        key="soon",
        slug="soon",
        title="Coming soon",
        summary_html="<p>x</p>",
        content_html="<p>x</p>",
        truncated=False,
        published=publication.now() + timedelta(days=2),
    )
    publication.store.articles.ingest([soon], site_url=SITE, guid_authority="x", now=publication.now(), source="t")
    log_in(client, "viewer@example.org")
    page = client.get("/admin/issues/weekly/").text
    held = page[page.index(">Held back<") : page.index("All issues")]
    assert "Coming soon" in held and "future-dated" in held
    assert "Article 0" not in held and "already-sent" not in held  # it went out in issue 1
    before = page[: page.index(">Held back<")]
    assert "Article 0" not in before  # nor is it shown as in the next issue
