"""What a message that came back means: a pure function of its bytes.

`parse(raw, envelope_to=…)` returns a `Feedback`: a bounce (permanent failure), a soft bounce
(delay, temporary failure), a complaint (RFC 5965 ARF), an unsubscribe request (mail to the
List-Unsubscribe mailto), an auto-reply (out of office and the like: never a bounce), or unknown.
It understands RFC 3464 delivery status notifications and the common non-standard bounces
(Exim, Gmail's and Yahoo's/qmail's plain-text ones, Exchange's). It verifies nothing: the VERP
tokens it finds are checked by `publisher.feedback`, which acts on them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.policy import Policy, compat32
from email.utils import getaddresses, parseaddr
from enum import StrEnum

from publisher.verp import tokens_in


class Kind(StrEnum):
    BOUNCE = "bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    AUTO_REPLY = "auto_reply"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Feedback:
    kind: Kind
    recipient: str = ""  # the address that failed or complained, as the report says
    tokens: tuple[str, ...] = ()  # VERP tokens found, most trustworthy first (unverified)
    status: str = ""  # enhanced status code, e.g. 5.1.1
    diagnostic: str = ""
    format: str = ""  # which reader understood it: dsn, arf, exim, gmail, qmail, exchange, header…
    message_id: str = ""  # of the report itself
    original_message_id: str = ""  # of our message, when the report quotes it
    sender: str = ""  # From: of the report
    subject: str = ""


MAX_PARTS = 1_000  # MIME parts read; a message with more is kept as `unknown`, unread
# C0 and C1 controls (tab, newline and carriage return become spaces), DEL, bidi overrides.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Exchange's mark on an auto-reply (so that no other auto-reply answers it): All, OOF or AutoReply.
_SUPPRESSES_AUTO_REPLIES = re.compile(r"\b(?:all|oof|autoreply)\b", re.IGNORECASE)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"(?:^|[\s#(])([45]\d\d)[\s:-]", re.MULTILINE)
_ADDRESS = re.compile(r"<?([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)>?")
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery|microsoft outlook", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|returning message|delivery status notification|failure notice|"
    r"mail delivery failed|delivery failure|delivery has failed|could not be delivered|"
    r"nondeliverable|delayed mail|warning: message",
    re.IGNORECASE,
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[ -]?(?:reply|response|antwort)|autoreply|auto:|out of (?:the )?office|"
    r"on vacation|vacation reply|away from (?:the )?office|abwesenheit|absence|réponse automatique|"
    r"respuesta automática|risposta automatica|fuori sede)",
    re.IGNORECASE,
)
_SOFT_WORDS = re.compile(
    r"temporar|delayed|will (?:be )?retr|still trying|not yet been delivered|mailbox (?:is )?full|"
    r"over quota|try again later",
    re.IGNORECASE,
)
_HARD_WORDS = re.compile(
    r"permanent(?:ly)?|does not exist|doesn't exist|no such user|user unknown|unknown user|"
    r"address not found|recipient not found|couldn't be found|doesn't have a .* account",
    re.IGNORECASE,
)
# Phrases after which a non-standard bounce names the failed address.
_FAILED_ADDRESS = re.compile(
    r"(?:following address\(es\) failed:|following recipients? failed permanently:|"
    r"recipients? or groups?:|wasn't delivered to|unable to deliver your message to the following address(?:es)?\.?|"
    r"could not be delivered to(?: the following recipients?)?:?|delivery to the following recipients? failed[^:]*:)"
    r"\s*<?([^\s<>]+@[A-Za-z0-9.-]*[A-Za-z0-9])>?",
    re.IGNORECASE,
)
_FORMATS = (
    ("exim", re.compile(r"following address\(es\) failed", re.IGNORECASE)),
    ("gmail", re.compile(r"google tried to deliver|delivery to the following recipient", re.IGNORECASE)),
    ("qmail", re.compile(r"remote host said|qmail-send program|unable to deliver your message to the following", re.I)),
    ("exchange", re.compile(r"delivery has failed to these recipients|RESOLVER\.|couldn't be delivered", re.I)),
    ("postfix", re.compile(r"this is the mail system at host", re.IGNORECASE)),
)


def parse(raw: bytes, *, envelope_to: str = "") -> Feedback:
    """Classify one message that came back; `envelope_to` is the address it was delivered to."""
    return parse_each(raw, [envelope_to])[0]


def parse_each(raw: bytes, envelope_tos: Sequence[str]) -> list[Feedback]:
    """Classify one message for each address it was delivered to, reading it once (the address
    decides which VERP token is tried first, and whether it is an unsubscribe request).

    A message of more than MAX_PARTS MIME parts, or nested too deeply to read, is `unknown`.
    Every text taken from the message is stripped of control characters."""
    try:
        message = _read(raw)
        in_raw = tokens_in(raw.decode("latin-1"))
        found = [_classify(message, in_raw, envelope_to) for envelope_to in envelope_tos]
    except _TooManyParts:
        found = [_unreadable("too-many-parts", f"more than {MAX_PARTS:,} MIME parts")] * len(envelope_tos)
    except RecursionError:
        found = [_unreadable("too-deep", "MIME parts nested too deeply to read")] * len(envelope_tos)
    return [_cleaned(feedback) for feedback in found]


def _unreadable(name: str, why: str) -> Feedback:
    return Feedback(Kind.UNKNOWN, format=name, diagnostic=f"{why}: kept for an operator, not acted on")


class _TooManyParts(Exception):
    pass


class _PartBudget:
    """The parser's message factory: it stops the parse once `limit` parts were made."""

    def __init__(self, limit: int) -> None:
        self.left = limit + 1  # the parser makes one to try the factory out

    def __call__(self, policy: Policy = compat32) -> Message:
        self.left -= 1
        if self.left < 0:
            raise _TooManyParts
        return Message(policy)


