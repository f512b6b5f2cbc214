"""Acting on what comes back: bounces and complaints suppress, mailto requests unsubscribe.

`receive` parses one message and `apply` acts on it. The subscriber is the one a VERP token
names, and only a token signed with our key counts: a forged bounce, or one that merely quotes
an address or a Message-ID, is recorded and changes nothing. Webhook events (already verified
by their signature) name the address instead. Every message is recorded with what it was taken
to mean and what was done, so nothing that comes back is silently dropped.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime

from publisher.config import Settings
from publisher.inbound.parse import Feedback, Kind, parse
from publisher.store import Store
from publisher.store.inbound import (
    SOFT_BOUNCE,
    SUPPRESS,
    UNSUBSCRIBE,
    Effect,
    InboundEntry,
    Recorded,
    ScoreRule,
)
from publisher.verp import BOUNCE as BOUNCE_PURPOSE
from publisher.verp import UNSUBSCRIBE as UNSUB_PURPOSE
from publisher.verp import read_token

log = logging.getLogger("publisher.feedback")
MAX_RAW = 1_000_000
# Our Message-IDs: <newsletter.issue-number.slot.subscriber-id@domain> (see dispatch.composer).
_OUR_MESSAGE_ID = re.compile(r"<[a-z0-9_-]+\.\d+\.\d+\.(\d+)@[^>]+>")


@dataclass(frozen=True)
class Identity:
    subscriber_id: int | None = None
    issue_id: int | None = None
    verified: bool = False
    how: str = "none"


def identify(feedback: Feedback, secret_keys: tuple[str, ...]) -> Identity:
    """The subscriber a verified VERP token names; else, unverified, the one our Message-ID names."""
    wanted = UNSUB_PURPOSE if feedback.kind is Kind.UNSUBSCRIBE else BOUNCE_PURPOSE
    for token in feedback.tokens:
        found = read_token(secret_keys, token)
        if found is not None and found.purpose == wanted:
            return Identity(found.subscriber_id, found.issue_id, True, f"verp-{found.purpose}")
    how = "forged-token" if feedback.tokens else "none"
    match = _OUR_MESSAGE_ID.fullmatch(feedback.original_message_id)
    if match:
        return Identity(int(match[1]), None, False, f"{how}; message-id only")
    return Identity(None, None, False, how)


def decide(feedback: Feedback, identity: Identity, newsletter: str | None) -> Effect:
    """What to do, from what the message means and whether we can trust whom it names."""
    if feedback.kind is Kind.AUTO_REPLY:
        return Effect(note="auto-reply: never a bounce")
    if feedback.kind is Kind.UNKNOWN:
        return Effect(note="not understood: kept for an operator")
    if not identity.verified and identity.how.startswith("webhook:"):
        return Effect(note=f"no such subscriber ({identity.how}): not acted on")
    if not identity.verified:
        return Effect(note=f"no valid VERP token ({identity.how}): not acted on")
    if feedback.kind is Kind.BOUNCE:
        return Effect(SUPPRESS, reason="hard_bounce")
    if feedback.kind is Kind.COMPLAINT:
        return Effect(SUPPRESS, reason="complaint")
    if feedback.kind is Kind.SOFT_BOUNCE:
        return Effect(SOFT_BOUNCE)
    if newsletter is None:
        return Effect(note="the issue named by the token no longer exists")
    return Effect(UNSUBSCRIBE, newsletter=newsletter)  # "" unsubscribes from every newsletter


def apply(
    store: Store,
    feedback: Feedback,
    settings: Settings,
    now: datetime,
    *,
    source: str,
    raw: bytes = b"",
    digest: str = "",
    identity: Identity | None = None,
) -> Recorded:
    """Record `feedback` and act on it (once per `digest`)."""
    identity = identity or identify(feedback, settings.secret_keys)
    # A VERP token names an issue, hence its newsletter; a verified webhook event names none ("": all).
    newsletter = store.inbound.newsletter_of(identity.issue_id) if identity.issue_id is not None else ""
    effect = decide(feedback, identity, newsletter)
    entry = InboundEntry(
        digest=digest or hashlib.sha256(raw).hexdigest(),
        source=source,
        kind=str(feedback.kind),
        format=feedback.format,
        recipient=feedback.recipient,
        subscriber_id=identity.subscriber_id,
        issue_id=identity.issue_id,
        verified=identity.verified,
        status=feedback.status,
        diagnostic=feedback.diagnostic,
        sender=feedback.sender,
        subject=feedback.subject,
        raw=raw[:MAX_RAW].decode("utf-8", "replace"),  # the store makes every field storable
    )
    rule = ScoreRule(settings.inbound.soft_bounce_half_life, max(1, settings.delivery.soft_bounce_limit))
    recorded = store.inbound.record(entry, effect, now, rule)
    log.info(
        "%s %s %s (subscriber %s, %s): %s",
        source,
        feedback.kind,
        feedback.recipient or "-",
        identity.subscriber_id,
        identity.how,
        recorded.action,
    )
    return recorded


def receive(
    store: Store,
    settings: Settings,
    raw: bytes,
    now: datetime,
    *,
    source: str,
    envelope_to: str = "",
    keep_raw: bool = True,
) -> Recorded:
    """Parse one message that came back and act on it. `keep_raw=False` records it without its
    bytes (another recipient's record of the same delivery keeps them)."""
    feedback = parse(raw, envelope_to=envelope_to)
    digest = message_digest(raw, envelope_to)
    return apply(store, feedback, settings, now, source=source, raw=raw if keep_raw else b"", digest=digest)


def message_digest(raw: bytes, envelope_to: str) -> str:
    """What a message is recorded once by: its bytes and the address it was delivered to."""
    return hashlib.sha256(envelope_to.lower().encode() + b"\n" + raw).hexdigest()


def apply_event(
    store: Store, settings: Settings, feedback: Feedback, now: datetime, *, source: str, event_id: str
) -> Recorded:
    """An ESP webhook event, already verified by its signature: it names the address itself.

    No issue names a newsletter, so an ESP's unsubscribe is from everything we send.
    """
    subscriber_id = store.inbound.subscriber_id(feedback.recipient) if feedback.recipient else None
    identity = Identity(subscriber_id, None, subscriber_id is not None, source)
    digest = hashlib.sha256(f"{source}\n{event_id}".encode()).hexdigest()
    return apply(store, feedback, settings, now, source=source, digest=digest, identity=identity)
