"""Mail that comes back, end to end: VERP senders out, DSNs, complaints, auto-replies and mailto
unsubscribes back in (through the SMTP listener and from a maildir), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import mailbox
import smtplib
import socket
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sink import SinkHandler, free_port, smtp_sink

from publisher import dispatch, verp
from publisher.feedback import identify, receive
from publisher.inbound.files import import_paths
from publisher.inbound.listener import Listener
from publisher.inbound.parse import Feedback, Kind, parse
from publisher.model import Issue, RenderedIssue, Subscriber
from publisher.transports import make_transport
from tests.helpers import CORPUS, SAMPLE_TOKEN, crlf, make_issue

SAMPLE_RECIPIENT = "alice@example.com"
NOW = datetime(2025, 10, 20, 12, 0, tzinfo=UTC)
KEYS = ("inbound-test-7c3e9a1f5b2d8e4a6c0f3b9d1e7a5c28",)
RENDERED = RenderedIssue(
    newsletter="weekly",
    subject="Weekly: notes from the field",
    preheader="3 new articles",
    html='<p>Hello @@NAME@@,</p><p><a href="@@UNSUBSCRIBE_URL@@">Unsubscribe</a></p>',
    text="Hello @@NAME@@,\n\nUnsubscribe: @@UNSUBSCRIBE_URL@@\n",
    placeholders={key: f"@@{key.upper()}@@" for key in ("name", "email", "unsubscribe_url", "preferences_url")},
)


# --- the parser, on the corpus ---------------------------------------------------------------

EXPECTED = {
    "postfix-user-unknown.eml": (Kind.BOUNCE, SAMPLE_RECIPIENT, "5.1.1", "dsn"),
    "postfix-delayed.eml": (Kind.SOFT_BOUNCE, SAMPLE_RECIPIENT, "4.4.1", "dsn"),
    "exim-failed.eml": (Kind.BOUNCE, SAMPLE_RECIPIENT, "5.1.1", "exim"),
    "office365-recipient-not-found.eml": (Kind.BOUNCE, SAMPLE_RECIPIENT, "5.1.10", "dsn"),
    "exchange-legacy.eml": (Kind.BOUNCE, SAMPLE_RECIPIENT, "5.1.1", "exchange"),
    "gmail-dsn.eml": (Kind.BOUNCE, SAMPLE_RECIPIENT, "5.1.1", "dsn"),
    "gmail-legacy.eml": (Kind.BOUNCE, SAMPLE_RECIPIENT, "5.1.1", "gmail"),
    "yahoo-failure-notice.eml": (Kind.BOUNCE, SAMPLE_RECIPIENT, "5.0.0", "qmail"),
    "arf-complaint.eml": (Kind.COMPLAINT, SAMPLE_RECIPIENT, "", "arf"),
    "out-of-office.eml": (Kind.AUTO_REPLY, "", "", "header"),
    "vacation-x-autoreply.eml": (Kind.AUTO_REPLY, "", "", "header"),
    "mailto-unsubscribe.eml": (Kind.UNSUBSCRIBE, SAMPLE_RECIPIENT, "", "mailto"),
    "human-reply.eml": (Kind.UNKNOWN, "", "", ""),
    # Out of office with a null sender and a bounce-like subject: "permanently moved", "temporarily"
    "oof-moved-permanently.eml": (Kind.AUTO_REPLY, "", "", "header"),
    "oof-temporarily-away.eml": (Kind.AUTO_REPLY, "", "", "header"),
}


def test_the_corpus_is_all_covered():
    assert sorted(path.name for path in CORPUS.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parser_reads_each_sample(name):
    found = parse((CORPUS / name).read_bytes())
    assert (found.kind, found.recipient, found.status, found.format) == EXPECTED[name]
    assert SAMPLE_TOKEN in found.tokens[0]  # the VERP token the report came back to
    if found.kind in (Kind.BOUNCE, Kind.SOFT_BOUNCE):
        assert found.diagnostic and found.original_message_id == "<weekly.3.1760943600.17@news.example.org>"


def test_a_delivery_notice_is_never_a_bounce():
    raw = (CORPUS / "postfix-user-unknown.eml").read_bytes().replace(b"Action: failed", b"Action: delivered")
    raw = raw.replace(b"Status: 5.1.1", b"Status: 2.0.0")
    assert parse(raw).kind is Kind.AUTO_REPLY


# --- VERP tokens ----------------------------------------------------------------------------


def test_verp_tokens_verify_in_any_case_only_under_our_key_and_fit_a_local_part():
    token = verp.make_token(KEYS, 12, 345)
    unsub = verp.make_token(KEYS, 12, 345, verp.UNSUBSCRIBE)
    assert verp.read_token(KEYS, token.upper()) == verp.Verp(12, 345, verp.BOUNCE)
    assert verp.read_token(("new-key", *KEYS), unsub) == verp.Verp(12, 345, verp.UNSUBSCRIBE)
    assert verp.read_token(("another-key",), token) is None
    assert verp.read_token(KEYS, token[:-1] + ("a" if token[-1] != "a" else "b")) is None
    assert verp.read_token(KEYS, "unsub-" + token) is None  # a bounce token is not an unsubscribe token
    assert len(verp.address("bounces@news.example.org", unsub).partition("@")[0]) <= 64


def test_a_token_verifies_only_the_kind_of_mail_it_was_made_for():
    bounce, unsub = verp.make_token(KEYS, 12, 345), verp.make_token(KEYS, 12, 345, verp.UNSUBSCRIBE)
    for kind in (Kind.BOUNCE, Kind.SOFT_BOUNCE, Kind.COMPLAINT, Kind.AUTO_REPLY):
        assert identify(Feedback(kind, tokens=(unsub,)), KEYS).verified is False  # an unsub token is public
        assert identify(Feedback(kind, tokens=(bounce,)), KEYS).verified is True
    assert identify(Feedback(Kind.UNSUBSCRIBE, tokens=(bounce,)), KEYS).verified is False
    assert identify(Feedback(Kind.UNSUBSCRIBE, tokens=(unsub,)), KEYS).verified is True


# --- end to end -------------------------------------------------------------------------------

PEOPLE = {
    "alice@a.example": ("postfix-user-unknown.eml", ("weekly",)),
    "bob@b.example": ("exim-failed.eml", ("weekly",)),
    "carol@c.example": ("office365-recipient-not-found.eml", ("weekly",)),
    "yann@y.example": ("yahoo-failure-notice.eml", ("weekly",)),
    "dave@d.example": ("arf-complaint.eml", ("monthly", "weekly")),
    "erin@e.example": ("out-of-office.eml", ("weekly",)),
    "frank@f.example": ("mailto-unsubscribe.eml", ("monthly", "weekly")),
    "grace@g.example": (None, ("weekly",)),  # the target of forged bounces
    "henry@h.example": ("human-reply.eml", ("weekly",)),
}


@pytest.fixture
def inbound_settings(make_settings, database_url, monkeypatch):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEYS[0])

    def make(smtp_port: int, listen_port: int = 0):
        return make_settings(
            {
                "newsletters": {
                    "weekly": {"title": "Weekly", "from": "The Weekly <weekly@news.example.org>"},
                    "monthly": {"title": "Monthly", "from": "The Monthly <monthly@news.example.org>"},
                },
                "delivery": {
                    "transport": "smtp",
                    "return_path": "bounces@news.example.org",
                    "smtp": {"host": "127.0.0.1", "port": smtp_port, "timeout": 10},
                },
                "inbound": {"listen": f"127.0.0.1:{listen_port or free_port()}"},
            },
            database_url=database_url,
        )

    return make


def send(store, settings, issue: Issue):
    transport = make_transport(settings.delivery)
    try:
        return dispatch.deliver_issue(store, settings, issue, rendered=RENDERED, transport=transport, now=NOW)
    finally:
        transport.close()


def returned_mail(handler: SinkHandler, store) -> list[tuple[str, bytes]]:
    """What comes back for issue 1, written as the receiving systems would: (envelope recipient, bytes)."""
    out = []
    for email, (sample, _) in PEOPLE.items():
        if sample is None:
            continue
        sender = handler.senders[email]
        message = handler.parsed(email)[0]
        mailto = message["List-Unsubscribe"].split(",")[1].strip().strip("<>")
        unsub_address = mailto.removeprefix("mailto:").partition("?")[0]
        token = verp.tokens_in(sender)[0]
        unsub_token = verp.tokens_in(unsub_address)[0]
        raw = (CORPUS / sample).read_bytes()
        raw = raw.replace(b"unsub-" + SAMPLE_TOKEN.encode(), unsub_token.encode())
        raw = raw.replace(SAMPLE_TOKEN.encode(), token.encode()).replace(SAMPLE_RECIPIENT.encode(), email.encode())
        out.append((unsub_address if sample.startswith("mailto") else sender, raw))
    # Forged: a bounce for grace with a token we did not sign, and one naming only her Message-ID.
    grace_token = verp.tokens_in(handler.senders["grace@g.example"])[0]
    forged_token = grace_token[:-4] + ("aaaa" if grace_token[-4:] != "aaaa" else "bbbb")
    forged = (CORPUS / "gmail-dsn.eml").read_bytes().replace(SAMPLE_TOKEN.encode(), forged_token.encode())
    out.append((f"bounces+{forged_token}@news.example.org", forged.replace(b"alice@example.com", b"grace@g.example")))
    grace_id = store.subscribers.get("grace@g.example").id
    no_token = (CORPUS / "exim-failed.eml").read_bytes().replace(b"+" + SAMPLE_TOKEN.encode(), b"")
    no_token = no_token.replace(b"weekly.3.1760943600.17@", f"weekly.1.1761552000.{grace_id}@".encode())
    out.append(("bounces@news.example.org", no_token.replace(b"alice@example.com", b"grace@g.example")))
    return out


def deliver_by_smtp(settings, store, mail):
    with Listener(settings, store):
        host, port = settings.inbound.address
        with smtplib.SMTP(host, port, timeout=10) as client:
            for recipient, raw in mail:
                client.sendmail("<>", [recipient], crlf(raw))
            with pytest.raises(smtplib.SMTPRecipientsRefused):  # not our bounce domain
                client.sendmail("<>", ["someone@elsewhere.example"], mail[0][1])


def deliver_to_maildir(settings, store, mail, tmp_path: Path):
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for recipient, raw in mail:
        box.add(f"Delivered-To: {recipient}\r\n".encode() + raw)
    first = import_paths(store, settings, [tmp_path / "Maildir"], NOW)
    again = import_paths(store, settings, [tmp_path / "Maildir"], NOW)
    assert first.total == len(mail) and first.duplicates == 0
    assert again.duplicates == len(mail) and not again.kinds  # reading twice changes nothing


@pytest.mark.parametrize("intake", ["smtp", "maildir"])
def test_what_comes_back_is_acted_on_and_the_next_issue_goes_to_none_of_them(intake, store, inbound_settings, tmp_path):
    handler = SinkHandler()
    with smtp_sink(handler) as smtp_port:
        settings = inbound_settings(smtp_port)
        store.subscribers.upsert_many(
            [Subscriber(email=e, name="", status="confirmed", newsletters=n) for e, (_, n) in PEOPLE.items()], NOW
        )
        first = make_issue(store, RENDERED.subject, NOW, 1)
        assert send(store, settings, first).get("delivered") == len(PEOPLE)

        for email in PEOPLE:  # every message carries its own signed bounce address
            sender = handler.senders[email]
            assert sender.startswith("bounces+") and sender.endswith("@news.example.org")
            named = verp.read_token(settings.secret_keys, verp.tokens_in(sender)[0])
            assert named == verp.Verp(first.id, store.subscribers.get(email).id, verp.BOUNCE)
            assert "mailto:bounces+unsub-" in handler.parsed(email)[0]["List-Unsubscribe"]

        mail = returned_mail(handler, store)
        if intake == "smtp":
            deliver_by_smtp(settings, store, mail)
        else:
            deliver_to_maildir(settings, store, mail, tmp_path)

        status = {email: store.subscribers.get(email) for email in PEOPLE}
        for email in ("alice@a.example", "bob@b.example", "carol@c.example", "yann@y.example"):
            assert status[email].status == "bounced", email
        assert status["dave@d.example"].status == "unsubscribed" and status["dave@d.example"].newsletters == ()
        assert status["erin@e.example"].status == "confirmed" and status["erin@e.example"].newsletters == ("weekly",)
        assert status["frank@f.example"].status == "confirmed"
        assert status["frank@f.example"].newsletters == ("monthly",)  # that newsletter only
        assert status["grace@g.example"].status == "confirmed" and status["grace@g.example"].newsletters == ("weekly",)
        suppressed = {s.email: s.reason for s in store.inbound.suppressed()}
        assert suppressed == {
            "alice@a.example": "hard_bounce",
            "bob@b.example": "hard_bounce",
            "carol@c.example": "hard_bounce",
            "yann@y.example": "hard_bounce",
            "dave@d.example": "complaint",
        }
        kept = {row["kind"]: row for row in store.inbound.messages()}
        assert "Loved this week's issue" in kept["unknown"]["raw"]  # kept for an operator
        assert len(store.inbound.messages()) == len(mail)
        forged = [row for row in store.inbound.messages() if row["recipient"] == "grace@g.example"]
        assert len(forged) == 2 and all(row["action"].startswith("nothing") for row in forged)
        assert not any(row["verified"] for row in forged)

        handler.messages.clear()
        second = make_issue(store, RENDERED.subject, NOW, 2)
        assert send(store, settings, second).get("delivered") == 3
    assert set(handler.received()) == {"erin@e.example", "grace@g.example", "henry@h.example"}


# --- soft bounces score over time; the suppression list -----------------------------------------


def soft_bounce(settings, store, issue_id: int, subscriber_id: int, when: datetime, n: int):
    token = verp.make_token(settings.secret_keys, issue_id, subscriber_id)
    raw = (CORPUS / "postfix-delayed.eml").read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode())
    raw = raw.replace(b"Message-Id: <", f"Message-Id: <{n}.".encode())  # a new report each time
    return receive(store, settings, raw, when, source="file")


def test_soft_bounces_suppress_only_when_they_keep_coming(store, inbound_settings):
    settings = inbound_settings(25)
    store.subscribers.upsert_many(
        [Subscriber(email=e, status="confirmed", newsletters=("weekly",)) for e in ("x@x.example", "y@y.example")], NOW
    )
    issues = [make_issue(store, RENDERED.subject, NOW, n).id for n in range(1, 6)]  # one soft bounce per issue counts
    x, y = store.subscribers.get("x@x.example").id, store.subscribers.get("y@y.example").id
    for hour in range(3):  # an hour apart: 1 + 0.996 + 0.992…, just short of the limit (3)
        soft_bounce(settings, store, issues[hour], x, NOW + timedelta(hours=hour), hour)
    assert store.subscribers.get("x@x.example").status == "confirmed"
    soft_bounce(settings, store, issues[3], x, NOW + timedelta(hours=3), 3)
    for day in range(5):  # one a month: the score halves every week, so it never adds up
        soft_bounce(settings, store, issues[day], y, NOW + timedelta(days=30 * day), day)
    assert store.subscribers.get("x@x.example").status == "bounced"
    assert [s.reason for s in store.inbound.suppressed()] == ["soft_bounces"]
    assert store.subscribers.get("y@y.example").status == "confirmed"
    assert store.inbound.score(y, NOW + timedelta(days=127), settings.inbound.soft_bounce_half_life) < 0.6


def cli(config: Path, *args: str):
    from click.testing import CliRunner

    from publisher.cli import cli as group

    return CliRunner().invoke(group, ["--config", str(config), *args], catch_exceptions=False)


def test_import_suppressed_and_unsuppress_commands(tmp_path, database_url, monkeypatch):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEYS[0])
    config = tmp_path / "config.toml"
    config.write_text(
        f'[site]\nurl = "https://news.example.org"\n[database]\nurl = "{database_url}"\n'
        '[newsletters.weekly]\n[newsletters.monthly]\n[delivery]\nreturn_path = "bounces@news.example.org"\n'
    )
    assert cli(config, "subscribers", "add", "alice@a.example", "--confirmed").exit_code == 0
    from publisher.config import load_settings
    from publisher.store import Store

    store = Store.open(database_url)
    try:
        issue = make_issue(store, RENDERED.subject, NOW, 1)
        alice = store.subscribers.get("alice@a.example").id
    finally:
        store.close()
    token = verp.make_token(KEYS, issue.id, alice)
    raw = (CORPUS / "gmail-dsn.eml").read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode())
    (tmp_path / "bounce.eml").write_bytes(raw)
    box = mailbox.mbox(tmp_path / "returned.mbox")
    box.add((CORPUS / "out-of-office.eml").read_bytes())
    box.add((CORPUS / "human-reply.eml").read_bytes())
    box.close()

    result = cli(config, "inbound", "import", str(tmp_path / "bounce.eml"), str(tmp_path / "returned.mbox"))
    assert result.exit_code == 0
    assert result.output.strip() == (
        "3 messages: 1 auto_reply, 1 bounce, 1 unknown; "
        "1 suppressed, 0 unsubscribed, 1 kept for an operator, 1 not acted on, 0 already recorded"
    )
    listed = json.loads(cli(config, "subscribers", "suppressed", "--json").output)
    assert [(row["email"], row["reason"]) for row in listed] == [("alice@a.example", "hard_bounce")]
    assert "5.1.1" in listed[0]["evidence"] and listed[0]["at"].startswith("20")

    result = cli(config, "subscribers", "unsuppress", "alice@a.example", "--reason", "fixed a typo in the domain")
    assert result.output.strip() == "alice@a.example is confirmed again and will get the next issue (monthly weekly)"
    people = json.loads(cli(config, "subscribers", "list", "--json").output)
    assert [(p["email"], p["status"], p["newsletters"]) for p in people] == [
        ("alice@a.example", "confirmed", ["monthly", "weekly"])
    ]
    assert json.loads(cli(config, "subscribers", "suppressed", "--json").output) == []
    again = cli(config, "subscribers", "unsuppress", "alice@a.example", "--reason", "again")
    assert again.exit_code == 1
    assert load_settings(config).delivery.return_path == "bounces@news.example.org"


def test_the_listener_refuses_nothing_it_cannot_record(store, inbound_settings):
    """A message the store cannot take is answered 451, so the sending MTA keeps it and retries."""
    settings = inbound_settings(25)
    store.close()
    broken = type(store)("sqlite:////nonexistent/dir/db.sqlite")
    with Listener(settings, broken):
        host, port = settings.inbound.address
        with smtplib.SMTP(host, port, timeout=10) as client, pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("<>", ["bounces@news.example.org"], crlf((CORPUS / "exim-failed.eml").read_bytes()))
    assert refused.value.smtp_code == 451
    broken.close()


def test_message_parse_keeps_header_policy():
    raw = (CORPUS / "arf-complaint.eml").read_bytes()
    assert message_from_bytes(raw, policy=policy.default)["Subject"].startswith("FW:")


# --- the receiver inside `publisher run`, and over LMTP --------------------------------------------


def wait_for_port(port: int, process, timeout: float = 30) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "publisher run exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_publisher_run_receives_bounces_on_inbound_listen(tmp_path, database_url, monkeypatch):
    import os
    import signal
    import subprocess
    import sys

    from publisher.store import Store

    listen, web = free_port(), free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[site]\nurl = "https://news.example.org"\n[database]\nurl = "{database_url}"\n[newsletters.weekly]\n'
        f'[delivery]\nreturn_path = "bounces@news.example.org"\n[web]\nport = {web}\n'
        f'[inbound]\nlisten = "127.0.0.1:{listen}"\n'
    )
    store = Store.open(database_url)
    store.subscribers.add(Subscriber(email="gone@a.example", status="confirmed", newsletters=("weekly",)), NOW)
    issue = make_issue(store, RENDERED.subject, NOW, 1)
    token = verp.make_token(KEYS, issue.id, store.subscribers.get("gone@a.example").id)
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "publisher", "--config", str(config), "run", "--no-scheduler"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PUBLISHER_SECRET_KEY": KEYS[0]},
    )
    try:
        wait_for_port(listen, process)
        raw = (CORPUS / "exim-failed.eml").read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode())
        with smtplib.SMTP("127.0.0.1", listen, timeout=10) as client:
            client.sendmail(
                "<>", [f"bounces+{token}@news.example.org"], crlf(raw.replace(b"alice@example.com", b"gone@a.example"))
            )
        assert store.subscribers.get("gone@a.example").status == "bounced"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        log.close()
        store.close()
    assert "receiving mail that comes back on smtp://127.0.0.1" in (tmp_path / "run.log").read_text()


def test_the_receiver_speaks_lmtp(store, make_settings, database_url, monkeypatch):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEYS[0])
    settings = make_settings(
        {
            "newsletters": {"weekly": {}},
            "delivery": {"return_path": "bounces@news.example.org"},
            "inbound": {"listen": f"127.0.0.1:{free_port()}", "protocol": "lmtp"},
        },
        database_url=database_url,
    )
    store.subscribers.add(Subscriber(email="gone@a.example", status="confirmed", newsletters=("weekly",)), NOW)
    token = verp.make_token(
        KEYS, make_issue(store, RENDERED.subject, NOW, 1).id, store.subscribers.get("gone@a.example").id
    )
    raw = (CORPUS / "gmail-dsn.eml").read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode())
    with Listener(settings, store):
        host, port = settings.inbound.address
        with smtplib.LMTP(host, port) as client:
            client.sendmail("<>", [f"bounces+{token}@news.example.org"], crlf(raw))
    assert store.subscribers.get("gone@a.example").status == "bounced"


def test_an_out_of_office_reply_to_the_unsubscribe_address_is_no_request():
    raw = (CORPUS / "mailto-unsubscribe.eml").read_bytes()
    assert (
        parse(raw.replace(b"Subject: unsubscribe", b"Auto-Submitted: auto-replied\nSubject: Out of office")).kind
        is Kind.AUTO_REPLY
    )
    assert (
        parse(raw.replace(b"Subject: unsubscribe", b"Auto-Submitted: auto-generated\nSubject: unsubscribe")).kind
        is Kind.UNSUBSCRIBE
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/report; report-type=delivery-status\n\nno parts",
        b"From: x\n\n" * 1000,
    ],
)
def test_anything_unreadable_is_kept_as_unknown_never_an_error(raw):
    assert parse(raw).kind is Kind.UNKNOWN


def test_inbound_import_of_a_missing_path_is_a_one_line_error(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/p.db"\n')
    from click.testing import CliRunner

    from publisher.cli import cli as group

    result = CliRunner().invoke(group, ["--config", str(config), "inbound", "import", str(tmp_path / "nowhere")])
    assert (
        result.exit_code == 1 and result.output.strip() == f"error: {tmp_path / 'nowhere'}: no such file or directory"
    )


# --- hostile mail -------------------------------------------------------------------------------


def nested(levels: int) -> bytes:
    head = b"From: a@b.example\r\nTo: bounces@news.example.org\r\nMIME-Version: 1.0\r\n"
    return (head + b"Content-Type: message/rfc822\r\n\r\n") * levels + head + b"\r\nhello\r\n"


def test_mime_nested_too_deeply_is_unknown_and_the_import_goes_on(store, inbound_settings, tmp_path):
    settings = inbound_settings(25)
    box = mailbox.mbox(tmp_path / "returned.mbox")
    box.add(nested(2000))
    box.add((CORPUS / "postfix-user-unknown.eml").read_bytes())
    box.close()
    report = import_paths(store, settings, [tmp_path / "returned.mbox"], NOW)
    assert report.kinds == {"unknown": 1, "bounce": 1}
    deep = store.inbound.messages(kind="unknown")[0]
    assert "nested too deeply" in deep["diagnostic"] and deep["raw"]


def test_the_listener_records_deeply_nested_mail_as_unknown(store, inbound_settings):
    settings = inbound_settings(25)
    with Listener(settings, store):
        host, port = settings.inbound.address
        with smtplib.SMTP(host, port, timeout=30) as client:
            client.sendmail("<>", ["bounces@news.example.org"], nested(2000))
    assert [m["kind"] for m in store.inbound.messages()] == ["unknown"]


def test_the_listener_caps_recipients_and_keeps_the_raw_message_once(store, inbound_settings):
    settings = inbound_settings(25)
    raw = crlf((CORPUS / "out-of-office.eml").read_bytes())
    with Listener(settings, store):
        host, port = settings.inbound.address
        with smtplib.SMTP(host, port, timeout=30) as client:
            client.ehlo()
            client.mail("<>")
            codes = [client.rcpt(f"bounces+{i}@news.example.org")[0] for i in range(11)]
            assert codes == [250] * 10 + [452]
            assert client.data(raw)[0] == 250
    kept = store.inbound.messages()
    assert len(kept) == 10 and sum(1 for m in kept if m["raw"]) == 1


def lmtp_exchange(host: str, port: int, recipients: list[str], raw: bytes) -> list[bytes]:
    """The replies to one LMTP transaction, read line by line (smtplib reads one reply to DATA)."""
    with socket.create_connection((host, port), timeout=10) as connection:
        reader = connection.makefile("rb")
        reader.readline()  # greeting
        connection.sendall(b"LHLO test.example\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        connection.sendall(b"MAIL FROM:<>\r\n")
        reader.readline()
        for recipient in recipients:
            connection.sendall(f"RCPT TO:<{recipient}>\r\n".encode())
            reader.readline()
        connection.sendall(b"DATA\r\n")
        reader.readline()
        connection.sendall(raw.rstrip(b"\r\n") + b"\r\n.\r\n")
        return [reader.readline() for _ in recipients]


def test_lmtp_answers_each_recipient_after_data(store, make_settings, database_url, monkeypatch):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEYS[0])
    settings = make_settings(
        {
            "newsletters": {"weekly": {}},
            "delivery": {"return_path": "bounces@news.example.org"},
            "inbound": {"listen": f"127.0.0.1:{free_port()}", "protocol": "lmtp"},
        },
        database_url=database_url,
    )
    raw = crlf((CORPUS / "out-of-office.eml").read_bytes())
    recipients = ["bounces+a@news.example.org", "bounces+b@news.example.org", "bounces+c@news.example.org"]
    with Listener(settings, store):
        replies = lmtp_exchange(*settings.inbound.address, recipients, raw)
    assert [reply[:3] for reply in replies] == [b"250"] * 3
    assert [b"<" + r.encode() + b">" in reply for r, reply in zip(recipients, replies, strict=True)] == [True] * 3
    assert len(store.inbound.messages()) == 3


# --- intake robustness: one bad message never blocks the rest -----------------------------------


def bounce_for(store, settings, email: str, number: int = 1) -> tuple[str, bytes]:
    """(VERP address, a Gmail DSN for `email`'s copy of a new issue), with a token we signed."""
    store.subscribers.add(Subscriber(email=email, status="confirmed", newsletters=("weekly",)), NOW)
    issue = make_issue(store, RENDERED.subject, NOW, number)
    token = verp.make_token(settings.secret_keys, issue.id, store.subscribers.get(email).id)
    raw = (CORPUS / "gmail-dsn.eml").read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode())
    return f"bounces+{token}@news.example.org", raw.replace(SAMPLE_RECIPIENT.encode(), email.encode())


