"""ESP event webhooks: Amazon SES (through SNS), Mailgun, Postmark and SendGrid.

Each provider's reader verifies the request by the provider's documented scheme and maps its
events to the same `Feedback` values the mail parser gives (bounce, soft bounce, complaint,
unsubscribe); `publisher.feedback.apply_event` then acts on them. A provider is off unless
configured (404); a request that fails verification is answered 403 and changes nothing.

- Mailgun: HMAC-SHA256 of timestamp + token with the webhook signing key.
- SendGrid: ECDSA P-256 / SHA-256 over timestamp + body with the verification public key.
- Postmark: HTTP basic auth with credentials configured in the webhook's URL.
- SES via SNS: RSA (SignatureVersion 1: SHA-1, 2: SHA-256) with the certificate at
  SigningCertURL, fetched only when the URL is https (plain http to a loopback host only), has
  no user part, and its `scheme://host[:port]` matches `signing_cert_url_pattern` whole; the
  SubscriptionConfirmation is verified, then confirmed by visiting its SubscribeURL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from publisher.config import (
    MailgunWebhook,
    PostmarkWebhook,
    SendgridWebhook,
    SesWebhook,
    Settings,
    is_loopback,
)
from publisher.errors import PublisherError
from publisher.inbound.parse import Feedback, Kind

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from cryptography.x509 import Certificate

log = logging.getLogger("publisher.webhooks")
MAX_BODY = 1024 * 1024
SIGNED_FRESH = timedelta(minutes=5)  # Mailgun's and SendGrid's signed timestamps
SNS_FRESH = timedelta(hours=1)  # SNS's message Timestamp
NONCE_KEPT = 2 * SIGNED_FRESH  # a token older than this is refused as stale anyway
Fetch = Callable[[str], bytes]


class Rejected(PublisherError):
    """The request is not verifiably from the provider."""


@dataclass(frozen=True)
class Event:
    feedback: Feedback
    event_id: str


@dataclass(frozen=True)
class Verified:
    """A request's events, and the one-time value (Mailgun's token) its signature covers, if any."""

    events: list[Event]
    nonce: str = ""


Reader = Callable[[bytes, Mapping[str, str], datetime], Verified]


def _fresh(stamp: datetime, now: datetime, window: timedelta, what: str) -> None:
    if abs(now - stamp) > window:
        raise Rejected(f"{what} {stamp.isoformat()} is not within {window} of now")


def _unix(value: object, what: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(str(value)), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise Rejected(f"{what} is not a Unix time") from None


def _same(expected: str, given: object) -> bool:
    """Constant-time comparison that treats a non-ASCII or non-string value as a mismatch."""
    if not isinstance(given, str) or not given.isascii():
        return False
    return hmac.compare_digest(expected, given)


def _event(
    kind: Kind, recipient: object, event_id: object, provider: str, status: object = "", why: object = ""
) -> Event:
    return Event(
        Feedback(
            kind,
            recipient=str(recipient or "").strip().lower(),
            status=str(status or ""),
            diagnostic=str(why or ""),
            format=provider,
        ),
        str(event_id or ""),
    )


def _event_id(given: object, event: object, prefix: str = "") -> str:
    """The provider's id for an event; one sent without an id is told apart by its whole content
    (a retry repeats it byte for byte, another event differs at least in its time)."""
    if given not in (None, ""):
        return f"{prefix}{given}"
    canonical = json.dumps(event, sort_keys=True, ensure_ascii=True, separators=(",", ":"), default=str)
    return f"{prefix}content:{hashlib.sha256(canonical.encode()).hexdigest()}"


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Rejected("the body is not JSON") from None


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


# --- Mailgun --------------------------------------------------------------------------------

_MAILGUN = {"complained": Kind.COMPLAINT, "unsubscribed": Kind.UNSUBSCRIBE}


def mailgun(config: MailgunWebhook, body: bytes, headers: Mapping[str, str], now: datetime) -> Verified:
    data = _json(body)
    if not isinstance(data, dict) or not isinstance(data.get("signature"), dict):
        raise Rejected("not a Mailgun event")
    signature = data["signature"]
    timestamp, token = str(signature.get("timestamp", "")), str(signature.get("token", ""))
    expected = hmac.new(config.signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    if not token or not _same(expected, signature.get("signature")):
        raise Rejected("bad Mailgun signature")
    _fresh(_unix(timestamp, "the Mailgun timestamp"), now, SIGNED_FRESH, "the Mailgun timestamp")
    return Verified(_mailgun_events(_dict(data.get("event-data"))), nonce=f"mailgun:{token}")


def _mailgun_events(event: dict) -> list[Event]:
    name = event.get("event", "")
    status = _dict(event.get("delivery-status"))
    if name == "failed":
        kind = Kind.BOUNCE if event.get("severity") == "permanent" else Kind.SOFT_BOUNCE
    elif name in _MAILGUN:
        kind = _MAILGUN[name]
    else:
        return []
    why = status.get("description") or status.get("message") or event.get("reason", "")
    return [
        _event(kind, event.get("recipient"), _event_id(event.get("id"), event), "mailgun", status.get("code", ""), why)
    ]


# --- SendGrid -------------------------------------------------------------------------------


def _sendgrid_key(text: str) -> EllipticCurvePublicKey:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    try:
        if "BEGIN PUBLIC KEY" in text:
            key = load_pem_public_key(text.encode())
        else:
            key = load_der_public_key(base64.b64decode(text))
    except (ValueError, binascii.Error):
        raise PublisherError("webhooks.sendgrid: the verification key is not a base64 or PEM public key") from None
    if not isinstance(key, EllipticCurvePublicKey):
        raise PublisherError("webhooks.sendgrid: the verification key is not an ECDSA (elliptic curve) public key")
    return key


def sendgrid(config: SendgridWebhook, body: bytes, headers: Mapping[str, str], now: datetime) -> Verified:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    timestamp = headers.get("x-twilio-email-event-webhook-timestamp", "")
    try:
        signature = base64.b64decode(headers.get("x-twilio-email-event-webhook-signature", ""), validate=True)
        _sendgrid_key(config.public_key).verify(signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise Rejected("bad SendGrid signature") from None
    _fresh(_unix(timestamp, "the SendGrid timestamp"), now, SIGNED_FRESH, "the SendGrid timestamp")
    return Verified(_sendgrid_events(_json(body)))


def _sendgrid_events(events: object) -> list[Event]:
    found = []
    for item in events if isinstance(events, list) else []:
        if not isinstance(item, dict):
            continue
        name, kind = item.get("event"), None
        if name == "bounce":
            kind = Kind.SOFT_BOUNCE if item.get("type") == "blocked" else Kind.BOUNCE
        elif name == "spamreport":
            kind = Kind.COMPLAINT
        elif name in ("unsubscribe", "group_unsubscribe"):
            kind = Kind.UNSUBSCRIBE
        if kind is not None:
            found.append(
                _event(
                    kind,
                    item.get("email"),
                    _event_id(item.get("sg_event_id"), item),
                    "sendgrid",
                    item.get("status"),
                    item.get("reason"),
                )
            )
    return found


# --- Postmark -------------------------------------------------------------------------------

_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Blocked"}


def postmark(config: PostmarkWebhook, body: bytes, headers: Mapping[str, str], now: datetime) -> Verified:
    scheme, _, given = headers.get("authorization", "").partition(" ")
    expected = base64.b64encode(f"{config.username}:{config.password}".encode()).decode()
    if scheme.lower() != "basic" or not _same(expected, given.strip()):
        raise Rejected("bad Postmark credentials")
    return Verified(_postmark_events(_json(body)))


def _postmark_events(data: object) -> list[Event]:
    if not isinstance(data, dict):
        return []
    record = data.get("RecordType")
    if record == "Bounce":
        kind = Kind.BOUNCE if data.get("Type") in _POSTMARK_HARD else Kind.SOFT_BOUNCE
        return [
            _event(
                kind,
                data.get("Email"),
                _event_id(data.get("ID"), data, "bounce:"),
                "postmark",
                data.get("Type"),
                data.get("Description"),
            )
        ]
    if record == "SpamComplaint":
        return [
            _event(
                Kind.COMPLAINT,
                data.get("Email"),
                _event_id(data.get("ID"), data, "spam:"),
                "postmark",
                "",
                data.get("Description"),
            )
        ]
    if record == "SubscriptionChange" and data.get("SuppressSending"):
        reason = data.get("SuppressionReason", "")
        kind = {"HardBounce": Kind.BOUNCE, "SpamComplaint": Kind.COMPLAINT}.get(reason, Kind.UNSUBSCRIBE)
        message_id, changed = data.get("MessageID"), data.get("ChangedAt")
        event_id = _event_id(f"{message_id}:{changed}" if message_id and changed else None, data, "change:")
        return [_event(kind, data.get("Recipient"), event_id, "postmark", "", reason)]
    return []


# --- Amazon SES through SNS -------------------------------------------------------------------

_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def sns_string_to_sign(message: dict) -> bytes:
    """SNS's canonical form: each present field's name and value on their own lines, in order."""
    lines = []
    for name in _SNS_FIELDS.get(message.get("Type", ""), ()):
        if name in message and not (name == "Subject" and message[name] is None):
            lines += [name, str(message[name])]
    return ("\n".join(lines) + "\n").encode()


class SnsVerifier:
    """Checks SNS signatures; certificates are fetched once per URL and kept."""

    def __init__(self, config: SesWebhook, fetch: Fetch) -> None:
        self.config, self.fetch = config, fetch
        self.pattern = re.compile(config.signing_cert_url_pattern)
        self.certificates: dict[str, Certificate] = {}
        self.lock = threading.Lock()

    def allowed(self, url: str, what: str, *, certificate: bool = False) -> None:
        """Refuse a URL not on an allowed host: its parsed origin (`scheme://host[:port]`, with or
        without a final "/") must match the pattern whole, so a pattern written without the "/"
        still cannot be passed by `…amazonaws.com.attacker.example`."""
        parts = urlsplit(url)
        try:
            host, port = parts.hostname or "", parts.port
        except ValueError:
            host, port = "", None
        secure = parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))
        origin = f"{parts.scheme}://{host}{f':{port}' if port else ''}"
        matches = self.pattern.fullmatch(origin) or self.pattern.fullmatch(origin + "/")
        plain = parts.username is None and parts.password is None
        pem = not certificate or (parts.path.endswith(".pem") and not parts.query and not parts.fragment)
        if not (host and secure and plain and pem and matches):
            raise Rejected(f"{what} {url!r} is not allowed by webhooks.ses.signing_cert_url_pattern")

    def _certificate(self, url: str) -> Certificate:
        from cryptography import x509

        self.allowed(url, "SigningCertURL", certificate=True)
        with self.lock:
            if url not in self.certificates:
                try:
                    self.certificates[url] = x509.load_pem_x509_certificate(self.fetch(url))
                except (httpx.HTTPError, ValueError) as error:
                    raise Rejected(f"cannot load the SNS certificate at {url}: {error}") from None
            return self.certificates[url]

    def verify(self, message: dict) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        if message.get("TopicArn") not in self.config.topic_arns:
            raise Rejected(f"SNS topic {message.get('TopicArn')!r} is not in webhooks.ses.topic_arns")
        # SignatureVersion 1 is SNS's SHA1withRSA; 2 is SHA256withRSA (the scheme is AWS's, not ours).
        digest = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(message.get("SignatureVersion")))  # noqa: S303
        if digest is None or message.get("Type") not in _SNS_FIELDS:
            raise Rejected("not a signed SNS message")
        certificate = self._certificate(str(message.get("SigningCertURL", "")))
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
            key = certificate.public_key()
            if not isinstance(key, rsa.RSAPublicKey):  # SNS signs with RSA
                raise Rejected("bad SNS signature: the certificate's key is not RSA")
            key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), digest)
        except (InvalidSignature, binascii.Error, ValueError, TypeError):
            raise Rejected("bad SNS signature") from None

    def __call__(self, body: bytes, headers: Mapping[str, str], now: datetime) -> Verified:
        return Verified(self.events(body, now))

    def events(self, body: bytes, now: datetime) -> list[Event]:
        message = _json(body)
        if not isinstance(message, dict):
            raise Rejected("not an SNS message")
        self.verify(message)
        _fresh(_sns_time(message.get("Timestamp")), now, SNS_FRESH, "the SNS Timestamp")
        if message["Type"] == "SubscriptionConfirmation":
            url = str(message.get("SubscribeURL", ""))
            self.allowed(url, "SubscribeURL")
            self.fetch(url)
            log.info("confirmed the SNS subscription to %s", message.get("TopicArn"))
            return []
        if message["Type"] != "Notification":
            return []
        return ses_events(_json(str(message.get("Message", "")).encode()), str(message.get("MessageId", "")))


def _sns_time(value: object) -> datetime:
    try:
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise Rejected("the SNS Timestamp is not an ISO 8601 time") from None
    if stamp.tzinfo is None:
        raise Rejected("the SNS Timestamp has no time zone")
    return stamp


def ses_events(notification: object, message_id: str) -> list[Event]:
    if not isinstance(notification, dict):
        return []
    kind_name = notification.get("notificationType") or notification.get("eventType")
    if kind_name == "Bounce":
        bounce = _dict(notification.get("bounce"))
        kind = Kind.BOUNCE if bounce.get("bounceType") == "Permanent" else Kind.SOFT_BOUNCE
        return [
            _event(
                kind,
                r.get("emailAddress"),
                f"{message_id}:{r.get('emailAddress')}",
                "ses",
                r.get("status"),
                r.get("diagnosticCode"),
            )
            for r in bounce.get("bouncedRecipients", [])
            if isinstance(r, dict)
        ]
    if kind_name == "Complaint":
        complaint = _dict(notification.get("complaint"))
        why = complaint.get("complaintFeedbackType", "")
        return [
            _event(Kind.COMPLAINT, r.get("emailAddress"), f"{message_id}:{r.get('emailAddress')}", "ses", "", why)
            for r in complaint.get("complainedRecipients", [])
            if isinstance(r, dict)
        ]
    return []


# --- the endpoint -----------------------------------------------------------------------------


def _fetch(url: str) -> bytes:
    response = httpx.get(url, timeout=10, follow_redirects=False)
    response.raise_for_status()
    return response.content


def readers(settings: Settings, fetch: Fetch = _fetch) -> dict[str, Reader]:
    """The configured providers' readers, by the name in the URL (`POST /webhooks/<name>`)."""
    hooks = settings.webhooks
    found: dict[str, Reader] = {}
    if hooks.mailgun.signing_key:
        found["mailgun"] = lambda body, headers, now: mailgun(hooks.mailgun, body, headers, now)
    if hooks.sendgrid.public_key:
        _sendgrid_key(hooks.sendgrid.public_key)  # a bad key fails at start-up, not per request
        found["sendgrid"] = lambda body, headers, now: sendgrid(hooks.sendgrid, body, headers, now)
    if hooks.postmark.password:
        found["postmark"] = lambda body, headers, now: postmark(hooks.postmark, body, headers, now)
    if hooks.ses.enabled:
        found["ses"] = SnsVerifier(hooks.ses, fetch)
    return found


