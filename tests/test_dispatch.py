"""Dispatch against a real SMTP server on loopback (aiosmtpd), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sink import MisbehavingRelay, PipeliningSink, ReorderingSMTP, SinkHandler, free_port, smtp_sink
from sqlalchemy import insert, select, update

from publisher import dispatch
from publisher.config import load_settings
from publisher.lock import make_worker_lock
from publisher.model import Issue, RenderedIssue, Subscriber
from publisher.store import Store
from publisher.store.schema import deliveries, issues
from publisher.transports import MemoryTransport, SendResult, make_transport

NOW = datetime(2025, 10, 20, 12, 0, tzinfo=UTC)
RENDERED = RenderedIssue(
    newsletter="weekly",
    subject="Weekly: notes from the field",
    preheader="3 new articles",
    html='<p>Hello @@NAME@@,</p><p>News.</p><p><a href="@@UNSUBSCRIBE_URL@@">Unsubscribe</a></p>',
    text="Hello @@NAME@@,\n\nNews.\n\nUnsubscribe: @@UNSUBSCRIBE_URL@@\nPreferences: @@PREFERENCES_URL@@\n",
    placeholders={key: f"@@{key.upper()}@@" for key in ("name", "email", "unsubscribe_url", "preferences_url")},
)


class Clock:
    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def send_until_done(store, settings, issue, transport, clock: Clock, rounds: int = 30):
    """Send, then keep retrying as the scheduler would, moving the clock past each backoff."""
    for _ in range(rounds):
        result = dispatch.deliver_issue(store, settings, issue, rendered=RENDERED, transport=transport, clock=clock)
        if result.finished:
            return result
        clock.now = max(clock.now, result.next_attempt_at or clock.now) + timedelta(seconds=1)
    raise AssertionError(f"still unfinished after {rounds} rounds: {result.counts}")


def make_issue(store, newsletter: str = "weekly", number: int = 1, state: str = "approved") -> Issue:
    with store.engine.begin() as connection:
        issue_id = connection.execute(
            insert(issues).values(
                newsletter=newsletter,
                number=number,
                slot=NOW + timedelta(days=number),
                state=state,
                watermark=NOW,
                subject=RENDERED.subject,
                created_at=NOW,
            )
        ).inserted_primary_key[0]
    return Issue(newsletter=newsletter, number=number, slot=NOW, state=state, id=issue_id, article_ids=(1, 2, 3))


def issue_state(store, issue: Issue) -> str:
    with store.engine.connect() as connection:
        return connection.scalar(select(issues.c.state).where(issues.c.id == issue.id))


def add_subscribers(store, count: int, *, status: str = "confirmed", domain_count: int = 5, prefix: str = "reader"):
    people = [
        Subscriber(
            email=f"{prefix}{i}@d{i % domain_count}.example", name=f"Reader {i}", status=status, newsletters=("weekly",)
        )
        for i in range(count)
    ]
    store.subscribers.upsert_many(people, NOW)
    return [person.email for person in people]


@pytest.fixture
def config(make_settings, database_url):
    def make(port: int = 25, **delivery):
        data = {
            "newsletters": {"weekly": {"title": "Weekly", "from": "The Weekly <weekly@news.example.org>"}},
            "delivery": {
                "transport": "smtp",
                "batch_size": 25,
                "retry_first": "1s",
                "retry_max": "1s",
                "smtp": {
                    "host": "127.0.0.1",
                    "port": port,
                    "connections": 3,
                    "timeout": 10,
                    "per_domain_connections": 2,
                },
                **delivery,
            },
        }
        return make_settings(data, database_url=database_url)

    return make


def test_everyone_receives_exactly_one_message_with_the_list_headers(store, config):
    emails = add_subscribers(store, 120)
    add_subscribers(store, 3, status="pending", prefix="unconfirmed")
    add_subscribers(store, 2, status="unsubscribed", prefix="gone")
    issue = make_issue(store)
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        settings = config(port)
        transport = make_transport(settings.delivery)
        result = dispatch.deliver_issue(store, settings, issue, rendered=RENDERED, transport=transport, clock=Clock())
        transport.close()
    assert handler.received() == dict.fromkeys(emails, 1)
    assert result.get("delivered") == 120 and result.finished and result.issue_state == "sent"
    assert dispatch.summary(result, issue, "sent") | {"next_attempt_at": None} == {
        "status": "sent",
        "issue": 1,
        "newsletter": "weekly",
        "articles": 3,
        "recipients": 120,
        "delivered": 120,
        "failed": 0,
        "deferred": 0,
        "pending": 0,
        "cancelled": 0,
        "skipped": 0,
        "renders": 1,
        "state": "sent",
        "next_attempt_at": None,
        "run": {"frozen": 120, "delivered": 120, "failed": 0, "deferred": 0, "taken_over": 0},
        "relay_unreachable": None,
    }
    message = handler.parsed(emails[7])[0]
    assert message["To"] == f"Reader 7 <{emails[7]}>"
    assert message["From"] == "The Weekly <weekly@news.example.org>"
    assert message["Subject"] == "Weekly: notes from the field"
    assert message["Message-ID"].endswith("@news.example.org>")
    assert message["List-Id"] == "Weekly <weekly.news.example.org>"
    one_click, mailto = [part.strip() for part in message["List-Unsubscribe"].split(",")]
    assert one_click.startswith("<https://news.example.org/unsubscribe/") and mailto.startswith("<mailto:")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    text = next(message.iter_parts()).get_content()
    assert "Hello Reader 7," in text and one_click.strip("<>") in text
    ids = {handler.parsed(email)[0]["Message-ID"] for email in emails}
    assert len(ids) == 120


def test_start_freezes_the_audience_once(store, config):
    add_subscribers(store, 10)
    issue = make_issue(store)
    assert dispatch.start_issue(store, issue, NOW) == 10
    add_subscribers(store, 3, prefix="late")
    assert dispatch.start_issue(store, issue, NOW) is None
    assert store.deliveries.counts(issue.id)["pending"] == 10


def test_flaky_server_and_dropped_connections_still_deliver_everyone_once(store, config):
    emails = add_subscribers(store, 300, domain_count=7)
    issue = make_issue(store)
    handler = SinkHandler(flaky=0.1, drop_every=41, seed=11)
    with smtp_sink(handler) as port:
        settings = config(port)
        transport = make_transport(settings.delivery)
        result = send_until_done(store, settings, issue, transport, Clock())
        transport.close()
    assert handler.refusals["421"] and handler.refusals["451"] and handler.refusals["drop"]
    assert handler.received() == dict.fromkeys(emails, 1)
    assert result.get("delivered") == 300 and result.issue_state == "sent"
    retried = [row for row in store.deliveries.rows(issue.id) if row["attempts"] > 1]
    assert retried and all(row["state"] == "delivered" for row in retried)


def test_hard_bounces_are_recorded_and_suppressed(store, config):
    emails = add_subscribers(store, 40)
    bad = set(emails[:4])
    issue = make_issue(store)
    with smtp_sink(SinkHandler(reject=bad)) as port:
        settings = config(port)
        transport = make_transport(settings.delivery)
        result = dispatch.deliver_issue(store, settings, issue, rendered=RENDERED, transport=transport, clock=Clock())
        transport.close()
    assert (result.get("delivered"), result.get("failed")) == (36, 4)
    failed = [row for row in store.deliveries.rows(issue.id) if row["state"] == "failed"]
    assert {row["email"] for row in failed} == bad
    assert {(row["last_code"], row["last_status"]) for row in failed} == {(550, "5.1.1")}
    assert {store.subscribers.get(email).status for email in bad} == {"bounced"}
    second = make_issue(store, number=2)
    assert dispatch.start_issue(store, second, NOW) == 36


def test_soft_failures_back_off_then_give_up_as_soft_bounces(store, config):
    settings = config(retry_first="5m", retry_max="20m", give_up_after="1h", soft_bounce_limit=2)
    emails = add_subscribers(store, 3)
    issue = make_issue(store)
    clock = Clock()
    transport = MemoryTransport(reply=lambda message: SendResult("deferred", 451, "4.2.2", "mailbox full"))
    for minutes in (0, 5, 15, 35, 55, 75):
        clock.now = NOW + timedelta(minutes=minutes)
        result = dispatch.deliver_issue(store, settings, issue, rendered=RENDERED, transport=transport, clock=clock)
    assert result.get("failed") == 3 and result.issue_state == "sent"
    row = store.deliveries.rows(issue.id)[0]
    assert row["attempts"] == 6 and row["last_error"].startswith("gave up")
    assert {store.subscribers.get(email).bounce_count for email in emails} == {1}
    assert {store.subscribers.get(email).status for email in emails} == {"confirmed"}


def test_backoff_doubles_from_retry_first_up_to_retry_max(config):
    delivery = config(retry_first="5m", retry_max="1h").delivery
    assert [dispatch.backoff(n, delivery) for n in (1, 2, 3, 4, 5, 9)] == [
        timedelta(minutes=m) for m in (5, 10, 20, 40, 60, 60)
    ]


def test_nothing_is_sent_before_a_deferral_is_due(store, config):
    settings = config(retry_first="10m", retry_max="1h")
    add_subscribers(store, 2)
    issue = make_issue(store)
    clock = Clock()
    replies = iter([SendResult("deferred", 451), SendResult("deferred", 451)])
    transport = MemoryTransport(reply=lambda message: next(replies, dispatch.SendResult("delivered", 250)))
    result = dispatch.deliver_issue(store, settings, issue, rendered=RENDERED, transport=transport, clock=clock)
    assert result.get("deferred") == 2 and result.next_attempt_at == NOW + timedelta(minutes=10)
    clock.now = NOW + timedelta(minutes=9)
    assert store.deliveries.due_retries(issue.id, clock.now) == 0
    assert store.deliveries.due_retries(issue.id, NOW + timedelta(minutes=10)) == 2
    assert (
        dispatch.deliver_issue(store, settings, issue, rendered=RENDERED, transport=transport, clock=clock).get(
            "deferred"
        )
        == 2
    )
    clock.now = NOW + timedelta(minutes=10)
    assert (
        dispatch.deliver_issue(store, settings, issue, rendered=RENDERED, transport=transport, clock=clock).get(
            "delivered"
        )
        == 2
    )


def test_an_unsubscribe_during_the_send_stops_that_recipient(store, config):
    settings = config(batch_size=5)
    emails = add_subscribers(store, 20)
    issue = make_issue(store)
    leaving = store.subscribers.get(emails[-1])

    def reply(message):
        if message.recipient == emails[0]:
            store.subscribers.remove(leaving.email)
        return SendResult("delivered", 250)

    transport = MemoryTransport(reply=reply)
    result = dispatch.deliver_issue(store, settings, issue, rendered=RENDERED, transport=transport, clock=Clock())
    assert emails[-1] not in {message.recipient for message in transport.sent}
    assert (result.get("delivered"), result.get("cancelled")) == (19, 1)


def test_a_hung_workers_rows_wait_for_its_lease_and_delivered_rows_are_never_sent_again(store, config):
    settings = config(batch_size=10, lease="5m")
    add_subscribers(store, 30)
    issue = make_issue(store)
    dispatch.start_issue(store, issue, NOW)
    hung = make_worker_lock(store)  # alive (holds its lock) but sends nothing
    hung.hold()
    try:
        abandoned = store.deliveries.lease(
            issue.id, limit=10, now=NOW, lease_for=settings.delivery.lease, owner=hung.worker_id
        )
        clock = Clock(NOW + timedelta(minutes=1))
        transport = MemoryTransport()
        result = dispatch.deliver_issue(store, settings, issue, rendered=RENDERED, transport=transport, clock=clock)
        assert (len(transport.sent), result.get("sending")) == (20, 10)
        clock.now = NOW + timedelta(minutes=6)
        result = dispatch.deliver_issue(store, settings, issue, rendered=RENDERED, transport=transport, clock=clock)
    finally:
        hung.release()
    assert sorted(m.recipient for m in transport.sent[20:]) == sorted(row.email for row in abandoned)
    assert result.get("delivered") == 30 and result.issue_state == "sent"
    stale = store.deliveries.record(
        issue.id,
        [dispatch.decide(abandoned[0], SendResult("failed", 550), settings.delivery, clock.now)],
        clock.now,
        soft_bounce_limit=3,
    )
    assert stale == 0 and store.deliveries.counts(issue.id)["delivered"] == 30


def test_a_dead_workers_rows_are_taken_over_at_once_and_the_run_says_so(store, config):
    settings = config(batch_size=10, lease="5m")
    add_subscribers(store, 30)
    issue = make_issue(store)
    dispatch.start_issue(store, issue, NOW)
    dead = make_worker_lock(store)
    dead.hold()
    taken = store.deliveries.lease(issue.id, limit=10, now=NOW, lease_for=settings.delivery.lease, owner=dead.worker_id)
    dead.release()  # what the OS or the PostgreSQL server does when the process dies
    transport = MemoryTransport()
    result = dispatch.deliver_issue(
        store, settings, issue, rendered=RENDERED, transport=transport, clock=Clock(NOW + timedelta(seconds=5))
    )
    assert {m.recipient for m in transport.sent} >= {row.email for row in taken}
    assert result.get("delivered") == 30 and result.issue_state == "sent"
    assert result.run == {"delivered": 30, "failed": 0, "deferred": 0, "taken_over": 10}


def pausing_after(store, issue, count: int) -> MemoryTransport:
    """A transport that pauses the issue (as an operator would) once it has sent `count` messages."""

    def reply(message):
        with once:
            if len(transport.sent) == count - 1 and not paused:
                paused.append(dispatch.pause(store, issue, NOW))
        return SendResult("delivered", 250)

    paused: list = []
    once = threading.Lock()  # two batches are sent side by side

    transport = MemoryTransport(reply=reply)
    return transport


def test_pause_resume_and_cancel(store, config):
    settings = config(batch_size=5)
    add_subscribers(store, 30)
    issue = make_issue(store)
    result = dispatch.deliver_issue(
        store, settings, issue, rendered=RENDERED, transport=pausing_after(store, issue, 3), clock=Clock()
    )
    first = result.get("delivered")
    assert result.issue_state == "paused" and first in (5, 10)  # the batch on the wire (+ one leased beside it)
    again = dispatch.deliver_issue(
        store, settings, issue, rendered=RENDERED, transport=MemoryTransport(), clock=Clock()
    )
    assert again.get("delivered") == first and again.get("pending") == 30 - first
    dispatch.resume(store, issue, NOW)
    result = dispatch.deliver_issue(
        store, settings, issue, rendered=RENDERED, transport=pausing_after(store, issue, 1), clock=Clock()
    )
    second = result.get("delivered")
    assert result.issue_state == "paused" and second - first in (5, 10)
    cancelled, rows = dispatch.cancel(store, issue, NOW)
    result = dispatch.report(store, issue, NOW)
    assert cancelled.state == "cancelled" and rows == 30 - second
    assert (result.get("cancelled"), result.get("pending"), result.get("sending")) == (rows, 0, 0)


# --- the commands ----------------------------------------------------------------------------


def cli_run(config_path, *args: str):
    from click.testing import CliRunner

    from publisher.cli import cli

    return CliRunner().invoke(cli, ["--config", str(config_path), *args], catch_exceptions=False)


@pytest.fixture
def publication(tmp_path, database_url, our_captures):
    """A config.toml on SQLite or PostgreSQL with our late capture's articles and three confirmed subscribers."""

    def make(port: int | None = None):
        transport = (
            f'transport = "smtp"\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\n'
            if port
            else 'transport = "maildir"\n'
        )
        path = tmp_path / "config.toml"
        path.write_text(
            '[site]\nurl = "https://news.example.org"\npostal_address = "1 Example Road, Testville"\n'
            f'[database]\nurl = "{database_url}"\n'
            f'[newsletters.weekly]\nlookback = "3650d"\n[delivery]\n{transport}',
            encoding="utf-8",
        )
        now = datetime.now(UTC).isoformat()
        assert cli_run(path, "import", str(our_captures.late.path), "--as-of", now).exit_code == 0
        for n in range(3):
            assert (
                cli_run(
                    path, "subscribers", "add", f"r{n}@d{n}.example", "--name", f"Réader {n}", "--confirmed"
                ).exit_code
                == 0
            )
        return path

    return make


