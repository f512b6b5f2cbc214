"""MIME assembly, once per issue variant, then cheap per-recipient personalisation.

`compile_message` turns a `RenderedIssue` into a `CompiledMessage`: the whole message as a list of
prebuilt CRLF byte segments with slots where per-recipient values go (To, Date, Message-ID, the
unsubscribe URL, and the render's placeholder tokens in the bodies). Bodies are quoted-printable, encoded in
segments around each placeholder: a soft line break closes the line before a placeholder and
another follows it, so no placeholder is ever split by the encoder and each filled value is
QP-encoded on its own lines. No line of the result starts with "." (a leading dot is written
=2E), so the bytes need no dot-stuffing on the way to an SMTP server.

`personalise` joins the segments with the filled values (and signs with DKIM when configured):
a few microseconds instead of building an `EmailMessage` per recipient.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import cached_property, lru_cache
from pathlib import Path

from publisher.config import DkimSettings, NewsletterSettings, Settings
from publisher.errors import DeliveryError
from publisher.model import RenderedIssue
from publisher.text import header_safe

MAX_QP_LINE = 76
# DKIM's h=: every header a reader or a mailbox provider acts on. From is over-signed (listed once
# more than it occurs) and Reply-To is listed even when absent, so neither can be added in transit.
SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"Reply-To",
    b"Content-Type",
    b"MIME-Version",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"List-Archive",
    b"List-Help",
    b"List-Post",
    b"List-Owner",
    b"List-Subscribe",
)
OVER_SIGNED = (b"From", b"Reply-To")
_QP_LITERAL = frozenset(
    b"!\"#$%&'()*+,-./0123456789:;<>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~ \t"
)
_QP_PLAIN = re.compile(rb"[!-<>-~]*")  # printable ASCII but "=": no escapes, no trailing space
_PLAIN_WIDTH = MAX_QP_LINE - 3  # room for "=2E" in front and the soft break's "=" behind
_QP_BYTES = [chr(byte) if byte in _QP_LITERAL else f"={byte:02X}" for byte in range(256)]


# --- quoted-printable ----------------------------------------------------------------------


def qp_line(line: bytes, column: int = 0, *, hard_end: bool = True) -> tuple[list[str], int]:
    """Encode one line's bytes from `column`; returns output pieces and the column reached.

    Soft line breaks keep every line ≤ 76 octets without splitting an =XX escape; a dot at the
    start of an output line is written =2E; white space before a hard line break is encoded.
    """
    out: list[str] = []
    last = len(line) - 1
    for position, byte in enumerate(line):
        piece = _QP_BYTES[byte]
        if (column == 0 and byte == 0x2E) or (hard_end and position == last and byte in (0x20, 0x09)):
            piece = f"={byte:02X}"
        if column + len(piece) > MAX_QP_LINE - 1:
            out.append("=\r\n")
            column = 0
            if byte == 0x2E:
                piece = "=2E"
        out.append(piece)
        column += len(piece)
    return out, column


def qp_encode(text: str, column: int = 0, *, final: bool = True) -> tuple[str, int]:
    """Quoted-printable of `text` (UTF-8) starting at `column`; line breaks become CRLF.

    `final` says the text ends at a hard line break (not at a placeholder that continues the line).
    """
    out: list[str] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, line in enumerate(lines):
        if number:
            out.append("\r\n")
            column = 0
        pieces, column = qp_line(line.encode("utf-8"), column, hard_end=final or number < len(lines) - 1)
        out.extend(pieces)
    return "".join(out), column


_QP_LITERAL_BYTES = bytes(sorted(_QP_LITERAL))


def qp_size(text: str) -> int:
    """The size in octets of `text` (UTF-8) quoted-printable encoded with CRLF line ends, in one
    fast pass (within a few octets of `qp_encode`): what a mail's HTML part really weighs."""
    size = 0
    for line in text.replace("\r\n", "\n").split("\n"):
        raw = line.encode("utf-8")
        encoded = len(raw) + 2 * len(raw.translate(None, _QP_LITERAL_BYTES))
        size += encoded + 3 * max(0, -(-encoded // (MAX_QP_LINE - 1)) - 1) + 2
    return size


def qp_value(value: str) -> bytes:
    """A filled value, alone on its own soft-broken lines (it starts and ends at a soft break)."""
    raw = value.encode("utf-8")
    if _QP_PLAIN.fullmatch(raw):  # the common case (URLs, ASCII names): cut, no escapes
        lines = [raw[start : start + _PLAIN_WIDTH] for start in range(0, len(raw), _PLAIN_WIDTH)]
        return b"=\r\n".join(b"=2E" + line[1:] if line[:1] == b"." else line for line in lines)
    pieces, _ = qp_line(value.replace("\r", " ").replace("\n", " ").encode("utf-8"), hard_end=False)
    return "".join(pieces).encode("ascii")


# --- headers -------------------------------------------------------------------------------


def encode_header(name: str, value: str) -> bytes:
    """`Name: value` folded at 78 with RFC 2047 words for non-ASCII, CR/LF/NUL stripped."""
    value = header_safe(value)
    if value.isascii() and len(name) + len(value) < 996:
        return f"{name}: {value}\r\n".encode("ascii")
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def encode_address(name: str, email: str) -> str:
    """`Name <email>` with the name quoted or RFC 2047-encoded as needed."""
    name, email = header_safe(name), header_safe(email).replace("<", "").replace(">", "")
    if not name:
        return email
    plain = formataddr((name, email))
    if name.isascii() and len(plain) <= 900:
        return plain
    # RFC 2047 words fold at 76 octets, so no name makes a line longer than SMTP allows (998).
    words = Header(name, "utf-8").encode(linesep="\r\n", maxlinelen=76)
    return f"{words} <{email}>"


def message_id(domain: str, *parts: object) -> str:
    """A Message-ID with our domain; stable for the same parts, random when none are given."""
    local = ".".join(str(part) for part in parts) or secrets.token_hex(12)
    return f"<{header_safe(local).replace(' ', '-')}@{domain}>"


# --- compiled message ----------------------------------------------------------------------

_WSP_RUN = re.compile(rb"[ \t]+")
_FOLD = re.compile(rb"\r\n(?=[ \t])")
_FIELD_BREAK = re.compile(rb"\r\n(?![ \t])")


def relaxed_body(piece: bytes) -> bytes:
    """DKIM relaxed body canonicalisation of whole lines (RFC 6376 3.4.4), minus the end-of-body rule."""
    return _WSP_RUN.sub(b" ", piece).replace(b" \r\n", b"\r\n")


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """DKIM relaxed header canonicalisation (RFC 6376 3.4.2)."""
    return name.strip().lower() + b":" + _WSP_RUN.sub(b" ", _FOLD.sub(b"", value)).strip(b" \t\r\n")


def header_fields(head: bytes) -> dict[bytes, tuple[bytes, bytes]]:
    """The header section's fields by lower-cased name (the last one of a name wins, as DKIM signs)."""
    fields: dict[bytes, tuple[bytes, bytes]] = {}
    for field in _FIELD_BREAK.split(head):
        name, _, value = field.partition(b":")
        fields[name.strip().lower()] = (name, value)
    return fields


@dataclass(frozen=True)
class Signer:
    """DKIM signing (rsa-sha256, relaxed/relaxed) with `h=` covering SIGNED_HEADERS (and OVER_SIGNED).

    The body hash is computed from the compiled message's pre-canonicalised segments, so a
    message costs one SHA-256 pass and one RSA signature (dkimpy's key parsing and RSA).
    """

    selector: bytes
    domain: bytes
    key: bytes

    @classmethod
    def from_settings(cls, dkim: DkimSettings) -> Signer | None:
        if not (dkim.selector and dkim.domain and dkim.key_file):
            return None
        try:
            key = Path(dkim.key_file).read_bytes()
        except OSError as error:
            raise DeliveryError(f"delivery.dkim.key_file {dkim.key_file}: cannot read: {error.strerror}") from None
        signer = cls(dkim.selector.encode(), dkim.domain.encode(), key)
        signer.private_key  # noqa: B018 - a bad key fails here, before anything is sent
        return signer

    @cached_property
    def private_key(self) -> dict:
        from dkim.crypto import UnparsableKeyError, parse_pem_private_key

        try:
            return parse_pem_private_key(self.key)
        except (UnparsableKeyError, ValueError, TypeError) as error:
            raise DeliveryError(f"delivery.dkim.key_file: not a PEM RSA private key: {error}") from None

    def sign(self, message: bytes, body_hash: bytes | None = None, now: int | None = None) -> bytes:
        """`message` with a DKIM-Signature header in front."""
        from dkim.crypto import RSASSA_PKCS1_v1_5_sign

        head, _, body = message.partition(b"\r\n\r\n")
        if body_hash is None:
            body_hash = hashlib.sha256(relaxed_body(body)).digest()
        fields = header_fields(head)
        present = [name for name in SIGNED_HEADERS if name.lower() in fields]
        signed = present + [name for name in SIGNED_HEADERS if name in OVER_SIGNED]
        tags = (
            b"v=1; a=rsa-sha256; c=relaxed/relaxed; d="
            + self.domain
            + b"; s="
            + self.selector
            + b"; t="
            + str(now if now is not None else int(time.time())).encode()
            + b";\r\n h="
            + b":".join(signed)
            + b";\r\n bh="
            + base64.b64encode(body_hash)
            + b";\r\n b="
        )
        digest = hashlib.sha256()
        for name in present:  # an over-signed name's second instance is absent: it adds nothing
            digest.update(relaxed_header(*fields[name.lower()]) + b"\r\n")
        digest.update(relaxed_header(b"DKIM-Signature", b" " + tags))
        signature = base64.b64encode(bytes(RSASSA_PKCS1_v1_5_sign(digest, self.private_key)))
        return b"DKIM-Signature: " + tags + signature + b"\r\n" + message


@dataclass(frozen=True)
class CompiledMessage:
    """A message with slots: str items of `segments` name the value that goes there."""

    segments: tuple[bytes | str, ...]
    sender: str  # the envelope sender (bounces come back here)
    domain: str
    list_id: str
    signer: Signer | None = None
    body_start: int = 0  # segments[body_start:] are the body (after the blank line)

    @cached_property
    def body_canonical(self) -> tuple[bytes | str, ...]:
        """The body's static segments in DKIM relaxed form; every segment is whole lines or a slot."""
        return tuple(relaxed_body(s) if isinstance(s, bytes) else s for s in self.segments[self.body_start :])

    def personalise(
        self,
        *,
        subscriber_id: int,
        email: str,
        name: str = "",
        unsubscribe_url: str,
        preferences_url: str = "",
        message_id: str = "",
        date: datetime | None = None,
        unsubscribe_mailto: str = "",
    ) -> bytes:
        """The message for one recipient, as CRLF bytes ready for SMTP (no dot-stuffing needed)."""
        raw = {"name": name, "email": email, "unsubscribe_url": unsubscribe_url, "preferences_url": preferences_url}
        values = {
            "to": encode_address(name, email).encode("utf-8"),
            "date": _date_header(date or datetime.now(UTC)),
            "message_id": header_safe(message_id or _random_id(self.domain, subscriber_id)).encode("ascii"),
            "header:unsubscribe_url": header_safe(unsubscribe_url).encode("ascii", "replace"),
            "header:unsubscribe_mailto": header_safe(unsubscribe_mailto).encode("ascii", "replace"),
        }
        parts = []
        for segment in self.segments:
            if isinstance(segment, bytes):
                parts.append(segment)
                continue
            value = values.get(segment)
            if value is None:
                kind, _, key = segment.partition(":")
                value = values[segment] = _BODY_FILL[kind](raw[key])
            parts.append(value)
        data = b"".join(parts)
        if self.signer is None:
            return data
        digest = hashlib.sha256()
        for segment in self.body_canonical:
            digest.update(segment if isinstance(segment, bytes) else relaxed_body(values[segment]))
        return self.signer.sign(data, digest.digest())


@lru_cache(maxsize=8)
def _date_header(moment: datetime) -> bytes:
    return format_datetime(moment).encode("ascii")


def _random_id(domain: str, subscriber_id: int) -> str:
    return message_id(domain, subscriber_id, secrets.token_hex(8))


def _html_value(value: str) -> bytes:
    return qp_value(html.escape(value, quote=True))


_BODY_FILL: dict[str, Callable[[str], bytes]] = {"text": qp_value, "html": _html_value}


def _body_segments(kind: str, body: str, placeholders: Mapping[str, str]) -> list[bytes | str]:
    """The QP-encoded body as static bytes and `kind:key` slots, a soft break around each slot.

    Only this render's tokens become slots: anything in the content that looks like a placeholder
    is plain text.
    """
    token_keys = {token: key for key, token in placeholders.items()}
    pattern = re.compile("(" + "|".join(re.escape(token) for token in token_keys) + ")") if token_keys else None
    segments: list[bytes | str] = []
    column = 0
    pieces = [piece for piece in (pattern.split(body) if pattern else [body]) if piece]
    for number, piece in enumerate(pieces):
        if piece in token_keys:
            if column:
                segments.append(b"=\r\n")
            segments.append(f"{kind}:{token_keys[piece]}")
            segments.append(b"=\r\n")
            column = 0
        else:
            encoded, column = qp_encode(piece, column, final=number == len(pieces) - 1)
            segments.append(encoded.encode("ascii"))
    segments.append(b"\r\n")
    return segments


def _part(
    content_type: str, boundary: bytes, kind: str, body: str, placeholders: Mapping[str, str]
) -> list[bytes | str]:
    head = (
        b"--" + boundary + b"\r\nContent-Type: " + content_type.encode() + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    return [head, *_body_segments(kind, body, placeholders)]


def compile_message(
    rendered: RenderedIssue,
    *,
    settings: Settings,
    newsletter: NewsletterSettings,
    issue_number: int,
    signer: Signer | None = None,
    sender: str = "",
) -> CompiledMessage:
    """Assemble the MIME structure of one issue variant once; see `CompiledMessage.personalise`."""
    domain = settings.site.domain
    from_name, from_address = parseaddr(header_safe(newsletter.from_))
    if "@" not in from_address:
        raise DeliveryError(f"newsletters.{newsletter.name}.from: {newsletter.from_!r} has no email address")
    list_id = f"{newsletter.name}.{domain}"
    boundary = f"=_publisher_{secrets.token_hex(12)}".encode()
    unsubscribe_mailto = f"mailto:{from_address}?subject=unsubscribe%20{newsletter.name}"
    # With a VERP return path, the mailto goes to a per-recipient address that we read.
    mailto: list[bytes | str] = (
        [b">,\r\n <mailto:", "header:unsubscribe_mailto", b"?subject=unsubscribe>\r\n"]
        if settings.delivery.return_path
        else [b">,\r\n <" + unsubscribe_mailto.encode() + b">\r\n"]
    )
    head = b"".join(
        [
            encode_header("From", encode_address(from_name, from_address)),
            *(
                [encode_header("Reply-To", encode_address(*parseaddr(header_safe(newsletter.reply_to))))]
                if newsletter.reply_to
                else []
            ),
            encode_header("Subject", rendered.subject),
        ]
    )
    headers = _merge(
        [
            head,
            b"To: ",
            "to",
            b"\r\nDate: ",
            "date",
            b"\r\nMessage-ID: ",
            "message_id",
            b"\r\n",
            encode_header("List-Id", encode_address(newsletter.title, list_id)),
            b"List-Unsubscribe: <",
            "header:unsubscribe_url",
            *mailto,
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            encode_header("Feedback-ID", f"{issue_number}:{newsletter.name}:newsletter:{domain}"),
            b"MIME-Version: 1.0\r\n",
            b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n\r\n',
        ]
    )
    body = _merge(
        [
            *_part("text/plain", boundary, "text", rendered.text, rendered.placeholders),
            *_part("text/html", boundary, "html", rendered.html, rendered.placeholders),
            b"--" + boundary + b"--\r\n",
        ]
    )
    return CompiledMessage(
        tuple(headers + body), sender or from_address, domain, list_id, signer, body_start=len(headers)
    )


def _merge(segments: list[bytes | str]) -> list[bytes | str]:
    """Join neighbouring static pieces so personalising joins as few items as possible."""
    merged: list[bytes | str] = []
    for segment in segments:
        if merged and isinstance(segment, bytes) and isinstance(merged[-1], bytes):
            merged[-1] += segment
        else:
            merged.append(segment)
    return merged


def plain_message(
    *,
    sender: str,
    recipient: str,
    subject: str,
    body: str,
    domain: str,
    date: datetime,
    signer: Signer | None = None,
    extra_headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A single-part text/plain message (the sign-up mails), CRLF and quoted-printable, DKIM-signed
    when `signer` is given: the same header encoding and signing as the issues."""
    from_name, from_address = parseaddr(header_safe(sender))
    head = b"".join(
        [
            encode_header("From", encode_address(from_name, from_address)),
            encode_header("To", encode_address("", recipient)),
            encode_header("Subject", subject),
            b"Date: " + _date_header(date) + b"\r\n",
            b"Message-ID: " + message_id(domain).encode("ascii") + b"\r\n",
            *(encode_header(name, value) for name, value in extra_headers),
            b"MIME-Version: 1.0\r\n",
            b'Content-Type: text/plain; charset="utf-8"\r\n',
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        ]
    )
    encoded, _ = qp_encode(body)
    data = head + encoded.encode("ascii") + (b"" if encoded.endswith("\r\n") else b"\r\n")
    return signer.sign(data) if signer is not None else data
