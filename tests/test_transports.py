"""Transports: memory, maildir, and SMTP against a real server on loopback (aiosmtpd)."""

from __future__ import annotations

import mailbox
import ssl
import subprocess
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult
from sink import MisbehavingRelay, PipeliningSink, ReorderingSMTP, SinkHandler, SwallowingSMTP, free_port, smtp_sink

from publisher.config import DeliverySettings, SmtpSettings
from publisher.errors import DeliveryError
from publisher.smtp import SmtpTransport, dot_stuffed, result_from_reply
from publisher.transports import MaildirTransport, MemoryTransport, Outgoing, SendResult, make_transport
from tests.helpers import require

MESSAGE = b"From: a@news.example.org\r\nSubject: hi\r\n\r\nline one\r\n.starts with a dot\r\n..two\r\nend\r\n"


def outgoing(recipient: str, data: bytes = MESSAGE) -> Outgoing:
    return Outgoing("weekly@news.example.org", recipient, data)


def smtp(port: int, **values) -> SmtpTransport:
    return SmtpTransport(SmtpSettings(host="127.0.0.1", port=port, **{"timeout": 10, **values}))


def test_make_transport_follows_the_settings(tmp_path):
    assert isinstance(make_transport(DeliverySettings(transport="smtp")), SmtpTransport)
    assert isinstance(make_transport(DeliverySettings(transport="maildir", maildir=tmp_path)), MaildirTransport)
    with pytest.raises(DeliveryError, match="smtp or maildir"):
        make_transport(DeliverySettings(transport="pigeon"))


def test_memory_transport_keeps_delivered_messages_and_can_script_replies():
    transport = MemoryTransport(
        reply=lambda m: SendResult("failed", 550) if "bad" in m.recipient else SendResult("delivered", 250)
    )
    results = transport.send_many([outgoing("ok@a.example"), outgoing("bad@a.example")])
    assert [r.outcome for r in results] == ["delivered", "failed"]
    assert [m.recipient for m in transport.sent] == ["ok@a.example"]


def test_maildir_transport_writes_each_message_once(tmp_path):
    transport = make_transport(DeliverySettings(transport="maildir", maildir=tmp_path / "outbox"))
    assert {r.outcome for r in transport.send_many([outgoing("a@x.example"), outgoing("b@x.example")])} == {"delivered"}
    transport.close()
    stored = list(mailbox.Maildir(tmp_path / "outbox", factory=None))
    assert len(stored) == 2 and stored[0]["Subject"] == "hi"
    assert ".starts with a dot\n" in stored[0].get_payload()


def test_the_outbox_shows_each_messages_envelope_sender_as_return_path(tmp_path):
    transport = MaildirTransport(tmp_path / "outbox")
    bounce = "bounces+abc@news.example.org"
    transport.send(Outgoing(bounce + "\r\nX-Injected: yes", "a@x.example", b"Subject: hi\r\n\r\nbody\r\n"))
    transport.close()
    (stored,) = mailbox.Maildir(tmp_path / "outbox", factory=None)
    assert stored.get_all("Return-Path") == [f"<{bounce}X-Injected: yes>"] and stored["X-Injected"] is None
    assert stored["Subject"] == "hi"


def test_reply_mapping_keeps_the_enhanced_status():
    assert result_from_reply(250, b"2.0.0 OK") == SendResult("delivered", 250, "2.0.0", "2.0.0 OK")
    assert result_from_reply(451, b"4.7.1 greylisted").outcome == "deferred"
    assert result_from_reply(552, b"5.2.2 mailbox full") == SendResult("failed", 552, "5.2.2", "5.2.2 mailbox full")
    assert result_from_reply(554, b"no status here").status == ""


def test_dot_stuffing_and_line_endings():
    assert dot_stuffed(b".a\r\nb\r\n.c") == b"..a\r\nb\r\n..c\r\n"
    assert dot_stuffed(MESSAGE) == MESSAGE.replace(b"\r\n.", b"\r\n..")