def test_digest_send_json_contract_over_smtp(publication, monkeypatch):
    import json

    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "test-key-4f9c2a71d8e3b605a9c7e1f2d4b8a36c")
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        path = publication(port)
        result = cli_run(path, "digest", "send", "weekly", "--json")
        again = cli_run(path, "digest", "send", "weekly", "--json")
    sent = json.loads(result.output)
    assert {k: sent[k] for k in ("status", "issue", "recipients", "delivered", "failed", "deferred")} == {
        "status": "sent",
        "issue": 1,
        "recipients": 3,
        "delivered": 3,
        "failed": 0,
        "deferred": 0,
    }
    assert sent["articles"] > 0
    assert json.loads(again.output)["status"] == "skipped"
    assert handler.received() == {"r0@d0.example": 1, "r1@d1.example": 1, "r2@d2.example": 1}
    assert (path.parent / "archive" / "weekly" / "1.html").exists()  # the "view in browser" target
    status = json.loads(cli_run(path, "digest", "status", "weekly", "--json").output)
    assert status["counts"]["delivered"] == 3 and status["state"] == "sent"


def test_digest_send_finishes_a_sent_issues_leftovers_and_says_so(publication, monkeypatch):
    import json

    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "test-key-4f9c2a71d8e3b605a9c7e1f2d4b8a36c")
    handler = SinkHandler(reject={"r1@d1.example"})
    with smtp_sink(handler) as port:
        path = publication(port)
        assert json.loads(cli_run(path, "digest", "send", "weekly", "--json").output)["failed"] == 1
        store = Store.open(load_settings(path).database.url)
        issue = store.issues.latest("weekly")
        dead = make_worker_lock(store)  # a retry round that died with one reader on the wire
        dead.hold()
        with store.engine.begin() as connection:
            connection.execute(
                deliveries.update()
                .where(deliveries.c.issue_id == issue.id, deliveries.c.email == "r2@d2.example")
                .values(state="sending", lease_token=dead.worker_id, lease_until=datetime.now(UTC) + timedelta(hours=1))
            )
        dead.release()
        store.close()
        again = json.loads(cli_run(path, "digest", "send", "weekly", "--json").output)
    assert again["status"] == "resumed" and again["issue"] == 1 and again["state"] == "sent"
    assert again["run"] == {"frozen": 0, "delivered": 1, "failed": 0, "deferred": 0, "taken_over": 1}
    assert handler.received()["r2@d2.example"] == 2  # sent again: its first outcome was never recorded