def endpoint(settings: Settings, fetch: Fetch = _fetch) -> Callable:
    """The Starlette endpoint for `POST /webhooks/{provider}`."""
    configured = readers(settings, fetch)

    async def receive(request: Request) -> Response:
        reader = configured.get(request.path_params["provider"])
        if reader is None:
            return PlainTextResponse("no such webhook\n", status_code=404)
        body = await _read_body(request)
        if body is None:
            return PlainTextResponse("too large\n", status_code=413)
        publication = request.app.state.publication
        try:
            verified = await run_in_threadpool(reader, body, request.headers, publication.now())
            if verified.nonce and not await run_in_threadpool(publication.claim_nonce, verified.nonce, NONCE_KEPT):
                raise Rejected("the signature was used before (a replay)")
        except Rejected as error:
            log.warning("webhook %s rejected: %s", request.path_params["provider"], error)
            return PlainTextResponse("forbidden\n", status_code=403)
        events = verified.events
        try:
            for event in events:
                await run_in_threadpool(
                    publication.take_event,
                    event.feedback,
                    source=f"webhook:{request.path_params['provider']}",
                    event_id=event.event_id,
                )
        except Exception:
            if verified.nonce:  # the provider retries with the same token: let it (events are kept once by id)
                await run_in_threadpool(publication.release_nonce, verified.nonce)
            raise
        return PlainTextResponse(f"ok: {len(events)} events\n")

    return receive


async def _read_body(request: Request) -> bytes | None:
    """The body, read in chunks and abandoned (None) once it passes MAX_BODY."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