def _read(raw: bytes) -> Message:
    return BytesParser(_PartBudget(MAX_PARTS), policy=compat32).parsebytes(raw)


def _classify(message: Message, in_raw: list[str], envelope_to: str) -> Feedback:
    unknown = Feedback(
        Kind.UNKNOWN,
        tokens=_tokens(message, in_raw, envelope_to),
        message_id=_header(message, "Message-ID"),
        sender=parseaddr(_header(message, "From"))[1],
        subject=_header(message, "Subject"),
        original_message_id=_original_message_id(message),
        diagnostic="not a bounce, complaint, auto-reply or unsubscribe request",
    )
    for reader in (_arf, _dsn, _plain_bounce, _unsubscribe, _auto_reply):
        found = reader(message, envelope_to)
        if found is not None:
            return replace(unknown, **found)
    return unknown


def clean(text: str) -> str:
    """`text` without control characters (terminal escapes, NUL, bidi overrides) or broken
    surrogates, its whitespace collapsed: safe to store and to print on a terminal."""
    return " ".join(_CONTROL.sub("", _SURROGATE.sub("\ufffd", text)).split())


def _cleaned(feedback: Feedback) -> Feedback:
    return replace(
        feedback,
        recipient=clean(feedback.recipient),
        status=clean(feedback.status),
        diagnostic=clean(feedback.diagnostic),
        format=clean(feedback.format),
        message_id=clean(feedback.message_id),
        original_message_id=clean(feedback.original_message_id),
        sender=clean(feedback.sender),
        subject=clean(feedback.subject),
    )


# --- pieces --------------------------------------------------------------------------------


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    if value is None:
        return ""
    return " ".join(str(value).split())[:998]


def _content_type(message: Message) -> tuple[str, str]:
    report_type = message.get_param("report-type")
    return message.get_content_type(), report_type.lower() if isinstance(report_type, str) else ""


def _parts(message: Message) -> list[Message]:
    return list(message.walk())


def _text(message: Message, limit: int = 200_000) -> str:
    """The readable text of the human-readable parts (not the quoted original)."""
    chunks = []
    for part in _top_level_parts(message):
        if part.get_content_type() in ("text/plain", "text/html"):
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                payload = b""
            charset = part.get_content_charset() or "utf-8"
            try:
                text = payload.decode(charset, "replace")
            except LookupError:
                text = payload.decode("utf-8", "replace")
            if part.get_content_type() == "text/html":
                text = re.sub(r"<[^>]+>", " ", text)
            chunks.append(text)
    return "\n".join(chunks)[:limit]


def _top_level_parts(message: Message) -> list[Message]:
    """Parts of the report itself: multipart containers opened, attached messages left closed."""
    if not message.is_multipart():
        return [message]
    found: list[Message] = []
    for part in _children(message):
        if part.get_content_type() in ("message/rfc822", "message/delivery-status", "message/feedback-report"):
            continue
        found.extend(_top_level_parts(part) if part.is_multipart() else [part])
    return found


