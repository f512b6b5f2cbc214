"""VERP: a bounce address per message, `bounces+<token>@example.org`, that only we can mint.

The token is base32 (lower-case, no padding) of the issue id and the subscriber id (4 bytes each)
and the first 10 bytes of an HMAC-SHA256 over them with the secret key and a purpose ("bounce"
or "unsub"). 18 bytes make 29 characters, so `bounces+unsub-<token>` stays far below the 64
octets a local part may have. Base32 is case-insensitive: an MTA that lower-cases (or
upper-cases) the address still hands back a token that verifies. 144 bits take 29 characters
of 5 bits: the last character's spare bit is zero, and a token with it set is refused, so each
token has one spelling (up to case).

Mail that belongs to no issue (a confirmation or welcome mail) carries issue id 0, `NO_ISSUE`:
its bounce is verified the same way and names the subscriber alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

BOUNCE = "bounce"
UNSUBSCRIBE = "unsub"
NO_ISSUE = 0  # the issue id of a confirmation or welcome mail
TOKEN_LENGTH = 29
_MAC_BYTES = 10
# A token after "+" (optionally "unsub-") in any address, in any case.
TOKEN_PATTERN = re.compile(r"\+((?:unsub-)?[a-z2-7]{29})@", re.IGNORECASE)


@dataclass(frozen=True)
class Verp:
    """What a verified token names."""

    issue_id: int | None  # None: a confirmation or welcome mail (`NO_ISSUE`)
    subscriber_id: int
    purpose: str  # BOUNCE or UNSUBSCRIBE


def _mac(key: str, purpose: str, ids: bytes) -> bytes:
    return hmac.new(key.encode(), purpose.encode() + b":" + ids, hashlib.sha256).digest()[:_MAC_BYTES]


def _encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def make_token(secret_keys: tuple[str, ...], issue_id: int, subscriber_id: int, purpose: str = BOUNCE) -> str:
    """The token for one recipient of one issue; signed with the newest key."""
    ids = issue_id.to_bytes(4, "big") + subscriber_id.to_bytes(4, "big")
    token = _encode(ids + _mac(secret_keys[0], purpose, ids))
    return f"unsub-{token}" if purpose == UNSUBSCRIBE else token


def read_token(secret_keys: tuple[str, ...], token: str) -> Verp | None:
    """The ids a token names, or None when it is malformed or was not signed with any of our keys."""
    token = token.strip().lower()
    purpose = BOUNCE
    if token.startswith("unsub-"):
        purpose, token = UNSUBSCRIBE, token[len("unsub-") :]
    if len(token) != TOKEN_LENGTH:
        return None
    try:
        raw = base64.b32decode(token.upper() + "===")
    except (binascii.Error, ValueError):
        return None
    if _encode(raw) != token:  # the last character's spare bit set: a second spelling, refused
        return None
    ids, mac = raw[:8], raw[8:]
    if not any(hmac.compare_digest(mac, _mac(key, purpose, ids)) for key in secret_keys):
        return None
    issue_id = int.from_bytes(ids[:4], "big")
    return Verp(issue_id if issue_id != NO_ISSUE else None, int.from_bytes(ids[4:], "big"), purpose)


def address(return_path: str, token: str) -> str:
    """`bounces@example.org` + token → `bounces+token@example.org`."""
    local, _, domain = return_path.rpartition("@")
    return f"{local}+{token}@{domain}"


def tokens_in(text: str) -> list[str]:
    """Every VERP-shaped token in `text`, in order of appearance (unverified)."""
    return [match.lower() for match in TOKEN_PATTERN.findall(text)]