def test_digest_send_dry_run_writes_its_own_maildir_beside_the_outbox_and_records_nothing(publication, monkeypatch):
    import json
    import mailbox

    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "test-key-4f9c2a71d8e3b605a9c7e1f2d4b8a36c")
    path = publication()
    result = json.loads(cli_run(path, "digest", "send", "weekly", "--dry-run", "--json").output)
    assert result["dry_run"] and result["recipients"] == 3
    dry = path.parent / "dry-run" / "weekly-1"
    assert result["maildir"] == str(dry) and len(mailbox.Maildir(dry, factory=None, create=False)) == 3
    assert not (path.parent / "outbox").exists()  # the real outbox holds only what was really sent
    assert cli_run(path, "digest", "status", "weekly").exit_code == 1  # nothing started
    assert json.loads(cli_run(path, "digest", "issues", "weekly", "--json").output) == []  # nothing stored
    real = json.loads(cli_run(path, "digest", "send", "weekly", "--json").output)
    assert (real["status"], real["delivered"]) == ("sent", 3)
    assert len(mailbox.Maildir(path.parent / "outbox", factory=None, create=False)) == 3


def test_pause_resume_and_cancel_commands(publication, monkeypatch):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "test-key-4f9c2a71d8e3b605a9c7e1f2d4b8a36c")
    path = publication()
    assert cli_run(path, "digest", "pause", "weekly").exit_code == 1  # nothing is sending
    assert cli_run(path, "digest", "build", "weekly").exit_code == 0
    store = Store.open(load_settings(path).database.url)
    issue = store.issues.latest("weekly")
    dispatch.start_issue(store, issue, NOW)
    store.close()
    assert "paused" in cli_run(path, "digest", "pause", "weekly").output
    assert "is paused" in cli_run(path, "digest", "send", "weekly").output
    resumed = cli_run(path, "digest", "resume", "weekly")
    assert "(resumed): 3 recipients — 3 delivered" in resumed.output
    assert cli_run(path, "digest", "cancel-sending", "weekly").exit_code == 1  # already sent