def _children(message: Message) -> list[Message]:
    payload = message.get_payload()
    return [part for part in payload if isinstance(part, Message)] if isinstance(payload, list) else []


def _tokens(message: Message, in_raw: list[str], envelope_to: str) -> tuple[str, ...]:
    """VERP tokens: first in the address the report was delivered to, then anywhere in it."""
    addressed = " ".join(
        [envelope_to, *(str(v) for name in ("Delivered-To", "X-Original-To", "To") for v in message.get_all(name, []))]
    )
    found = tokens_in(addressed) + in_raw
    return tuple(dict.fromkeys(found))


def _original_message_id(message: Message) -> str:
    """Our message's Message-ID, from the returned message or headers quoted in the report's text."""
    for part in _parts(message):
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return _header(inner[0], "Message-ID")
            if isinstance(inner, str):
                match = re.search(r"^Message-ID:\s*(<[^>]+>)", inner, re.IGNORECASE | re.MULTILINE)
                if match:
                    return match[1]
    quoted = re.search(r"^\s*Message-ID:\s*(<[^>\s]+>)", _text(message), re.IGNORECASE | re.MULTILINE)
    return quoted[1] if quoted else ""


def _status_kind(status: str, action: str = "") -> Kind:
    if action == "delayed" or status.startswith("4"):
        return Kind.SOFT_BOUNCE
    return Kind.BOUNCE


