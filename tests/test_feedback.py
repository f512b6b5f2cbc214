"""Acting on what comes back (publisher/feedback.py and store/inbound.py): whatever a message
holds can be stored, soft bounces score once per issue and suppress at the limit, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from publisher import verp
from publisher.feedback import apply, receive
from publisher.inbound.parse import Feedback, Kind
from publisher.model import Subscriber
from tests.helpers import CORPUS, SAMPLE_TOKEN, make_issue

NOW = datetime(2025, 10, 20, 12, 0, tzinfo=UTC)
KEY = "feedback-test-3e8a1c5f9b2d7e4a6c0f1b9d3e7a5c28"
CONTROLS = "".join(chr(c) for c in (*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0x85, 0x9B))


@pytest.fixture
def settings(make_settings, database_url, monkeypatch):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    return make_settings(
        {
            "newsletters": {"weekly": {}},
            "delivery": {"return_path": "bounces@news.example.org"},
        },
        database_url=database_url,
    )


def people(store, *emails: str) -> list[int]:
    store.subscribers.upsert_many(
        [Subscriber(email=e, status="confirmed", newsletters=("weekly",)) for e in emails], NOW
    )
    return [store.subscribers.get(email).id for email in emails]


# --- no input can make the store write fail ------------------------------------------------------


def test_nul_and_control_characters_in_any_field_are_stored_without_them(store, settings):
    (alice,) = people(store, "alice@a.example")
    issue = make_issue(store, "Weekly", NOW, 1)
    token = verp.make_token(settings.secret_keys, issue.id, alice)
    feedback = Feedback(
        Kind.BOUNCE,
        recipient="alice@a.example",
        tokens=(token,),
        status="5.1.1\x00",
        diagnostic=f"smtp; 550 5.1.1 no such user\x00 {CONTROLS}\x1b]0;pwned\x07 end",
        format="dsn",
        sender="MAILER-DAEMON\x00@mx.example",
        subject="Undeliverable:\x00 Weekly\r\n\tfolded",
    )
    raw = b"Subject: Undeliverable:\x00 Weekly\r\n\r\nline one\tcell\r\nline two \x1b[31m\x00\r\n"
    recorded = apply(store, feedback, settings, NOW, source="file", raw=raw)

    assert recorded.action == "suppressed (hard_bounce)"
    assert store.subscribers.get("alice@a.example").status == "bounced"
    (row,) = store.inbound.messages()
    assert row["subject"] == "Undeliverable: Weekly folded"
    assert row["sender"] == "MAILER-DAEMON@mx.example"
    assert row["status"] == "5.1.1"
    assert row["diagnostic"] == "smtp; 550 5.1.1 no such user ]0;pwned end"
    assert row["raw"] == "Subject: Undeliverable: Weekly\r\n\r\nline one\tcell\r\nline two [31m\r\n"  # lines kept
    (suppression,) = store.inbound.suppressed()
    assert "\x1b" not in suppression.evidence and "\x00" not in suppression.evidence
    assert "550 5.1.1 no such user" in suppression.evidence


def test_a_message_with_nul_bytes_and_lone_surrogates_is_recorded(store, settings):
    raw = (CORPUS / "human-reply.eml").read_bytes().replace(b"Subject: ", b"Subject: \x00Re:\x00 ", 1)
    recorded = receive(store, settings, raw + b"\x00 trailing \xff\xfe", NOW, source="file")
    assert recorded.kind == "unknown" and not recorded.duplicate
    entry = Feedback(Kind.UNKNOWN, sender="reader\ud800@example.org", subject="Hi \udcff there")
    assert apply(store, entry, settings, NOW, source="file", raw=b"x").kind == "unknown"
    rows = store.inbound.messages()
    assert rows[0]["sender"] == "reader@example.org"
    assert rows[0]["subject"] == "Hi  there"
    assert "\x00" not in rows[1]["raw"] and "\x00" not in rows[1]["subject"]


def test_bidi_overrides_are_stripped_from_one_line_fields(store, settings):
    """A webhook event (never parsed as mail) whose diagnostic and sender hide right-to-left
    overrides: they are stored without them, so `subscribers suppressed` and `inbound list` show
    what the text says; the raw text keeps them (`inbound show` shows them as <U+202E>)."""
    from publisher.feedback import apply_event

    people(store, "eve@e.example")
    bidi = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
    event = Feedback(
        Kind.BOUNCE,
        recipient="eve@e.example",
        status="5.1.1",
        diagnostic=f"550 user \u202egpj.exe{bidi} unknown",
        sender="mailer\u202e@mx.example",
        subject="bounce \u2067x\u2069",
    )
    recorded = apply_event(store, settings, event, NOW, source="webhook:postmark", event_id="e1")
    assert recorded.action == "suppressed (hard_bounce)"
    (row,) = store.inbound.messages()
    assert (row["diagnostic"], row["sender"], row["subject"]) == (
        "550 user gpj.exe unknown",
        "mailer@mx.example",
        "bounce x",
    )
    (suppression,) = store.inbound.suppressed()
    assert not any(mark in suppression.evidence for mark in bidi)
    apply(store, Feedback(Kind.UNKNOWN, subject="hi"), settings, NOW, source="file", raw="a\u202eb".encode())
    assert store.inbound.messages()[0]["raw"] == "a\u202eb"  # the raw text is kept as it came


def test_webhook_nonces_and_addresses_with_nul_are_no_error(store, settings):
    assert store.inbound.claim_nonce("mailgun:\x00abc", NOW, timedelta(minutes=10))
    assert not store.inbound.claim_nonce("mailgun:\x00abc", NOW, timedelta(minutes=10))
    assert store.inbound.subscriber_id("nobody\x00@example.org") is None
    assert store.subscribers.unsuppress("nobody\x00@example.org", "why\x00", NOW) is None


# --- soft bounces: once per issue, suppressed at the limit ------------------------------------


def soft_bounce(settings, store, issue_id: int, subscriber_id: int, when: datetime, n: int):
    token = verp.make_token(settings.secret_keys, issue_id, subscriber_id)
    raw = (CORPUS / "postfix-delayed.eml").read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode())
    raw = raw.replace(b"Message-Id: <", f"Message-Id: <{n}.".encode())  # a new report each time
    return receive(store, settings, raw, when, source="file")


def test_delay_warnings_for_one_issue_count_once(store, settings):
    """Exim warns at 4 h, 24 h and 48 h about the same slow message: that is one soft bounce."""
    (slow,) = people(store, "slow@s.example")
    issue = make_issue(store, "Weekly", NOW, 1)
    actions = [soft_bounce(settings, store, issue.id, slow, NOW + timedelta(hours=h), h).action for h in (4, 24, 48)]
    assert actions[0] == "soft bounce scored: 1.00 of 3"
    assert actions[1:] == ["nothing: a soft bounce for this issue was already counted"] * 2
    assert store.subscribers.get("slow@s.example").status == "confirmed"
    assert store.subscribers.get("slow@s.example").bounce_count == 1
    assert store.inbound.suppressed() == []


def test_delay_warnings_for_a_confirmation_mail_count_once(store, settings):
    """Three "Action: delayed" reports about one confirmation mail (a token naming no issue) are
    one soft bounce, not a suppression within seconds; one a month later counts again."""
    (slow,) = people(store, "slow@s.example")
    hours = (0, 1, 2, 24 * 20)
    actions = [soft_bounce(settings, store, verp.NO_ISSUE, slow, NOW + timedelta(hours=h), h).action for h in hours]
    assert actions[0] == "soft bounce scored: 1.00 of 3"
    assert actions[1:] == ["nothing: a soft bounce for a confirmation or welcome mail was already counted"] * 3
    assert store.subscribers.get("slow@s.example").status == "confirmed"
    assert store.inbound.suppressed() == []
    later = soft_bounce(settings, store, verp.NO_ISSUE, slow, NOW + timedelta(days=51), 99)
    assert later.action.startswith("soft bounce scored: ")


def test_the_soft_bounce_that_reaches_the_limit_suppresses(store, settings):
    (x,) = people(store, "x@x.example")
    issues = [make_issue(store, "Weekly", NOW, n) for n in (1, 2, 3)]
    actions = [
        soft_bounce(settings, store, issue.id, x, NOW + timedelta(seconds=n), n) for n, issue in enumerate(issues)
    ]
    assert [a.action for a in actions[:2]] == ["soft bounce scored: 1.00 of 3", "soft bounce scored: 2.00 of 3"]
    assert actions[2].action == "suppressed (soft_bounces)"  # 2.99999… shown as 3.00 is at the limit
    assert store.subscribers.get("x@x.example").status == "bounced"
    (suppression,) = store.inbound.suppressed()
    assert suppression.reason == "soft_bounces" and suppression.evidence.startswith("score 3.00: file soft_bounce")


def test_bounce_count_in_subscribers_list_counts_bounces_that_come_back(tmp_path, database_url, monkeypatch):
    from click.testing import CliRunner

    from publisher.cli import cli
    from publisher.store import Store

    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[site]\nurl = "https://news.example.org"\npostal_address = "1 Sample Street, Exampletown"\n'
        f'[database]\nurl = "{database_url}"\n[newsletters.weekly]\n'
        '[delivery]\nreturn_path = "bounces@news.example.org"\n'
    )
    run = CliRunner()
    assert run.invoke(cli, ["--config", str(config), "subscribers", "add", "b@b.example", "--confirmed"]).exit_code == 0
    store = Store.open(database_url)
    try:
        b = store.subscribers.get("b@b.example").id
        issue = make_issue(store, "Weekly", NOW, 1)
    finally:
        store.close()
    token = verp.make_token((KEY,), issue.id, b)
    raw = (CORPUS / "postfix-delayed.eml").read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode())
    Path(tmp_path / "delayed.eml").write_bytes(raw)
    assert run.invoke(cli, ["--config", str(config), "inbound", "import", str(tmp_path / "delayed.eml")]).exit_code == 0
    listed = json.loads(run.invoke(cli, ["--config", str(config), "subscribers", "list", "--json"]).output)
    assert [(p["email"], p["status"], p["bounce_count"]) for p in listed] == [("b@b.example", "confirmed", 1)]