def test_two_workers_on_one_issue_never_send_the_same_recipient(store, config):
    import threading

    settings = config(batch_size=10)
    emails = add_subscribers(store, 200)
    issue = make_issue(store)
    dispatch.start_issue(store, issue, NOW)
    transports = [MemoryTransport(), MemoryTransport()]
    workers = [
        threading.Thread(
            target=dispatch.deliver_issue,
            args=(store, settings, issue),
            kwargs={"rendered": RENDERED, "transport": transport, "clock": Clock()},
        )
        for transport in transports
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    sent = [message.recipient for transport in transports for message in transport.sent]
    assert sorted(sent) == sorted(emails)
    assert store.deliveries.counts(issue.id)["delivered"] == 200


def test_an_interrupted_send_records_every_reply_and_gives_back_the_rest(store, config):
    settings = config(batch_size=5)
    add_subscribers(store, 30)
    issue = make_issue(store)

    def reply(message):
        if len(transport.sent) == 7:
            raise KeyboardInterrupt
        return SendResult("delivered", 250)

    transport = MemoryTransport(reply=reply)
    with pytest.raises(KeyboardInterrupt):
        dispatch.deliver_issue(store, settings, issue, rendered=RENDERED, transport=transport, clock=Clock())
    counts = store.deliveries.counts(issue.id)
    assert counts["sending"] in (1, 2)  # the message in hand in each batch being sent: outcome unknown
    assert counts["delivered"] >= 7 and counts["delivered"] == len(transport.sent)  # every reply is stored
    assert counts["pending"] == 30 - counts["sending"] - counts["delivered"]
    assert {row["attempts"] for row in store.deliveries.rows(issue.id) if row["state"] == "pending"} == {0}


def test_ctrl_c_while_composing_still_records_the_batch_on_the_wire(store, config):
    settings = config(batch_size=5)
    add_subscribers(store, 30)
    issue = make_issue(store)
    dispatch.start_issue(store, issue, NOW)
    compiled = dispatch.compile_message(
        RENDERED, settings=settings, newsletter=settings.newsletter("weekly"), issue_number=1
    )
    compose = dispatch.composer(compiled, settings, settings.newsletter("weekly"), issue)
    calls = []

    def interrupted(leased, now):
        calls.append(leased)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return compose(leased, now)

    with pytest.raises(KeyboardInterrupt):
        dispatch.send_issue(store, issue, interrupted, MemoryTransport(), settings.delivery, clock=Clock())
    counts = store.deliveries.counts(issue.id)
    assert (counts["delivered"], counts["sending"], counts["pending"]) == (5, 0, 25)


def test_digest_cancel_of_a_started_issue_sends_nobody_else(publication, monkeypatch):
    import json

    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "test-key-4f9c2a71d8e3b605a9c7e1f2d4b8a36c")
    path = publication()
    assert cli_run(path, "digest", "build", "weekly").exit_code == 0
    store = Store.open(load_settings(path).database.url)
    dispatch.start_issue(store, store.issues.latest("weekly"), NOW)
    store.close()
    assert cli_run(path, "digest", "cancel", "weekly", "1").exit_code == 0
    status = json.loads(cli_run(path, "digest", "status", "weekly", "1", "--json").output)
    assert status["state"] == "cancelled" and status["counts"].get("pending", 0) == 0
    assert status["counts"]["cancelled"] == 3