NUL_SUBJECT = (CORPUS / "human-reply.eml").read_bytes().replace(b"Subject: Re:", b"Subject: \x00Re:\x00")


def test_a_nul_in_a_subject_is_recorded_and_the_next_message_is_read(store, inbound_settings, tmp_path):
    settings = inbound_settings(25)
    _, dsn = bounce_for(store, settings, "gone@a.example")
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(NUL_SUBJECT)
    box.add(dsn)
    report = import_paths(store, settings, [tmp_path / "Maildir"], NOW)
    assert report.kinds == {"unknown": 1, "bounce": 1} and report.failed == 0
    assert store.subscribers.get("gone@a.example").status == "bounced"
    kept = store.inbound.messages(kind="unknown")[0]
    assert kept["subject"] == "Re: The Weekly: Notes on building a publisher"


def test_the_listener_takes_a_nul_in_a_subject_and_the_next_message(store, inbound_settings):
    settings = inbound_settings(25)
    address, dsn = bounce_for(store, settings, "gone@a.example")
    with Listener(settings, store), smtplib.SMTP(*settings.inbound.address, timeout=30) as client:
        assert client.sendmail("<>", ["bounces@news.example.org"], crlf(NUL_SUBJECT)) == {}
        assert client.sendmail("<>", [address], crlf(dsn)) == {}
    assert store.subscribers.get("gone@a.example").status == "bounced"
    assert sorted(m["kind"] for m in store.inbound.messages()) == ["bounce", "unknown"]