def test_smtp_delivers_intact_over_reused_connections():
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        transport = smtp(port, connections=3, per_domain_connections=3)
        first = transport.send_many([outgoing(f"r{i}@d{i % 4}.example") for i in range(30)])
        second = transport.send_many([outgoing(f"s{i}@d{i % 4}.example") for i in range(30)])
        transport.close()
    assert {r.outcome for r in first + second} == {"delivered"}
    assert len(handler.messages) == 60 and handler.sessions <= 3
    assert handler.messages[0][1].replace(b"\n", b"\r\n").replace(b"\r\r", b"\r") == MESSAGE


def test_smtp_refusals_are_mapped_and_the_session_survives():
    handler = SinkHandler(reject={"gone@d.example"})
    with smtp_sink(handler) as port:
        transport = smtp(port, connections=1)
        results = transport.send_many([outgoing("gone@d.example"), outgoing("here@d.example")])
        transport.close()
    assert (results[0].outcome, results[0].code, results[0].status) == ("failed", 550, "5.1.1")
    assert results[1].outcome == "delivered" and handler.sessions == 1


def test_smtp_temporary_failures_and_dropped_connections_are_deferred():
    handler = SinkHandler(flaky=0.3, drop_every=5, seed=3)
    with smtp_sink(handler) as port:
        transport = smtp(port, connections=2)
        results = transport.send_many([outgoing(f"r{i}@d.example") for i in range(40)])
        transport.close()
    by_outcome = {outcome: [r for r in results if r.outcome == outcome] for outcome in ("delivered", "deferred")}
    assert len(by_outcome["delivered"]) == len(handler.messages) and len(by_outcome["deferred"]) == 40 - len(
        handler.messages
    )
    assert {r.code for r in by_outcome["deferred"]} == {421, 451, None}
    assert all(r.status == "4.4.2" for r in by_outcome["deferred"] if r.code is None)


def test_smtp_unreachable_relay_defers():
    transport = smtp(free_port(), connections=1)
    result = transport.send(outgoing("r@d.example"))
    transport.close()
    assert result.outcome == "deferred" and result.code is None


def test_smtp_respects_per_domain_connections():
    handler = SinkHandler(delay=0.02)
    with smtp_sink(handler) as port:
        transport = smtp(port, connections=4, per_domain_connections=1)
        messages = [outgoing(f"r{i}@big.example") for i in range(12)] + [
            outgoing(f"r{i}@small.example") for i in range(4)
        ]
        assert {r.outcome for r in transport.send_many(messages)} == {"delivered"}
        transport.close()
    assert handler.peak["big.example"] == 1 and handler.peak["small.example"] == 1


def test_smtp_shares_every_connection_when_all_readers_are_at_one_domain():
    """A relay fans out itself: by default half a list at gmail.com keeps every connection busy."""
    handler = SinkHandler(delay=0.05)
    with smtp_sink(handler) as port:
        transport = smtp(port, connections=4)
        assert {r.outcome for r in transport.send_many([outgoing(f"r{i}@gmail.example") for i in range(16)])} == {
            "delivered"
        }
        transport.close()
    assert handler.peak["gmail.example"] == 4


def test_smtp_reports_each_reply_and_holds_the_next_message_until_the_last_is_stored():
    """`send_each`: each reply as it arrives; the relay gets the next message on that connection
    only once the previous outcome is stored (at most one accepted, unrecorded message per connection)."""
    import threading

    handler = SinkHandler()
    stored = threading.Event()
    heard = []

    def on_result(index, result):
        heard.append((index, result.outcome, len(handler.messages)))
        return stored.wait

    with smtp_sink(handler) as port:
        transport = smtp(port, connections=1)
        sending = threading.Thread(
            target=transport.send_each, args=([outgoing("a@x.example"), outgoing("b@x.example")], on_result)
        )
        sending.start()
        time.sleep(0.5)
        held = len(handler.messages)  # the second message waits for the first one's outcome to be stored
        stored.set()
        sending.join(10)
        transport.close()
    assert heard[0] == (0, "delivered", 1) and held == 1
    assert [index for index, *_ in heard] == [0, 1] and len(handler.messages) == 2