def _fields(part: Message) -> list[Message]:
    """The header blocks of a delivery-status or feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = payload if isinstance(payload, str) else ""
    blocks = re.split(r"\r?\n\s*\r?\n", text.strip())
    return [HeaderParser().parsestr(block + "\n") for block in blocks if block.strip()]


def _address_field(value: str) -> str:
    """`rfc822; user@example.org` → user@example.org."""
    value = value.partition(";")[2] if ";" in value else value
    return parseaddr(value.strip())[1].lower() or value.strip().strip("<>").lower()


# --- readers: each returns the Feedback's fields, or None when it does not apply -------------


def _arf(message: Message, _envelope_to: str) -> dict | None:
    if _content_type(message) != ("multipart/report", "feedback-report"):
        return None
    report = next((p for p in _parts(message) if p.get_content_type() == "message/feedback-report"), None)
    fields: dict[str, str] = {}
    for block in _fields(report) if report is not None else []:
        fields.update({key.lower(): str(value) for key, value in block.items()})
    recipient = _address_field(fields.get("original-rcpt-to", ""))
    if not recipient:
        original = next((p for p in _parts(message) if p.get_content_type() == "message/rfc822"), None)
        inner = original.get_payload() if original is not None else None
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            recipient = (getaddresses([_header(inner[0], "To")]) or [("", "")])[0][1].lower()
    feedback_type = fields.get("feedback-type", "abuse").strip().lower()
    return {
        "kind": Kind.COMPLAINT,
        "recipient": recipient,
        "diagnostic": f"feedback-type {feedback_type}; reported by {fields.get('user-agent', '?').strip()}",
        "format": "arf",
    }


def _dsn(message: Message, _envelope_to: str) -> dict | None:
    if _content_type(message) != ("multipart/report", "delivery-status"):
        return None
    status_part = next((p for p in _parts(message) if p.get_content_type() == "message/delivery-status"), None)
    blocks = _fields(status_part) if status_part is not None else []
    per_recipient = [b for b in blocks if b.get("Final-Recipient") or b.get("Action")]
    if not per_recipient:
        return None
    # The worst outcome wins: a failure over a delay; delivered/relayed notices are not bounces.
    ranked = sorted(per_recipient, key=lambda b: {"failed": 0, "delayed": 1}.get(str(b.get("Action", "")).strip(), 2))
    block = ranked[0]
    action = str(block.get("Action", "")).strip().lower()
    status_match = _STATUS.search(str(block.get("Status", "")))
    status = status_match[0] if status_match else ""
    diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
    recipient = _address_field(str(block.get("Final-Recipient") or block.get("Original-Recipient") or ""))
    if action not in ("failed", "delayed"):
        return {
            "kind": Kind.AUTO_REPLY,
            "recipient": recipient,
            "status": status,
            "diagnostic": f"delivery notification: {action or 'no action'}",
            "format": "dsn",
        }
    if not status:
        status = "5.0.0" if action == "failed" else "4.0.0"
    return {
        "kind": _status_kind(status, action),
        "recipient": recipient,
        "status": status,
        "diagnostic": diagnostic.partition(";")[2].strip() or diagnostic or action,
        "format": "dsn",
    }


def _looks_like_bounce(message: Message) -> bool:
    sender = _header(message, "From")
    return bool(_DAEMON.search(sender)) or _header(message, "Return-Path") == "<>"


def _plain_bounce(message: Message, _envelope_to: str) -> dict | None:
    """Exim, Gmail (old style), Yahoo/qmail and Exchange bounces: plain text, no delivery-status part."""
    if not _looks_like_bounce(message) or not _BOUNCE_SUBJECT.search(_header(message, "Subject")):
        return None
    if _declared_auto_reply(message):  # "Automatic reply: … could not be delivered … permanently moved"
        return None
    text = _text(message)
    cut = re.search(r"^-+ ?(?:below this line|this is a copy|original message)", text, re.IGNORECASE | re.MULTILINE)
    report = text[: cut.start()] if cut else text
    found = _FAILED_ADDRESS.search(report)
    recipient = found[1].lower().rstrip(".") if found else ""
    status = _plain_status(report)
    if not status:
        return None
    kind = _status_kind(status)
    if kind is Kind.BOUNCE and _SOFT_WORDS.search(_header(message, "Subject")):
        kind = Kind.SOFT_BOUNCE
    name = next((name for name, pattern in _FORMATS if pattern.search(report)), "plain")
    code = _SMTP_CODE.search(report)
    line = next((ln.strip() for ln in report.splitlines() if status in ln or (code and code[1] in ln)), "")
    return {"kind": kind, "recipient": recipient, "status": status, "diagnostic": line[:500], "format": name}


def _plain_status(report: str) -> str:
    """The enhanced status in a plain-text bounce; else one from its SMTP code or its wording ("" if none)."""
    if status := _STATUS.search(report):
        return status[0]
    if code := _SMTP_CODE.search(report):
        return f"{code[1][0]}.0.0"
    if _HARD_WORDS.search(report):
        return "5.0.0"
    return "4.0.0" if _SOFT_WORDS.search(report) else ""


def _auto_reply(message: Message, _envelope_to: str) -> dict | None:
    why = _auto_signs(message)
    if not why:
        return None
    return {"kind": Kind.AUTO_REPLY, "diagnostic": "auto-reply (" + ", ".join(why) + ")", "format": "header"}


def _declared_auto_reply(message: Message) -> bool:
    """An auto-reply by its headers, never a bounce. Mailer daemons mark their (plain-text)
    bounces `Auto-Submitted: auto-replied` too, and Exchange may add `X-Auto-Response-Suppress`:
    from a daemon those two do not count."""
    signs = set(_auto_signs(message))
    if signs & {"x-autoreply", "precedence", "subject"}:
        return True
    return bool(signs & {"auto-submitted", "x-auto-response-suppress"}) and not _DAEMON.search(_header(message, "From"))


def _auto_signs(message: Message) -> list[str]:
    auto_submitted = _header(message, "Auto-Submitted").lower()
    precedence = _header(message, "Precedence").lower()
    signs = [
        ("auto-submitted", auto_submitted not in ("", "no")),
        ("x-autoreply", bool(_header(message, "X-Autoreply") or _header(message, "X-Autorespond"))),
        ("precedence", precedence in ("auto_reply", "auto-reply")),
        (
            "x-auto-response-suppress",
            bool(_SUPPRESSES_AUTO_REPLIES.search(_header(message, "X-Auto-Response-Suppress"))),
        ),
        ("subject", bool(_AUTO_SUBJECT.search(_header(message, "Subject")))),
    ]
    return [name for name, present in signs if present]


def _unsubscribe(message: Message, envelope_to: str) -> dict | None:
    addressed = " ".join([envelope_to, _header(message, "To"), _header(message, "Delivered-To")])
    if not any(token.startswith("unsub-") for token in tokens_in(addressed)):
        return None
    # A mail client's unsubscribe button may mark its request auto-generated; an out-of-office
    # reply that strays to the unsubscribe address is not a request.
    if _auto_signs(message) and _header(message, "Auto-Submitted").lower() != "auto-generated":
        return None
    return {
        "kind": Kind.UNSUBSCRIBE,
        "recipient": parseaddr(_header(message, "From"))[1].lower(),
        "diagnostic": "mail to the List-Unsubscribe address",
        "format": "mailto",
    }