def refuse_subjects_containing(store, word: str, column: str = "subject") -> None:
    """The database itself refuses some content (as PostgreSQL refuses a NUL): a real constraint."""
    from sqlalchemy import text

    with store.engine.begin() as connection:
        if store.engine.dialect.name == "sqlite":
            connection.execute(
                text(
                    f"CREATE TRIGGER refuse_{column} BEFORE INSERT ON inbound_messages "
                    f"WHEN NEW.{column} LIKE '%{word}%' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            connection.execute(
                text(
                    f"ALTER TABLE inbound_messages ADD CONSTRAINT refuse_{column} CHECK ({column} NOT LIKE '%{word}%')"
                )
            )


POISON = (CORPUS / "human-reply.eml").read_bytes().replace(b"Subject: Re:", b"Subject: poison Re:")


def test_a_message_the_database_refuses_is_kept_as_unknown_and_the_rest_are_read(
    store, inbound_settings, tmp_path, caplog
):
    settings = inbound_settings(25)
    _, dsn = bounce_for(store, settings, "gone@a.example")
    refuse_subjects_containing(store, "poison")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "1-poison.eml").write_bytes(POISON)
    (tmp_path / "in" / "2-bounce.eml").write_bytes(dsn)
    report = import_paths(store, settings, [tmp_path / "in"], NOW)
    assert report.kinds == {"unknown": 1, "bounce": 1} and report.failed == 0
    assert store.subscribers.get("gone@a.example").status == "bounced"
    kept = store.inbound.messages(kind="unknown")[0]
    assert kept["diagnostic"].startswith("could not be read: ") and "refuse" in kept["diagnostic"]
    assert "poison" in kept["raw"]
    assert f"{tmp_path / 'in' / '1-poison.eml'}: could not be read" in caplog.text