def test_smtp_rate_limit_is_never_exceeded():
    with smtp_sink(SinkHandler()) as port:
        transport = smtp(port, connections=4, rate_limit=100.0)
        started = time.monotonic()
        transport.send_many([outgoing(f"r{i}@d{i}.example") for i in range(21)])
        elapsed = time.monotonic() - started
        transport.close()
    assert elapsed >= 0.2  # 21 messages at 100/s: the 21st may start 0.2 s after the first


class Authenticator:
    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"sender" and auth_data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)


@pytest.mark.parametrize(("password", "works"), [("s3cret", True), ("wrong", False)])
def test_smtp_logs_in_when_a_username_is_set(password, works):
    handler = SinkHandler()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, authenticator=Authenticator(), auth_require_tls=False
    )
    controller.start()
    try:
        transport = smtp(port, connections=1, username="sender", password=password)
        if works:
            assert transport.send(outgoing("r@d.example")).outcome == "delivered"
        else:
            with pytest.raises(DeliveryError, match="refused the login"):
                transport.send(outgoing("r@d.example"))
        transport.close()
    finally:
        controller.stop()


def test_starttls_verifies_the_certificate(tmp_path):
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(tmp_path / "key.pem"),
            "-out",
            str(tmp_path / "cert.pem"),
        ],
        check=False,
        capture_output=True,
    )
    require(made.returncode == 0, "openssl (to make a certificate)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    port = free_port()
    controller = Controller(SinkHandler(), hostname="127.0.0.1", port=port, tls_context=context)
    controller.start()
    try:
        transport = smtp(port, connections=1, security="starttls")
        with pytest.raises(DeliveryError, match="not trusted"):
            transport.send(outgoing("r@d.example"))
        transport.close()
    finally:
        controller.stop()


def test_smtp_never_lets_an_address_add_a_command():
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        transport = smtp(port, connections=1)
        result = transport.send(outgoing("x@d.example>\r\nRCPT TO:<victim@d.example"))
        transport.close()
    assert (result.outcome, result.status) == ("failed", "5.1.3") and not handler.messages


# --- a relay that advertises PIPELINING and mishandles it ------------------------------------


@pytest.mark.parametrize("server_class", [SMTP, SwallowingSMTP])
def test_a_relay_that_drops_pipelined_replies_is_sent_to_without_pipelining(server_class, caplog):
    handler = PipeliningSink()
    relay = MisbehavingRelay(handler, free_port(), server_class)
    relay.start()
    try:
        transport = smtp(relay.port, connections=2, timeout=2)
        started = time.monotonic()
        results = transport.send_many([outgoing(f"r{i}@d{i % 3}.example") for i in range(12)])
        elapsed = time.monotonic() - started
        transport.close()
    finally:
        relay.stop()
    assert [r.outcome for r in results] == ["delivered"] * 12
    assert handler.received() == {f"r{i}@d{i % 3}.example": 1 for i in range(12)}
    warnings = [r.getMessage() for r in caplog.records if "PIPELINING" in r.getMessage()]
    if server_class is SMTP:  # a relay that handles it well keeps it
        assert warnings == [] and handler.sessions == 2
    else:  # one timeout per connection at most, then lock-step for the rest of the run
        assert len(warnings) == 1 and "sending without it for the rest of this run" in warnings[0]
        assert elapsed < 2 * 2 + 5


def test_a_relay_that_answers_pipelined_commands_out_of_order_loses_nobody_and_guesses_nothing(caplog):
    handler = PipeliningSink()
    relay = MisbehavingRelay(handler, free_port(), ReorderingSMTP)
    relay.start()
    recipients = [f"r{i}@d.example" for i in range(8)]
    try:
        transport = smtp(relay.port, connections=1, timeout=5)
        results = transport.send_many([outgoing(address) for address in recipients])
        transport.close()
    finally:
        relay.stop()
    # the first message's end was answered out of order: its outcome is unknown, so it is
    # deferred (retried later), never guessed delivered or failed; the rest go without pipelining
    assert [r.outcome for r in results] == ["deferred"] + ["delivered"] * 7
    assert (results[0].code, results[0].status) == (None, "4.5.0") and "outcome unknown" in results[0].detail
    assert handler.received() == dict.fromkeys(recipients, 1)  # nobody lost, nobody twice in this run
    assert len([r for r in caplog.records if "mishandles it" in r.getMessage()]) == 1
