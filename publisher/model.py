"""The domain's plain values: what the store keeps and the pure core computes with."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

SUBSCRIBER_STATUSES = ("pending", "confirmed", "unsubscribed", "bounced")
ISSUE_STATES = ("draft", "approved", "sending", "sent", "cancelled", "paused")
DELIVERY_STATES = ("pending", "sending", "delivered", "deferred", "failed", "cancelled")


@dataclass(frozen=True)
class Article:
    """One article. `guid` is minted once when first stored and never changes."""

    guid: str
    slug: str
    title: str
    url: str
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
    id: int | None = None


@dataclass(frozen=True)
class SourceState:
    """The validators a feed URL answered with, saved with the articles they vouch for."""

    source: str
    etag: str = ""
    last_modified: str = ""


@dataclass(frozen=True)
class Subscriber:
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
    id: int | None = None


@dataclass(frozen=True)
class Issue:
    """One issue of a newsletter: the articles chosen for one slot."""

    newsletter: str
    number: int
    slot: datetime
    state: str
    article_ids: tuple[int, ...] = ()
    overflow_ids: tuple[int, ...] = ()
    watermark: datetime | None = None
    subject: str = ""
    created_at: datetime | None = None
    sent_at: datetime | None = None
    id: int | None = None


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

    `key` identifies the article across imports of any source (the slug for pages and Markdown,
    the entry id for feeds); `published` is used only when the article is seen for the first time.
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