def test_a_dry_run_of_a_draft_writes_the_maildir_and_leaves_the_draft_and_its_articles(store, make_settings, tmp_path):
    import mailbox
    from datetime import UTC, datetime, timedelta

    from publisher.clock import fixed
    from publisher.model import Draft, Subscriber
    from publisher.publication import Publication

    moment = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    settings = make_settings(
        {
            "delivery": {"transport": "maildir", "maildir": "outbox"},
            "newsletters": {"weekly": {"require_approval": True}},
        },
        database_url=store.url,
    )
    drafts = [
        Draft(
            key=f"d{i}",
            slug=f"d{i}",
            title=f"Story {i}",
            summary_html="<p>x</p>",
            content_html="<p>x</p>",
            truncated=False,
            published=moment - timedelta(hours=i + 1),
        )
        for i in range(2)
    ]
    store.articles.ingest(drafts, site_url=settings.site.url, guid_authority="x", now=moment, source="t")
    people = [Subscriber(email=f"d{i}@example.org", status="confirmed", newsletters=("weekly",)) for i in range(4)]
    store.subscribers.upsert_many(people, moment)
    pub = Publication(settings, store, clock=fixed(moment))

    planned = pub.send("weekly", dry_run=True)  # nothing built yet: the issue that would be built
    assert planned.dry_run_recipients == 4 and store.issues.list("weekly") == []
    assert store.issues.sent_ids("weekly") == set()

    pub.build("weekly")
    held = store.issues.sent_ids("weekly")  # the draft's own articles, nothing else
    drafted = pub.send("weekly", dry_run=True)
    assert drafted.status == "sent" and drafted.dry_run_recipients == 4 and drafted.issue.number == 1
    assert len(mailbox.Maildir(tmp_path / "dry-run" / "weekly-1", create=False)) == 4  # this run's, not both
    assert not (tmp_path / "outbox").exists()
    issue = store.issues.get("weekly", 1)
    assert issue.state == "draft" and sum(store.deliveries.counts(issue.id).values()) == 0
    assert store.issues.sent_ids("weekly") == held == set(issue.article_ids)
    pub.cancel("weekly", 1)
    assert store.issues.sent_ids("weekly") == set()  # its articles go back: none was consumed