def test_a_message_that_cannot_be_recorded_at_all_is_skipped_with_a_warning(store, inbound_settings, tmp_path, caplog):
    settings = inbound_settings(25)
    address, dsn = bounce_for(store, settings, "gone@a.example")
    refuse_subjects_containing(store, "poison")
    refuse_subjects_containing(store, "poison", column="raw")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "1-poison.eml").write_bytes(POISON)
    (tmp_path / "in" / "2-bounce.eml").write_bytes(dsn)
    report = import_paths(store, settings, [tmp_path / "in"], NOW)
    assert report.kinds == {"bounce": 1} and report.failed == 1
    assert f"{tmp_path / 'in' / '1-poison.eml'}: skipped: could not be recorded" in caplog.text
    # Over SMTP it is refused for good: the sending MTA does not retry it forever.
    with Listener(settings, store), smtplib.SMTP(*settings.inbound.address, timeout=30) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("<>", ["bounces@news.example.org"], crlf(POISON))
        assert refused.value.smtp_code == 554
        assert client.sendmail("<>", [address], crlf(dsn.replace(b"Message-ID: <", b"Message-ID: <2."))) == {}
    assert [m["kind"] for m in store.inbound.messages()] == ["bounce", "bounce"]


def test_terminal_escapes_never_leave_the_parser(tmp_path, database_url, monkeypatch):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEYS[0])
    config = tmp_path / "config.toml"
    config.write_text(
        f'[site]\nurl = "https://news.example.org"\npostal_address = "1 Sample Street, Exampletown"\n'
        f'[database]\nurl = "{database_url}"\n[newsletters.weekly]\n'
        '[delivery]\nreturn_path = "bounces@news.example.org"\n'
    )
    assert cli(config, "subscribers", "add", "gone@a.example", "--confirmed").exit_code == 0
    from publisher.store import Store

    store = Store.open(database_url)
    try:
        token = verp.make_token(KEYS, make_issue(store, "x", NOW, 1).id, store.subscribers.get("gone@a.example").id)
    finally:
        store.close()
    raw = (CORPUS / "gmail-dsn.eml").read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode())
    raw = raw.replace(SAMPLE_RECIPIENT.encode(), b"gone@a.example").replace(b"- gsmtp", b"\x1b]0;pwned\x07\x9b2J gsmtp")
    raw = raw.replace(b"Subject: Delivery", b"Subject: \x1b[31mDelivery")
    (tmp_path / "bounce.eml").write_bytes(raw)
    assert cli(config, "inbound", "import", str(tmp_path / "bounce.eml")).exit_code == 0
    listed = cli(config, "subscribers", "suppressed").output
    assert "gone@a.example  hard_bounce" in listed and "]0;pwned" in listed
    assert not any((ord(char) < 32 and char != "\n") or 127 <= ord(char) < 160 for char in listed)
    found = parse(raw)
    assert found.subject == "[31mDelivery Status Notification (Failure)"
    assert "\x1b" not in found.diagnostic and found.status == "5.1.1"


