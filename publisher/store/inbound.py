"""Mail that came back, what it was taken to mean, and the suppression list it feeds.

`record` writes one inbound message and applies its effect in the same transaction, so a message
is acted on exactly once however often it is read (its digest is unique).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping

from publisher.store.schema import (
    bounce_scores,
    inbound_messages,
    inserted_id,
    issues,
    opt_outs,
    subscribers,
    subscriptions,
    suppressions,
    webhook_nonces,
)

SUPPRESS = "suppress"
UNSUBSCRIBE = "unsubscribe"  # one newsletter (`Effect.newsletter`), or every one when it is empty
SOFT_BOUNCE = "soft_bounce"
NOTHING = "nothing"
_ACTIVE = ("pending", "confirmed")
# How long a mail server keeps warning about one delayed message: its queue lifetime (Postfix and
# Exim: 5 and 4 days by default; a week at the most seen), with room to spare.
REPEATS_WITHIN = timedelta(days=30)
# What no column may hold: NUL (PostgreSQL refuses it), the other C0 and C1 controls and DEL
# (terminal escapes when an operator lists them), and lone surrogates (no encoder writes them).
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# What no one-line field holds either: the bidi controls that make a listed address or subject
# read otherwise than it is (U+202E "right-to-left override" and the rest). The raw text keeps
# them, and `inbound show` shows them as <U+202E>.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_BREAKS = re.compile("[\t\n\r]+")
# Each text column's length limit (a column not named: unlimited); `_MULTI_LINE` keep line breaks and tabs.
_LIMITS = {
    "source": 32,
    "kind": 16,
    "format": 32,
    "recipient": 320,
    "status": 16,
    "sender": 320,
    "subject": 998,
    "diagnostic": 2000,
}
_MULTI_LINE = {"raw"}


def storable(text: str, limit: int | None = None, *, multi_line: bool = False) -> str:
    """`text` as a column can hold it whatever arrived: no control characters (a multi-line field
    keeps tab, LF and CR; a one-line field has them as spaces, and no bidi controls), cut to
    `limit` characters."""
    text = text if multi_line else _BIDI.sub("", _BREAKS.sub(" ", text))
    return _CONTROLS.sub("", text)[:limit]


@dataclass(frozen=True)
class InboundEntry:
    """One message (or webhook event) as it will be kept."""

    digest: str
    source: str
    kind: str
    format: str = ""
    recipient: str = ""
    subscriber_id: int | None = None
    issue_id: int | None = None
    verified: bool = False
    status: str = ""
    diagnostic: str = ""
    sender: str = ""
    subject: str = ""
    raw: str = ""

    def storable(self) -> InboundEntry:
        """This entry with every text field as its column can hold it."""
        cleaned: dict[str, Any] = {
            spec.name: storable(value, _LIMITS.get(spec.name), multi_line=spec.name in _MULTI_LINE)
            for spec in fields(self)
            if isinstance(value := getattr(self, spec.name), str)
        }
        return replace(self, **cleaned)


@dataclass(frozen=True)
class Effect:
    """What the message asks of the subscriber it verifiably names."""

    action: str = NOTHING
    reason: str = ""  # for SUPPRESS: hard_bounce | complaint
    newsletter: str = ""  # for UNSUBSCRIBE
    note: str = ""  # for NOTHING: why


@dataclass(frozen=True)
class Recorded:
    id: int
    kind: str
    action: str  # what was done, in words
    duplicate: bool = False

    @property
    def outcome(self) -> str:
        """What was done, as one of OUTCOMES (for counting)."""
        if self.duplicate:
            return "already recorded"
        for prefix, outcome in _OUTCOME_PREFIXES:
            if self.action.startswith(prefix):
                return outcome
        return "kept for an operator" if self.kind == "unknown" else "not acted on"


# What a recorded message led to, for summaries: the prefix of its action, in words.
_OUTCOME_PREFIXES = (("suppressed", "suppressed"), ("unsubscribed", "unsubscribed"), ("soft bounce scored", "scored"))
OUTCOMES = ("suppressed", "unsubscribed", "scored", "kept for an operator", "not acted on", "already recorded")


@dataclass(frozen=True)
class Suppression:
    email: str
    reason: str
    at: datetime
    evidence: str


@dataclass(frozen=True)
class ScoreRule:
    half_life: timedelta
    limit: int


class InboundStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- recording ------------------------------------------------------------------------

    def record(self, entry: InboundEntry, effect: Effect, now: datetime, rule: ScoreRule) -> Recorded:
        """Keep `entry` and apply `effect`, once: a message already recorded changes nothing."""
        entry = entry.storable()
        with self.engine.begin() as connection:
            seen = connection.scalar(select(inbound_messages.c.id).where(inbound_messages.c.digest == entry.digest))
            if seen is not None:
                return Recorded(seen, entry.kind, "already recorded: nothing done", duplicate=True)
            action = self._apply(connection, entry, effect, now, rule)
            values = {**entry.__dict__, "received_at": now, "action": action}
            row_id = inserted_id(connection.execute(insert(inbound_messages).values(**values)))
        return Recorded(row_id, entry.kind, action)

    def claim_nonce(self, nonce: str, now: datetime, keep: timedelta) -> bool:
        """True the first time `nonce` is seen (nonces older than `keep` are forgotten)."""
        nonce = storable(nonce, 320)
        with self.engine.begin() as connection:
            connection.execute(delete(webhook_nonces).where(webhook_nonces.c.seen_at < now - keep))
            if connection.scalar(select(webhook_nonces.c.nonce).where(webhook_nonces.c.nonce == nonce)) is not None:
                return False
            connection.execute(insert(webhook_nonces).values(nonce=nonce, seen_at=now))
        return True

    def release_nonce(self, nonce: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(webhook_nonces).where(webhook_nonces.c.nonce == storable(nonce, 320)))

    def newsletter_of(self, issue_id: int) -> str | None:
        with self.engine.connect() as connection:
            return connection.scalar(select(issues.c.newsletter).where(issues.c.id == issue_id))

    def subscriber_id(self, email: str) -> int | None:
        with self.engine.connect() as connection:
            return connection.scalar(
                select(subscribers.c.id).where(subscribers.c.email == storable(email.lower(), 320))
            )

    def messages(self, kind: str | None = None, limit: int = 100, *, with_raw: bool = True) -> list[dict]:
        """The newest `limit` messages (of `kind`), newest first; `with_raw=False` leaves the raw text out."""
        columns = [column for column in inbound_messages.c if with_raw or column.name != "raw"]
        query = select(*columns).order_by(inbound_messages.c.id.desc()).limit(limit)
        if kind:
            query = query.where(inbound_messages.c.kind == storable(kind, 16))
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def message(self, message_id: int) -> dict | None:
        """One recorded message, raw text included."""
        with self.engine.connect() as connection:
            row = connection.execute(select(inbound_messages).where(inbound_messages.c.id == message_id)).mappings()
            found = row.first()
        return dict(found) if found is not None else None

    def _apply(
        self, connection: Connection, entry: InboundEntry, effect: Effect, now: datetime, rule: ScoreRule
    ) -> str:
        if effect.action == NOTHING or entry.subscriber_id is None:
            return f"nothing: {effect.note or 'no subscriber identified'}"
        person = (
            connection.execute(select(subscribers).where(subscribers.c.id == entry.subscriber_id)).mappings().first()
        )
        if person is None:
            return "nothing: the subscriber no longer exists"
        evidence = f"{entry.source} {entry.kind} {entry.status} {entry.diagnostic}".strip()
        if effect.action == UNSUBSCRIBE:
            return self._unsubscribe(connection, person, storable(effect.newsletter), now)
        if effect.action == SOFT_BOUNCE:
            return self._soft_bounce(connection, person, entry, evidence, now, rule)
        newsletters = self._newsletters(connection, person["id"])
        if effect.reason == "complaint":
            self._unsubscribe(connection, person, "", now)
        else:
            self._count_bounce(connection, person["id"])
        return self._suppress(connection, person, effect.reason, evidence, now, newsletters)

    def _soft_bounce(
        self,
        connection: Connection,
        person: RowMapping,
        entry: InboundEntry,
        evidence: str,
        now: datetime,
        rule: ScoreRule,
    ) -> str:
        """Scored once per issue: a slow mailbox's repeated "still trying" notices for one
        message are one soft bounce. A confirmation or welcome mail (a VERP token naming no
        issue) counts once within REPEATS_WITHIN, however many of them are delayed. An ESP's
        webhook event names no issue either, and each counts. The score shown (2 decimals) is
        the one held to the limit."""
        if entry.issue_id is not None and self._counted(connection, person["id"], entry.issue_id, now):
            return "nothing: a soft bounce for this issue was already counted"
        if (
            entry.issue_id is None
            and not entry.source.startswith("webhook:")
            and self._counted(connection, person["id"], None, now)
        ):
            return "nothing: a soft bounce for a confirmation or welcome mail was already counted"
        self._count_bounce(connection, person["id"])
        score = round(self._score(connection, person["id"], now, rule.half_life), 2)
        if score < rule.limit:
            return f"soft bounce scored: {score:.2f} of {rule.limit}"
        newsletters = self._newsletters(connection, person["id"])
        return self._suppress(connection, person, "soft_bounces", f"score {score:.2f}: {evidence}", now, newsletters)

    @staticmethod
    def _counted(connection: Connection, subscriber_id: int, issue_id: int | None, now: datetime) -> bool:
        """Whether a verified soft bounce naming this subscriber and issue (None: a mail of no
        issue, by mail, not by webhook) was recorded lately (within REPEATS_WITHIN: the index on
        kind and time keeps the look-up short)."""
        same_mail = (
            inbound_messages.c.issue_id == issue_id
            if issue_id is not None
            else and_(inbound_messages.c.issue_id.is_(None), ~inbound_messages.c.source.startswith("webhook:"))
        )
        return (
            connection.scalar(
                select(inbound_messages.c.id)
                .where(
                    inbound_messages.c.subscriber_id == subscriber_id,
                    same_mail,
                    inbound_messages.c.kind == SOFT_BOUNCE,
                    inbound_messages.c.received_at >= now - REPEATS_WITHIN,
                    inbound_messages.c.verified.is_(True),
                )
                .limit(1)
            )
            is not None
        )

    @staticmethod
    def _count_bounce(connection: Connection, subscriber_id: int) -> None:
        """`bounce_count` counts bounces since the last delivery, whether refused in the SMTP
        session or reported later (a DSN, an ESP's event); a delivery resets it."""
        connection.execute(
            update(subscribers)
            .where(subscribers.c.id == subscriber_id)
            .values(bounce_count=subscribers.c.bounce_count + 1)
        )

    @staticmethod
    def _newsletters(connection: Connection, subscriber_id: int) -> list[str]:
        return sorted(
            connection.scalars(select(subscriptions.c.newsletter).where(subscriptions.c.subscriber_id == subscriber_id))
        )

    def _unsubscribe(self, connection: Connection, person: RowMapping, newsletter: str, now: datetime) -> str:
        have = self._newsletters(connection, person["id"])
        names = [newsletter] if newsletter else have
        connection.execute(
            delete(subscriptions).where(
                subscriptions.c.subscriber_id == person["id"], subscriptions.c.newsletter.in_(names)
            )
        )
        connection.execute(
            delete(opt_outs).where(opt_outs.c.subscriber_id == person["id"], opt_outs.c.newsletter.in_(names))
        )
        if names:
            connection.execute(
                insert(opt_outs), [{"subscriber_id": person["id"], "newsletter": name, "at": now} for name in names]
            )
        if not set(have) - set(names) and person["status"] in _ACTIVE:
            connection.execute(
                update(subscribers)
                .where(subscribers.c.id == person["id"])
                .values(status="unsubscribed", updated_at=now)
            )
        return f"unsubscribed from {', '.join(names) if newsletter else 'every newsletter'}"

    def _suppress(
        self,
        connection: Connection,
        person: RowMapping,
        reason: str,
        evidence: str,
        now: datetime,
        newsletters: list[str],
    ) -> str:
        active = connection.scalar(
            select(suppressions.c.reason).where(
                suppressions.c.subscriber_id == person["id"], suppressions.c.lifted_at.is_(None)
            )
        )
        if active is not None:
            return f"nothing: already suppressed ({active})"
        connection.execute(
            insert(suppressions).values(
                subscriber_id=person["id"],
                email=person["email"],
                reason=reason,
                at=now,
                evidence=storable(evidence, 1000),
                newsletters=json.dumps(newsletters),
                lift_reason="",
            )
        )
        if reason != "complaint" and person["status"] in _ACTIVE:
            connection.execute(
                update(subscribers).where(subscribers.c.id == person["id"]).values(status="bounced", updated_at=now)
            )
        return f"suppressed ({reason})"

    @staticmethod
    def _score(connection: Connection, subscriber_id: int, now: datetime, half_life: timedelta) -> float:
        """Soft bounces add 1; the score halves every `half_life` without one."""
        row = connection.execute(select(bounce_scores).where(bounce_scores.c.subscriber_id == subscriber_id)).first()
        if row is None:
            connection.execute(insert(bounce_scores).values(subscriber_id=subscriber_id, score=1.0, at=now))
            return 1.0
        score = _decayed(row.score, now - row.at, half_life) + 1.0
        connection.execute(
            update(bounce_scores).where(bounce_scores.c.subscriber_id == subscriber_id).values(score=score, at=now)
        )
        return score

    def score(self, subscriber_id: int, now: datetime, half_life: timedelta) -> float:
        """The decayed soft-bounce score as of `now` (0 without soft bounces)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(bounce_scores).where(bounce_scores.c.subscriber_id == subscriber_id)
            ).first()
        if row is None:
            return 0.0
        return _decayed(row.score, now - row.at, half_life)

    # --- the suppression list --------------------------------------------------------------

    def suppressed(self) -> list[Suppression]:
        """Active suppressions, plus addresses bounced during an SMTP session (no inbound message)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(suppressions.c.email, suppressions.c.reason, suppressions.c.at, suppressions.c.evidence)
                .where(suppressions.c.lifted_at.is_(None))
                .order_by(suppressions.c.at, suppressions.c.id)
            ).all()
            listed = {row.email for row in rows}
            bounced = connection.execute(
                select(subscribers.c.email, subscribers.c.updated_at)
                .where(subscribers.c.status == "bounced")
                .order_by(subscribers.c.id)
            ).all()
        found = [Suppression(row.email, row.reason, row.at, row.evidence) for row in rows]
        found += [
            Suppression(row.email, "smtp_bounce", row.updated_at, "refused during the SMTP session")
            for row in bounced
            if row.email not in listed
        ]
        return found


def _decayed(score: float, elapsed: timedelta, half_life: timedelta) -> float:
    """`score` halved for every `half_life` in `elapsed` (a zero half-life forgets at once)."""
    if half_life.total_seconds() <= 0:
        return 0.0
    return score * 0.5 ** (max(0.0, elapsed.total_seconds()) / half_life.total_seconds())
