"""ESP webhooks over real HTTP requests to the app: a correctly signed event changes the subscriber,
a wrongly signed one gets 403 and changes nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import threading
import warnings
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from publisher.config import load_settings
from publisher.errors import ConfigError
from publisher.model import Subscriber
from publisher.publication import Publication
from publisher.transports import MemoryTransport
from publisher.web import create_app
from publisher.webhooks import MAX_BODY, sns_string_to_sign

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

NOW = datetime(2025, 10, 20, 12, 0, tzinfo=UTC)
MAILGUN_KEY = "key-mailgun-signing"
POSTMARK = ("postmark-hook", "s3cret-password")
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"
TOKENS = itertools.count()


def unix_now(shift: timedelta = timedelta()) -> str:
    return str(int((datetime.now(UTC) + shift).timestamp()))


def certificate(key) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.eu-west-1.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC) - timedelta(days=1))
        .not_valid_after(datetime.now(UTC) + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class Loopback(BaseHTTPRequestHandler):
    """Serves the SNS signing certificate and records visits to the SubscribeURL."""

    visits: list[str]
    cert: bytes

    def do_GET(self):
        self.visits.append(self.path)
        body = self.cert if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback():
    handler = type("Handler", (Loopback,), {"visits": [], "cert": certificate(RSA_KEY)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.visits
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(make_settings, database_url, store, monkeypatch, loopback):
    monkeypatch.setenv("MAILGUN_SIGNING_KEY", MAILGUN_KEY)
    public = EC_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    monkeypatch.setenv("SENDGRID_KEY", base64.b64encode(public).decode())
    monkeypatch.setenv("POSTMARK_HOOK_PASSWORD", POSTMARK[1])
    settings = make_settings(
        {
            "newsletters": {"weekly": {}, "monthly": {}},
            "webhooks": {
                "mailgun": {"signing_key_env": "MAILGUN_SIGNING_KEY"},
                "sendgrid": {"public_key_env": "SENDGRID_KEY"},
                "postmark": {"username": POSTMARK[0], "password_env": "POSTMARK_HOOK_PASSWORD"},
                "ses": {
                    "enabled": True,
                    "signing_cert_url_pattern": r"^http://127\.0\.0\.1:\d+/",
                    "topic_arns": [TOPIC],
                },
            },
        },
        database_url=database_url,
    )
    people = ["gone@a.example", "angry@b.example", "leaving@c.example", "fine@d.example"]
    store.subscribers.upsert_many(
        [Subscriber(email=e, status="confirmed", newsletters=("monthly", "weekly")) for e in people], NOW
    )
    with TestClient(
        create_app(Publication(settings, store, transport=MemoryTransport())), base_url="https://news.example.org"
    ) as test:
        yield test


def state(store, email: str) -> tuple[str, tuple[str, ...]]:
    person = store.subscribers.get(email)
    return person.status, person.newsletters


UNCHANGED = ("confirmed", ("monthly", "weekly"))


def everyone_unchanged(store) -> bool:
    return all(state(store, e) == UNCHANGED for e in ("gone@a.example", "angry@b.example", "leaving@c.example"))


# --- Mailgun --------------------------------------------------------------------------------


def mailgun_body(event: dict, key: str = MAILGUN_KEY, timestamp: str = "", token: str = "") -> dict:
    timestamp = timestamp or unix_now()
    token = token or f"a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f{next(TOKENS):04d}"
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event}


def test_mailgun(client, store):
    bounce = {
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "event": "failed",
        "severity": "permanent",
        "recipient": "gone@a.example",
        "delivery-status": {
            "code": 550,
            "description": "5.1.1 The email account that you tried to reach does not exist",
        },
    }
    complaint = {"id": "Ase7i2zsRYeDXztHGENqRA", "event": "complained", "recipient": "angry@b.example"}
    unsubscribe = {"id": "Ase7i2zsRYeDXztHGENqRB", "event": "unsubscribed", "recipient": "leaving@c.example"}
    forged = mailgun_body(bounce, key="not-the-key")
    assert client.post("/webhooks/mailgun", json=forged).status_code == 403
    assert client.post("/webhooks/mailgun", json={"event-data": bounce}).status_code == 403
    assert everyone_unchanged(store)
    for event in (bounce, complaint, unsubscribe):
        assert client.post("/webhooks/mailgun", json=mailgun_body(event)).status_code == 200
    assert state(store, "gone@a.example") == ("bounced", ("monthly", "weekly"))
    assert state(store, "angry@b.example") == ("unsubscribed", ())
    assert state(store, "leaving@c.example") == ("unsubscribed", ())
    assert state(store, "fine@d.example") == UNCHANGED
    assert {s.email: s.reason for s in store.inbound.suppressed()} == {
        "gone@a.example": "hard_bounce",
        "angry@b.example": "complaint",
    }


# --- SendGrid -------------------------------------------------------------------------------


def sendgrid_post(client, events: list, key=EC_KEY, timestamp: str = ""):
    body = json.dumps(events).encode()
    timestamp = timestamp or unix_now()
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "content-type": "application/json",
        "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
        "x-twilio-email-event-webhook-timestamp": timestamp,
    }
    return client.post("/webhooks/sendgrid", content=body, headers=headers)


def test_sendgrid(client, store):
    events = [
        {"email": "gone@a.example", "event": "bounce", "type": "bounce", "status": "5.1.1", "sg_event_id": "e1"},
        {"email": "angry@b.example", "event": "spamreport", "sg_event_id": "e2"},
        {"email": "leaving@c.example", "event": "unsubscribe", "sg_event_id": "e3"},
        {"email": "fine@d.example", "event": "delivered", "sg_event_id": "e4"},
        {"email": "fine@d.example", "event": "open", "sg_event_id": "e5"},
    ]
    assert sendgrid_post(client, events, key=ec.generate_private_key(ec.SECP256R1())).status_code == 403
    assert everyone_unchanged(store)
    response = sendgrid_post(client, events)
    assert response.status_code == 200 and response.text == "ok: 3 events\n"
    assert state(store, "gone@a.example") == ("bounced", ("monthly", "weekly"))
    assert state(store, "angry@b.example") == ("unsubscribed", ())
    assert state(store, "leaving@c.example") == ("unsubscribed", ())
    assert state(store, "fine@d.example") == UNCHANGED


# --- Postmark -------------------------------------------------------------------------------


def test_postmark(client, store):
    bounce = {"RecordType": "Bounce", "ID": 42, "Type": "HardBounce", "Email": "gone@a.example", "Description": "x"}
    spam = {"RecordType": "SpamComplaint", "ID": 43, "Type": "SpamComplaint", "Email": "angry@b.example"}
    change = {
        "RecordType": "SubscriptionChange",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "ChangedAt": "2025-10-20T12:00:00Z",
        "Recipient": "leaving@c.example",
        "SuppressSending": True,
        "SuppressionReason": "ManualSuppression",
    }
    assert client.post("/webhooks/postmark", json=bounce, auth=(POSTMARK[0], "wrong")).status_code == 403
    assert client.post("/webhooks/postmark", json=bounce).status_code == 403
    assert everyone_unchanged(store)
    for event in (bounce, spam, change):
        assert client.post("/webhooks/postmark", json=event, auth=POSTMARK).status_code == 200
    assert state(store, "gone@a.example") == ("bounced", ("monthly", "weekly"))
    assert state(store, "angry@b.example") == ("unsubscribed", ())
    assert state(store, "leaving@c.example") == ("unsubscribed", ())


# --- Amazon SES through SNS -------------------------------------------------------------------


def sns(base: str, kind: str, key=RSA_KEY, **fields) -> dict:
    message = {
        "Type": kind,
        "MessageId": f"22b80b92-fdea-4c2c-8f9d-bdfb0c7bf3{len(fields):02d}",
        "TopicArn": TOPIC,
        "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "SignatureVersion": "1",
        "SigningCertURL": f"{base}/SimpleNotificationService-0000.pem",
        **fields,
    }
    message["Signature"] = base64.b64encode(
        key.sign(sns_string_to_sign(message), padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - SNS version 1
    ).decode()
    return message


def test_ses_through_sns(client, store, loopback):
    base, visits = loopback
    confirmation = sns(
        base,
        "SubscriptionConfirmation",
        Token="2336412f37",
        Message="You have chosen to subscribe",
        SubscribeURL=f"{base}/?Action=ConfirmSubscription&Token=2336412f37",
    )
    assert client.post("/webhooks/ses", json={**confirmation, "Token": "tampered"}).status_code == 403
    assert not any("ConfirmSubscription" in path for path in visits)
    assert client.post("/webhooks/ses", json=confirmation).status_code == 200
    assert any("ConfirmSubscription" in path for path in visits)  # the subscription is confirmed

    bounce = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": "gone@a.example", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
            ],
        },
        "mail": {"messageId": "0100018c"},
    }
    complaint = {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "angry@b.example"}], "complaintFeedbackType": "abuse"},
    }
    forged = sns(base, "Notification", key=OTHER_RSA_KEY, Message=json.dumps(bounce), Subject=None)
    assert client.post("/webhooks/ses", json=forged).status_code == 403
    elsewhere = {
        **sns(base, "Notification", Message=json.dumps(bounce)),
        "SigningCertURL": "https://evil.example/c.pem",
    }
    assert client.post("/webhooks/ses", json=elsewhere).status_code == 403
    assert everyone_unchanged(store)
    assert client.post("/webhooks/ses", json=sns(base, "Notification", Message=json.dumps(bounce))).status_code == 200
    signed = sns(base, "Notification", Message=json.dumps(complaint), Subject="Amazon SES Email Event Notification")
    assert client.post("/webhooks/ses", json=signed).status_code == 200
    assert state(store, "gone@a.example") == ("bounced", ("monthly", "weekly"))
    assert state(store, "angry@b.example") == ("unsubscribed", ())
    assert state(store, "leaving@c.example") == UNCHANGED


def test_unconfigured_webhooks_are_not_there(make_settings, database_url, store):
    settings = make_settings({}, database_url=database_url)
    with TestClient(
        create_app(Publication(settings, store, transport=MemoryTransport())), base_url="https://news.example.org"
    ) as test:
        assert test.post("/webhooks/mailgun", json=mailgun_body({"event": "failed"})).status_code == 404


# --- freshness, replays, topics -------------------------------------------------------------


def test_ses_needs_topic_arns(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[webhooks.ses]\nenabled = true\n")
    with pytest.raises(ConfigError, match=r"webhooks\.ses\.topic_arns"):
        load_settings(path)


def test_ses_refuses_other_topics_and_stale_messages(client, store, loopback):
    base, visits = loopback
    url = f"{base}/?Action=ConfirmSubscription&Token=1"
    other = sns(base, "SubscriptionConfirmation", Token="1", Message="hi", SubscribeURL=url, TopicArn=TOPIC + "-x")
    assert client.post("/webhooks/ses", json=other).status_code == 403
    stale = sns(
        base, "SubscriptionConfirmation", Token="1", Message="hi", SubscribeURL=url, Timestamp="2020-01-01T00:00:00Z"
    )
    assert client.post("/webhooks/ses", json=stale).status_code == 403
    assert not any("ConfirmSubscription" in path for path in visits)
    bounce = {
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "gone@a.example"}]},
    }
    ahead = (datetime.now(UTC) + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    for fields in ({"TopicArn": TOPIC + "-x"}, {"Timestamp": ahead}, {"Timestamp": "2020-01-01T00:00:00Z"}):
        notification = sns(base, "Notification", Message=json.dumps(bounce), **fields)
        assert client.post("/webhooks/ses", json=notification).status_code == 403
    assert everyone_unchanged(store)


def test_mailgun_refuses_replays_and_stale_signatures(client, store):
    bounce = {"id": "b1", "event": "failed", "severity": "permanent", "recipient": "gone@a.example"}
    complaint = {"id": "c1", "event": "complained", "recipient": "angry@b.example"}
    old = mailgun_body(complaint, timestamp=unix_now(-timedelta(minutes=6)))
    assert client.post("/webhooks/mailgun", json=old).status_code == 403
    ahead = mailgun_body(complaint, timestamp=unix_now(timedelta(minutes=6)))
    assert client.post("/webhooks/mailgun", json=ahead).status_code == 403
    first = mailgun_body(bounce)
    assert client.post("/webhooks/mailgun", json=first).status_code == 200
    replay = {**first, "event-data": complaint}  # the same signature over another event
    assert client.post("/webhooks/mailgun", json=replay).status_code == 403
    assert state(store, "angry@b.example") == UNCHANGED
    assert state(store, "gone@a.example") == ("bounced", ("monthly", "weekly"))


def test_sendgrid_refuses_stale_timestamps(client, store):
    events = [{"email": "gone@a.example", "event": "bounce", "type": "bounce", "sg_event_id": "s1"}]
    assert sendgrid_post(client, events, timestamp=unix_now(-timedelta(minutes=6))).status_code == 403
    assert everyone_unchanged(store)


@pytest.mark.parametrize(
    ("provider", "body", "headers"),
    [
        ("mailgun", '{"signature": [1]}', {}),
        ("mailgun", '{"signature": "x"}', {}),
        ("mailgun", '{"signature": {"timestamp": "1", "token": "t", "signature": "\u00e9\u00e9"}}', {}),
        ("mailgun", "[" * 100_000 + "]" * 100_000, {}),
        ("postmark", "{}", {"authorization": "Basic \u00e9\u00e9"}),
        ("postmark", "{}", {"authorization": "Basic"}),
        ("sendgrid", "[]", {"x-twilio-email-event-webhook-signature": "\u00e9"}),
        ("ses", "[" * 100_000 + "]" * 100_000, {}),
        ("ses", '{"Type": "Notification", "TopicArn": [1]}', {}),
    ],
)
def test_malformed_requests_are_refused_not_errors(client, provider, body, headers):
    raw = {name: value.encode("latin-1") for name, value in headers.items()}
    response = client.post(
        f"/webhooks/{provider}", content=body.encode(), headers={"content-type": "application/json", **raw}
    )
    assert response.status_code in (400, 403)


def test_a_large_body_is_refused_without_reading_it_all(client):
    app, chunk, sent = client.app, b"x" * 65536, []

    async def receive():
        sent.append(1)
        return {"type": "http.request", "body": chunk, "more_body": len(sent) < 10_000}  # 640 MB offered

    replies = []

    async def send(message):
        replies.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/webhooks/mailgun",
        "raw_path": b"/webhooks/mailgun",
        "root_path": "",
        "scheme": "https",
        "query_string": b"",
        "headers": [(b"host", b"news.example.org"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("news.example.org", 443),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    assert replies[0]["status"] == 413
    assert len(sent) <= MAX_BODY // len(chunk) + 2


def test_a_mailgun_retry_after_a_failure_is_not_taken_for_a_replay(client, store, monkeypatch):
    publication = client.app.state.publication
    bounce = {"id": "r1", "event": "failed", "severity": "permanent", "recipient": "gone@a.example"}
    body = mailgun_body(bounce)

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patch:
        patch.setattr(publication, "take_event", broken)
        with pytest.raises(RuntimeError):
            client.post("/webhooks/mailgun", json=body)
    assert client.post("/webhooks/mailgun", json=body).status_code == 200  # Mailgun's retry
    assert state(store, "gone@a.example") == ("bounced", ("monthly", "weekly"))


# --- events without an id; addresses we do not know ---------------------------------------------


def recorded_actions(store) -> list[tuple[str, str]]:
    return sorted((row["recipient"], row["action"]) for row in store.inbound.messages())


def test_events_without_an_id_are_told_apart_by_their_content(client, store):
    soft = {"event": "bounce", "type": "blocked", "status": "4.7.1", "reason": "try later"}
    first = [{**soft, "email": "gone@a.example", "timestamp": 1760961600}]
    second = [{**soft, "email": "angry@b.example", "timestamp": 1760961601}]
    assert sendgrid_post(client, first).status_code == 200
    assert sendgrid_post(client, second).status_code == 200  # another event: not "already recorded"
    assert sendgrid_post(client, first).status_code == 200  # SendGrid's retry of the first: nothing new
    postmark = {"RecordType": "SpamComplaint", "Type": "SpamComplaint", "Email": "leaving@c.example"}
    assert client.post("/webhooks/postmark", json=postmark, auth=POSTMARK).status_code == 200
    mailgun = {"event": "failed", "severity": "permanent", "recipient": "fine@d.example", "timestamp": 1760961602.5}
    assert client.post("/webhooks/mailgun", json=mailgun_body(mailgun)).status_code == 200
    assert recorded_actions(store) == [
        ("angry@b.example", "soft bounce scored: 1.00 of 3"),
        ("fine@d.example", "suppressed (hard_bounce)"),
        ("gone@a.example", "soft bounce scored: 1.00 of 3"),
        ("leaving@c.example", "suppressed (complaint)"),
    ]
    assert state(store, "leaving@c.example") == ("unsubscribed", ())


def test_an_event_for_an_address_we_do_not_know_says_so(client, store):
    bounce = {"id": "u1", "event": "failed", "severity": "permanent", "recipient": "stranger@x.example"}
    assert client.post("/webhooks/mailgun", json=mailgun_body(bounce)).status_code == 200
    assert recorded_actions(store) == [
        ("stranger@x.example", "nothing: no such subscriber (webhook:mailgun): not acted on")
    ]


# --- which certificate URLs SNS may name ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.eu-west-1.amazonaws.com.attacker.example/SimpleNotificationService-0000.pem",
        "https://sns.eu-west-1.amazonaws.com@attacker.example/SimpleNotificationService-0000.pem",
        "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem",
        "https://sns.eu-west-1.amazonaws.com/redirect?to=https://attacker.example/x.pem",
        "https://sns.eu-west-1.amazonaws.com:99999/SimpleNotificationService-0000.pem",
    ],
)
def test_a_pattern_without_a_final_slash_cannot_be_passed_by_another_host(url):
    from publisher.config import SesWebhook
    from publisher.webhooks import Rejected, SnsVerifier

    fetched: list[str] = []
    config = SesWebhook(True, r"^https://sns\.[a-z0-9-]+\.amazonaws\.com", (TOPIC,))  # no final "/"
    verifier = SnsVerifier(config, lambda address: fetched.append(address) or b"")
    message = {"Type": "Notification", "TopicArn": TOPIC, "SignatureVersion": "1", "SigningCertURL": url}
    with pytest.raises(Rejected, match=r"is not allowed by webhooks\.ses\.signing_cert_url_pattern"):
        verifier.verify(message)
    assert fetched == []
    good = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem"
    with pytest.raises(Rejected, match="cannot load the SNS certificate"):  # allowed, so fetched (and empty)
        verifier.verify({**message, "SigningCertURL": good})
    assert fetched == [good]


# --- what `publisher serve` logs --------------------------------------------------------------


def test_publisher_serve_logs_each_event_it_acts_on(tmp_path, database_url):
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx
    from sink import free_port

    from publisher.store import Store

    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[site]\nurl = "https://news.example.org"\npostal_address = "1 Sample Street, Exampletown"\n'
        f'[database]\nurl = "{database_url}"\n[newsletters.weekly]\n'
        '[webhooks.mailgun]\nsigning_key_env = "MAILGUN_SIGNING_KEY"\n'
    )
    store = Store.open(database_url)
    store.subscribers.add(Subscriber(email="gone@a.example", status="confirmed", newsletters=("weekly",)), NOW)
    env = {**os.environ, "PUBLISHER_SECRET_KEY": "webhooks-test-5d2a8c1f7e3b9a4c6e0d2f8b1a7c3e95"}
    process = subprocess.Popen(
        [sys.executable, "-m", "publisher", "--config", str(config), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**env, "MAILGUN_SIGNING_KEY": MAILGUN_KEY},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "publisher serve did not start"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        bounce = {"id": "log1", "event": "failed", "severity": "permanent", "recipient": "gone@a.example"}
        response = httpx.post(f"http://127.0.0.1:{port}/webhooks/mailgun", json=mailgun_body(bounce), timeout=10)
        assert response.status_code == 200
        assert store.subscribers.get("gone@a.example").status == "bounced"
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        store.close()
    lines = [line for line in err.decode().splitlines() if "publisher.feedback" in line]
    assert len(lines) == 1, err.decode()
    assert "webhook:mailgun bounce gone@a.example" in lines[0] and lines[0].endswith("suppressed (hard_bounce)")