@pytest.mark.parametrize(
    "header",
    [
        b"Auto-Submitted: auto-generated",
        b"X-Autorespond: yes",
        b"X-Autoreply: yes",
        b"Precedence: auto_reply",
        b"X-Auto-Response-Suppress: All",
    ],
)
def test_an_auto_reply_is_never_a_bounce(header):
    raw = (CORPUS / "oof-temporarily-away.eml").read_bytes().replace(b"Auto-Submitted: auto-replied", header)
    assert parse(raw).kind is Kind.AUTO_REPLY
    without = parse((CORPUS / "oof-temporarily-away.eml").read_bytes().replace(b"Auto-Submitted: auto-replied\n", b""))
    assert without.kind is Kind.SOFT_BOUNCE  # no sign at all: read as the bounce it claims to be


def test_a_token_has_one_spelling():
    token = verp.make_token(KEYS, 12, 345)
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    flipped = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]  # the spare (padding) bit
    assert verp.read_token(KEYS, token) == verp.Verp(12, 345, verp.BOUNCE)
    assert verp.read_token(KEYS, flipped) is None
    assert verp.read_token(KEYS, "unsub-" + verp.make_token(KEYS, 12, 345, verp.UNSUBSCRIBE)[6:-1] + "a") is None


def many_parts(token: str, count: int) -> bytes:
    """A DSN for `token` followed by `count` tiny parts."""
    dsn = (
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
        b"Final-Recipient: rfc822; gone@a.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
    )
    head = (
        f"From: MAILER-DAEMON@mx.example\r\nTo: bounces+{token}@news.example.org\r\nSubject: Undeliverable\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
    ).encode()
    return head + dsn + b"--b\r\n\r\nx\r\n" * count + b"--b--\r\n"


