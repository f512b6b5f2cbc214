"""The domain's plain values: what the store keeps and the pure core computes with."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class IssueState(StrEnum):
    """An issue's life; `ISSUE_TRANSITIONS` says which moves are allowed."""

    DRAFT = "draft"
    APPROVED = "approved"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"
    PAUSED = "paused"  # a send stopped by an operator or an error


class IssueKind(StrEnum):
    """A digest holds the articles new since the previous issue; an announcement is a one-off message."""

    DIGEST = "digest"
    ANNOUNCEMENT = "announcement"


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # none of the issue's articles is in the reader's topics: nothing sent


SUBSCRIBER_STATUSES = tuple(SubscriberStatus)
DELIVERY_STATES = tuple(DeliveryState)

# The issue state machine: which states each state may move to (the store enforces it).
ISSUE_TRANSITIONS: dict[IssueState, tuple[IssueState, ...]] = {
    IssueState.DRAFT: (IssueState.APPROVED, IssueState.CANCELLED),
    IssueState.APPROVED: (IssueState.SENDING, IssueState.CANCELLED),
    IssueState.SENDING: (IssueState.SENT, IssueState.PAUSED, IssueState.CANCELLED),
    IssueState.PAUSED: (IssueState.SENDING, IssueState.CANCELLED),
    IssueState.SENT: (),
    IssueState.CANCELLED: (),
}
# Before an issue starts sending, cancelling it returns its articles to the pool.
UNSTARTED_STATES = (IssueState.DRAFT, IssueState.APPROVED)


@dataclass(frozen=True)
class Article:
    """One article. `guid` is minted once when first stored and never changes.

    `origin` is the page a feed entry linked to ("" for articles whose page is ours); links to our
    own host are never stored: `publisher.links.article_url` computes them from `site.url`.
    """

    guid: str
    slug: str
    title: str
    summary_html: str
    content_html: str
    truncated: bool
    published: datetime
    updated: datetime
    authors: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    source: str = ""
    content_hash: str = ""
    first_seen: datetime | None = None
    origin: str = ""
    id: int | None = None


@dataclass(frozen=True)
class SourceState:
    """The validators a feed URL answered with, saved with the articles they vouch for."""

    source: str
    etag: str = ""
    last_modified: str = ""


@dataclass(frozen=True)
class Subscriber:
    """A subscriber as an import, a sign-up or an operator gives it to the store (no id yet)."""

    email: str
    name: str = ""
    status: str = "pending"
    newsletters: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    source: str = ""
    consent_at: datetime | None = None
    consent_text: str = ""
    created_at: datetime | None = None
    bounce_count: int = 0
    timezone: str = ""  # an IANA zone; "" means the newsletter's


@dataclass(frozen=True)
class StoredSubscriber(Subscriber):
    """A subscriber the store keeps, with its id."""

    id: int = field(kw_only=True)


@dataclass(frozen=True)
class PlannedIssue:
    """An issue as selection plans it for one slot, before the store keeps it (no id yet)."""

    newsletter: str
    number: int
    slot: datetime
    state: IssueState
    article_ids: tuple[int, ...] = ()
    overflow_ids: tuple[int, ...] = ()
    watermark: datetime | None = None
    subject: str = ""
    created_at: datetime | None = None
    sent_at: datetime | None = None
    kind: IssueKind = IssueKind.DIGEST
    preheader: str = ""  # an announcement's; a digest's comes from its template
    body: str = ""  # an announcement's Markdown

    @property
    def is_announcement(self) -> bool:
        return self.kind == IssueKind.ANNOUNCEMENT


@dataclass(frozen=True)
class Issue(PlannedIssue):
    """A stored issue of a newsletter: the articles chosen for one slot, with its ledger's id."""

    id: int = field(kw_only=True)


@dataclass(frozen=True)
class ImportReport:
    """What one import run did, for the CLI to print."""

    source: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0


@dataclass(frozen=True)
class Draft:
    """An article as an importer parsed it, before the store gives it a guid.

    `key` identifies the article across imports of any source (the slug for pages, the file's path
    or its `slug` for Markdown, the entry id for feeds); `published` is used only when the article
    is seen for the first time. `former_key`, when set, is the key older versions stored the same
    article under: an article found only by it is updated and takes the new key.
    """

    key: str
    slug: str
    title: str
    summary_html: str
    content_html: str
    truncated: bool
    published: datetime
    updated: datetime | None = None
    url: str = ""
    guid: str = ""
    authors: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    source: str = ""
    former_key: str = ""


# Per-recipient values are written into compiled output as placeholder tokens, then filled per
# message. The tokens carry a random nonce minted for each render, so imported content cannot
# write one (in any form: escaped, entity-encoded or split) and have a reader's address or signed
# links filled into a URL of its own.
PLACEHOLDER_KEYS = ("name", "email", "unsubscribe_url", "preferences_url")


def new_placeholders() -> dict[str, str]:
    """Placeholder tokens for one render: `@@EMAIL.<nonce>@@` and so on, unguessable by content."""
    nonce = secrets.token_hex(12).upper()
    return {key: f"@@{key.upper()}.{nonce}@@" for key in PLACEHOLDER_KEYS}


@dataclass(frozen=True)
class RenderedIssue:
    """An issue rendered once: HTML and text with its `placeholders` tokens still in them."""

    newsletter: str
    subject: str
    preheader: str
    html: str
    text: str
    view_url: str = ""
    trimmed: tuple[str, ...] = ()  # what the Gmail clip guard shortened or moved, for the operator
    placeholders: Mapping[str, str] = field(default_factory=dict)  # key -> this render's token