class GreylistingSink(SinkHandler):
    """Refuses `later` with a temporary 451 and `reject` (SinkHandler) with a 550."""

    def __init__(self, later: str, **options) -> None:
        super().__init__(**options)
        self.later = later

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's name
        if address == self.later:
            return "451 4.7.1 Greylisted, please try again in 5 minutes"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


def test_digest_status_failures_names_each_address_with_the_servers_reply(publication, monkeypatch):
    import json

    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "test-key-4f9c2a71d8e3b605a9c7e1f2d4b8a36c")
    handler = GreylistingSink("r2@d2.example", reject={"r1@d1.example"})
    with smtp_sink(handler) as port:
        path = publication(port)
        cli_run(path, "digest", "send", "weekly")
    text = cli_run(path, "digest", "status", "weekly", "--failures")
    assert text.exit_code == 0
    lines = text.output.splitlines()
    assert lines[0] == "weekly issue 1 [sent]: 1 failed, 1 deferred"
    assert lines[1].split()[:4] == ["failed", "r1@d1.example", "550", "5.1.1"]
    assert "User unknown" in lines[1]
    assert lines[2].split()[:4] == ["deferred", "r2@d2.example", "451", "4.7.1"]
    assert "Greylisted" in lines[2] and "next attempt" in lines[2]
    found = json.loads(cli_run(path, "digest", "status", "weekly", "--failures", "--json").output)["failures"]
    assert [(f["email"], f["state"], f["code"]) for f in found] == [
        ("r1@d1.example", "failed", 550),
        ("r2@d2.example", "deferred", 451),
    ]
    assert found[1]["next_attempt_at"] and "r0@d0.example" not in text.output