def test_a_message_of_too_many_parts_is_kept_unread(store, inbound_settings):
    settings = inbound_settings(25)
    address, _ = bounce_for(store, settings, "gone@a.example")
    token = verp.tokens_in(address)[0]
    assert parse(many_parts(token, 900)).kind is Kind.BOUNCE
    recipients = [address, *(f"bounces+{n}@news.example.org" for n in range(9))]
    with Listener(settings, store), smtplib.SMTP(*settings.inbound.address, timeout=60) as client:
        assert client.sendmail("<>", recipients, many_parts(token, 20_000)) == {}
    kept = store.inbound.messages()
    assert len(kept) == 10 and {(m["kind"], m["format"]) for m in kept} == {("unknown", "too-many-parts")}
    assert "more than 1,000 MIME parts" in kept[0]["diagnostic"]
    assert store.subscribers.get("gone@a.example").status == "confirmed"


def test_the_listener_limits_each_peer_offers_no_login_and_logs_one_line_a_message(store, inbound_settings, caplog):
    import logging

    caplog.set_level(logging.INFO)
    settings = inbound_settings(25)
    raw = crlf((CORPUS / "out-of-office.eml").read_bytes())
    with Listener(settings, store, per_minute=2), smtplib.SMTP(*settings.inbound.address, timeout=30) as client:
        client.ehlo()
        assert not client.has_extn("auth")
        assert client.docmd("AUTH", "PLAIN AGxvZ2luAHNlY3JldA==")[0] >= 500
        client.sendmail("<>", ["bounces@news.example.org"], raw)
        client.sendmail("<>", ["bounces@news.example.org"], raw.replace(b"Message-ID: <", b"Message-ID: <2."))
        with pytest.raises(smtplib.SMTPSenderRefused) as limited:
            client.sendmail("<>", ["bounces@news.example.org"], raw)
        assert limited.value.smtp_code == 421
    assert len(store.inbound.messages()) == 2
    assert not [r.getMessage() for r in caplog.records if r.name == "mail.log" and r.levelno < logging.WARNING]
    assert "AUTH" not in caplog.text and "onnection lost" not in caplog.text
    assert len([r for r in caplog.records if r.name == "publisher.feedback"]) == 2


def test_import_reads_a_maildirs_new_folder_and_warns_about_files_it_skips(store, inbound_settings, tmp_path, caplog):
    settings = inbound_settings(25)
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add((CORPUS / "out-of-office.eml").read_bytes())
    report = import_paths(store, settings, [tmp_path / "Maildir" / "new"], NOW)
    assert report.kinds == {"auto_reply": 1} and not report.skipped
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "returned.eml").write_bytes((CORPUS / "human-reply.eml").read_bytes())
    (tmp_path / "mail" / "1761552000.M1P2.host").write_bytes((CORPUS / "exim-failed.eml").read_bytes())
    report = import_paths(store, settings, [tmp_path / "mail"], NOW)
    assert report.kinds == {"unknown": 1} and [p.name for p in report.skipped] == ["1761552000.M1P2.host"]
    assert "1 file skipped (not .eml): for a maildir, point at the maildir itself" in caplog.text