def test_digest_status_failures_lists_bounces_that_came_back_later(publication, database_url, tmp_path, monkeypatch):
    """r0 was accepted, then its provider sent a DSN back; r1 was refused during the session."""
    import json

    from publisher import verp
    from tests.helpers import REPO

    key = "test-key-4f9c2a71d8e3b605a9c7e1f2d4b8a36c"
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", key)
    with smtp_sink(SinkHandler(reject={"r1@d1.example"})) as port:
        path = publication(port)
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("[delivery]\n", '[delivery]\nreturn_path = "bounces@news.example.org"\n'))
        assert cli_run(path, "digest", "send", "weekly").exit_code == 0
    store = Store.open(database_url)
    try:
        issue_id = store.issues.get("weekly", 1).id
        r0 = store.subscribers.get("r0@d0.example").id
    finally:
        store.close()
    token = verp.make_token((key,), issue_id, r0)
    for sample in ("gmail-dsn.eml", "postfix-delayed.eml", "arf-complaint.eml"):
        raw = (REPO / "tests" / "data" / "inbound" / sample).read_bytes()
        (tmp_path / sample).write_bytes(raw.replace(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaa", token.encode()))
        assert cli_run(path, "inbound", "import", str(tmp_path / sample)).exit_code == 0

    text = cli_run(path, "digest", "status", "weekly", "--failures").output
    lines = text.splitlines()
    assert lines[0] == (
        "weekly issue 1 [sent]: 1 failed, 0 deferred, 1 bounced later, 1 soft bounce later, 1 complained later"
    )
    assert lines[1].split()[:5] == ["failed", "r1@d1.example", "550", "5.1.1", "<r1@d1.example>:"]  # said once
    assert lines[2].split()[:3] == ["bounced", "r0@d0.example", "550-5.1.1"]  # the DSN's status said once
    assert "5.1.1 550" not in lines[2] and "does not exist" in lines[2] and "(dsn received" in lines[2]
    assert {line.split("  ")[1].split()[0] for line in lines[1:]} == {"soft", "complained", "failed", "bounced"}
    assert len({line.index("@d") for line in lines[1:]}) == 1  # the addresses start in one column
    found = json.loads(cli_run(path, "digest", "status", "weekly", "--failures", "--json").output)["failures"]
    assert [(f["email"], f["state"], f["source"], f["status"]) for f in found] == [
        ("r1@d1.example", "failed", "smtp", "5.1.1"),
        ("r0@d0.example", "bounced", "dsn", "5.1.1"),
        ("r0@d0.example", "complained", "complaint", ""),
        ("r0@d0.example", "soft_bounce", "dsn", "4.4.1"),  # scripts keep the state's own name
    ]
    assert "does not exist" in found[1]["reply"]


def test_a_send_that_joins_another_live_worker_waits_for_its_rows_and_says_joined(store, config):
    settings = config(batch_size=10, lease="5m")
    add_subscribers(store, 30)
    issue = make_issue(store)
    dispatch.start_issue(store, issue, NOW)
    other = make_worker_lock(store)  # another `digest send`, alive, with ten readers on its wire
    other.hold()
    lease = settings.delivery.lease
    theirs = store.deliveries.lease(issue.id, limit=10, now=NOW, lease_for=lease, owner=other.worker_id)
    transport = MemoryTransport()
    joined: list[dispatch.SendReport] = []
    joining = threading.Thread(
        target=lambda: joined.append(
            dispatch.deliver_issue(
                store, settings, issue, rendered=RENDERED, transport=transport, clock=Clock(), started=True, join=True
            )
        )
    )
    joining.start()
    joining.join(3)
    assert joining.is_alive()  # its own twenty are sent; it waits for the other run's ten
    assert len(transport.sent) == 20
    outcomes = [dispatch.decide(row, SendResult("delivered", 250), settings.delivery, NOW) for row in theirs]
    store.deliveries.record(issue.id, outcomes, NOW, soft_bounce_limit=3)
    joining.join(10)
    other.release()
    (result,) = joined
    assert (result.get("delivered"), result.issue_state, result.joined) == (30, "sent", 1)
    said = dispatch.summary(result, issue, "resumed")
    assert (said["status"], said["run"]["delivered"], said["run"]["frozen"]) == ("joined", 20, 0)
    assert {m.recipient for m in transport.sent}.isdisjoint(row.email for row in theirs)


@pytest.mark.parametrize("their_lease", ["rolled back", "committed"])
def test_a_send_that_joins_while_another_worker_is_leasing_every_row_waits_and_sends_them(store, config, their_lease):
    settings = config(batch_size=50, lease="5m")
    emails = add_subscribers(store, 30)
    issue = make_issue(store)
    dispatch.start_issue(store, issue, NOW)
    other = make_worker_lock(store)
    other.hold()
    transport = MemoryTransport()
    joined: list[dispatch.SendReport] = []
    # the other run's lease has marked every row its own and not yet committed: PostgreSQL's
    # SKIP LOCKED hands the joining run nothing, and no row is seen held by a live worker yet
    with store.engine.connect() as leasing:
        leasing.execute(
            update(deliveries)
            .where(deliveries.c.issue_id == issue.id)
            .values(state="sending", lease_token=other.worker_id, lease_until=NOW + timedelta(minutes=5))
        )
        joining = threading.Thread(
            target=lambda: joined.append(
                dispatch.deliver_issue(
                    store,
                    settings,
                    issue,
                    rendered=RENDERED,
                    transport=transport,
                    clock=Clock(),
                    started=True,
                    join=True,
                )
            )
        )
        joining.start()
        joining.join(1.5)
        assert joining.is_alive()  # it waits for the lease in progress instead of saying "sending, 0 delivered"
        if their_lease == "committed":
            leasing.commit()  # the rows are the other run's now: it waits for that run
        else:
            leasing.rollback()  # that lease never went through: the rows are the joining run's to send
    if their_lease == "committed":
        joining.join(1.5)
        assert joining.is_alive() and transport.sent == []
    other.release()  # the other run ends (or dies): whatever it still held is taken over
    joining.join(20)
    (result,) = joined
    assert (result.get("delivered"), result.issue_state) == (30, "sent")
    assert sorted(m.recipient for m in transport.sent) == sorted(emails)


def test_two_runs_finishing_an_issue_at_once_both_report_it_sent(store, config, monkeypatch):
    settings = config()
    add_subscribers(store, 5)
    issue = make_issue(store)
    dispatch.deliver_issue(store, settings, issue, rendered=RENDERED, transport=MemoryTransport(), clock=Clock())
    assert store.issues.get("weekly", 1).state == "sent"
    # the other run looked while the issue was still sending, then this run marked it sent first
    looked = store.issues.get
    stale = [replace(looked("weekly", 1), state="sending")]
    monkeypatch.setattr(store.issues, "get", lambda *a: stale.pop() if stale else looked(*a))
    assert dispatch.report(store, issue, NOW).issue_state == "sent"


def test_a_joining_send_leaves_rows_a_stuck_session_keeps_locked_and_returns(make_settings, postgres_url, monkeypatch):
    """PostgreSQL only: there a lease skips rows another session has locked (on SQLite it waits for
    the writer lock instead, which the test above covers)."""
    monkeypatch.setattr(dispatch, "LOCKED_WAIT_MAX", 0.5)
    data = {"newsletters": {"weekly": {"title": "Weekly", "from": "The Weekly <weekly@news.example.org>"}}}
    settings = make_settings({**data, "delivery": {"batch_size": 50, "lease": "5m"}}, database_url=postgres_url)
    store = Store.open(postgres_url)
    try:
        emails = add_subscribers(store, 10)
        issue = make_issue(store)
        dispatch.start_issue(store, issue, NOW)
        transport = MemoryTransport()
        with store.engine.connect() as stuck:  # an operator's session left open with the rows locked
            stuck.execute(select(deliveries.c.subscriber_id).where(deliveries.c.issue_id == issue.id).with_for_update())
            started = time.monotonic()
            waited = dispatch.deliver_issue(
                store, settings, issue, rendered=RENDERED, transport=transport, clock=Clock(), started=True, join=True
            )
            assert time.monotonic() - started < 5  # it gave up on them instead of polling for ever
            assert (waited.issue_state, waited.get("pending"), transport.sent) == ("sending", 10, [])
            stuck.rollback()
        sent = dispatch.deliver_issue(
            store, settings, issue, rendered=RENDERED, transport=transport, clock=Clock(), started=True, join=True
        )
        assert (sent.issue_state, sorted(m.recipient for m in transport.sent)) == ("sent", sorted(emails))
    finally:
        store.close()


def test_a_relay_that_answers_pipelined_commands_out_of_order_records_no_wrong_outcome(store, config):
    emails = add_subscribers(store, 40)
    issue = make_issue(store)
    handler = PipeliningSink()
    relay = MisbehavingRelay(handler, free_port(), ReorderingSMTP)
    relay.start()
    try:
        result = dispatch.deliver_issue(store, config(relay.port), issue, rendered=RENDERED, clock=Clock())
    finally:
        relay.stop()
    assert handler.received() == dict.fromkeys(emails, 1)  # nobody lost, nobody twice
    unknown = [row for row in store.deliveries.failures(issue.id) if row["last_status"] == "4.5.0"]
    # the messages whose final reply the relay answered out of order (at most one per connection,
    # before pipelining was dropped) are deferred to be retried, never recorded delivered or failed
    assert 1 <= len(unknown) <= 3 and all("outcome unknown" in row["last_error"] for row in unknown)
    outcomes = (result.get("delivered"), result.get("deferred"), result.get("failed"))
    assert outcomes == (40 - len(unknown), len(unknown), 0)
