"""The confirm-pending ledger: one row per pending address asked to confirm, pending → sending → sent.

The same discipline as the deliveries ledger: rows are queued once (the primary key is the
subscriber, so nobody is ever queued twice), leased in batches under a token, and marked sent
only after the server answered. A lease that runs out (the process died) makes its rows due again.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from publisher.store.schema import deliveries, reconfirmations, subscribers, subscriptions, suppressions

ASKED = ("sent", "failed", "cancelled")  # finished: never asked again


@dataclass(frozen=True)
class Asking:
    """One leased address, with what its confirmation link needs."""

    subscriber_id: int
    email: str
    name: str
    newsletters: tuple[str, ...]
    topics_json: str
    attempts: int  # including this one
    queued_at: datetime
    nonce: str
    token: str


@dataclass(frozen=True)
class Answer:
    subscriber_id: int
    token: str
    state: str  # sent | deferred | failed
    code: int | None = None
    detail: str = ""
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class Standing:
    """Where the pending addresses stand, for `confirm-pending`'s summary."""

    never_asked: int  # pending, and no confirm-pending run has finished with them
    waiting: int  # asked (the mail went out), still pending
    expired: int  # of `waiting`: asked before the link's expiry, so `--again` would ask them
    confirmed: int  # asked, and confirmed since
    failed: int  # the mail was refused, or bounced later
    no_newsletter: int = 0  # pending on no newsletter, never asked: confirming would subscribe them to nothing


def _refused(subscriber_id: int, email: str, answer: Answer, now: datetime) -> dict:
    """The suppression of an address whose confirmation mail the server refused (a 5xx): `smtp_bounce`,
    with the server's reply (`550 5.1.1 …`) as its evidence."""
    detail = answer.detail.strip()
    reply = detail if detail.startswith(f"{answer.code}") else f"{answer.code} {detail}".strip()
    return {
        "subscriber_id": subscriber_id,
        "email": email,
        "reason": "smtp_bounce",
        "at": now,
        "evidence": f"confirmation mail refused during the SMTP session: {reply}"[:1000],
        "newsletters": "[]",
        "lift_reason": "",
    }


def _in_newsletter(newsletter: str | None) -> ColumnElement[bool]:
    if not newsletter:
        return literal(True)
    return exists().where(subscriptions.c.subscriber_id == subscribers.c.id, subscriptions.c.newsletter == newsletter)


# confirming an address on no newsletter would subscribe it to nothing: such addresses are not asked
_ON_A_NEWSLETTER = exists().where(subscriptions.c.subscriber_id == subscribers.c.id)


class ReconfirmationStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @staticmethod
    def _not_asked(newsletter: str | None) -> tuple[ColumnElement[bool], ...]:
        finished = exists().where(
            reconfirmations.c.subscriber_id == subscribers.c.id, reconfirmations.c.state.in_(ASKED)
        )
        return subscribers.c.status == "pending", ~finished, _in_newsletter(newsletter), _ON_A_NEWSLETTER

    def not_asked(self, newsletter: str | None) -> list[str]:
        """Pending addresses that no confirm-pending run has finished with, oldest first."""
        query = select(subscribers.c.email).where(*self._not_asked(newsletter)).order_by(subscribers.c.id)
        with self.engine.connect() as connection:
            return list(connection.scalars(query))

    def queue(self, newsletter: str | None, now: datetime) -> int:
        """Add every pending address not queued before; returns how many were added."""
        fresh = select(
            subscribers.c.id,
            subscribers.c.email,
            literal("pending"),
            literal(0),
            literal(""),
            literal(""),
            literal(now, reconfirmations.c.queued_at.type),
            literal(now, reconfirmations.c.updated_at.type),
        ).where(
            subscribers.c.status == "pending",
            _in_newsletter(newsletter),
            _ON_A_NEWSLETTER,
            ~exists().where(reconfirmations.c.subscriber_id == subscribers.c.id),
        )
        columns = [
            "subscriber_id",
            "email",
            "state",
            "attempts",
            "lease_token",
            "last_error",
            "queued_at",
            "updated_at",
        ]
        with self.engine.begin() as connection:
            before = connection.scalar(select(func.count()).select_from(reconfirmations)) or 0
            connection.execute(insert(reconfirmations).from_select(columns, fresh))
            return (connection.scalar(select(func.count()).select_from(reconfirmations)) or 0) - before

    def lease(self, newsletter: str | None, *, limit: int, now: datetime, lease_for: timedelta) -> list[Asking]:
        """Up to `limit` due rows, marked sending; each gets a fresh nonce on its subscriber.

        Rows whose subscriber is no longer pending (confirmed on the web meanwhile, unsubscribed,
        suppressed) are cancelled instead.
        """
        due = or_(
            reconfirmations.c.state == "pending",
            and_(reconfirmations.c.state == "deferred", reconfirmations.c.next_attempt_at <= now),
            and_(reconfirmations.c.state == "sending", reconfirmations.c.lease_until <= now),
        )
        query = (
            select(
                reconfirmations.c.subscriber_id,
                reconfirmations.c.attempts,
                reconfirmations.c.queued_at,
                subscribers.c.email,
                subscribers.c.name,
                subscribers.c.status,
                subscribers.c.topics,
            )
            .select_from(reconfirmations.join(subscribers, subscribers.c.id == reconfirmations.c.subscriber_id))
            .where(due, _in_newsletter(newsletter))
            .order_by(reconfirmations.c.subscriber_id)
            .limit(limit)
        )
        token = secrets.token_hex(8)
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=reconfirmations)
            rows = connection.execute(query).all()
            gone = [row.subscriber_id for row in rows if row.status != "pending"]
            keep = [row for row in rows if row.status == "pending"]
            nonces = {row.subscriber_id: secrets.token_urlsafe(16) for row in keep}
            self._mark(connection, gone, state="cancelled", updated_at=now, last_error="no longer pending")
            self._mark(
                connection,
                list(nonces),
                state="sending",
                lease_until=now + lease_for,
                lease_token=token,
                attempts=reconfirmations.c.attempts + 1,
                updated_at=now,
            )
            if nonces:
                connection.execute(
                    update(subscribers)
                    .where(subscribers.c.id == bindparam("b_id"))
                    .values(confirm_nonce=bindparam("b_nonce"), confirmation_sent_at=now),
                    [{"b_id": key, "b_nonce": nonce} for key, nonce in nonces.items()],
                )
            newsletters = self._newsletters(connection, list(nonces))
        return [
            Asking(
                row.subscriber_id,
                row.email,
                row.name,
                newsletters.get(row.subscriber_id, ()),
                row.topics or "[]",
                row.attempts + 1,
                row.queued_at,
                nonces[row.subscriber_id],
                token,
            )
            for row in keep
        ]

    @staticmethod
    def _newsletters(connection: Connection, ids: list[int]) -> dict[int, tuple[str, ...]]:
        found: dict[int, list[str]] = {}
        if ids:
            query = select(subscriptions.c.subscriber_id, subscriptions.c.newsletter).where(
                subscriptions.c.subscriber_id.in_(ids)
            )
            for subscriber_id, name in connection.execute(query):
                found.setdefault(subscriber_id, []).append(name)
        return {key: tuple(sorted(names)) for key, names in found.items()}

    @staticmethod
    def _mark(connection: Connection, ids: Sequence[int], **values: object) -> None:
        if ids:
            connection.execute(
                update(reconfirmations).where(reconfirmations.c.subscriber_id.in_(list(ids))).values(**values)
            )

    def record(self, answers: Sequence[Answer], now: datetime) -> int:
        """Write the server's answers (only rows still leased under the same token); a 5xx suppresses."""
        if not answers:
            return 0
        statement = (
            update(reconfirmations)
            .where(
                reconfirmations.c.subscriber_id == bindparam("b_id"),
                reconfirmations.c.lease_token == bindparam("b_token"),
                reconfirmations.c.state == "sending",
            )
            .values(
                state=bindparam("b_state"),
                last_code=bindparam("b_code"),
                last_error=bindparam("b_detail"),
                next_attempt_at=bindparam("b_next"),
                sent_at=bindparam("b_sent"),
                lease_until=None,
                lease_token="",
                updated_at=now,
            )
        )
        rows = [
            {
                "b_id": answer.subscriber_id,
                "b_token": answer.token,
                "b_state": answer.state,
                "b_code": answer.code,
                "b_detail": answer.detail[:1000],
                "b_next": answer.next_attempt_at,
                "b_sent": now if answer.state == "sent" else None,
            }
            for answer in answers
        ]
        bounced = {a.subscriber_id: a for a in answers if a.state == "failed" and (a.code or 0) >= 500}
        with self.engine.begin() as connection:
            written = connection.execute(statement, rows).rowcount
            if bounced:
                stopped = connection.execute(
                    select(subscribers.c.id, subscribers.c.email).where(
                        subscribers.c.id.in_(list(bounced)), subscribers.c.status == "pending"
                    )
                ).all()
                connection.execute(
                    update(subscribers)
                    .where(subscribers.c.id.in_(list(bounced)), subscribers.c.status == "pending")
                    .values(status="bounced", bounce_count=subscribers.c.bounce_count + 1, updated_at=now)
                )
                if stopped:  # on the suppression list with the server's reply as its evidence
                    connection.execute(
                        insert(suppressions), [_refused(row.id, row.email, bounced[row.id], now) for row in stopped]
                    )
        return written

    def release(self, asking: Sequence[Asking], now: datetime) -> int:
        """Give back leased rows never handed to the transport: pending again, the attempt undone."""
        if not asking:
            return 0
        with self.engine.begin() as connection:
            return connection.execute(
                update(reconfirmations)
                .where(
                    reconfirmations.c.subscriber_id.in_([row.subscriber_id for row in asking]),
                    reconfirmations.c.lease_token == asking[0].token,
                    reconfirmations.c.state == "sending",
                )
                .values(
                    state="pending",
                    lease_until=None,
                    lease_token="",
                    attempts=reconfirmations.c.attempts - 1,
                    updated_at=now,
                )
            ).rowcount

    def standing(self, newsletter: str | None, asked_before: datetime) -> Standing:
        """The counts of `Standing`; `asked_before`: a link sent before this has expired."""
        joined = reconfirmations.join(subscribers, subscribers.c.id == reconfirmations.c.subscriber_id)
        query = (
            select(
                reconfirmations.c.state,
                subscribers.c.status,
                func.count(),
                func.sum(case((reconfirmations.c.sent_at <= asked_before, 1), else_=0)),
            )
            .select_from(joined)
            .where(_in_newsletter(newsletter))
            .group_by(reconfirmations.c.state, subscribers.c.status)
        )
        waiting = expired = confirmed = failed = 0
        never = select(func.count()).select_from(subscribers).where(*self._not_asked(newsletter))
        nowhere = (
            select(func.count())
            .select_from(subscribers)
            .where(
                subscribers.c.status == "pending",
                ~_ON_A_NEWSLETTER,
                ~exists().where(reconfirmations.c.subscriber_id == subscribers.c.id),
            )
        )
        with self.engine.connect() as connection:
            never_asked = connection.scalar(never) or 0
            no_newsletter = 0 if newsletter else connection.scalar(nowhere) or 0
            for state, status, count, old in connection.execute(query):
                if state == "sent" and status == "pending":
                    waiting += count
                    expired += int(old or 0)
                elif state == "sent" and status == "confirmed":
                    confirmed += count
                elif state == "failed" or (state == "sent" and status == "bounced"):
                    failed += count  # refused at once, or bounced later (a DSN to its VERP sender)
        return Standing(never_asked, waiting, expired, confirmed, failed, no_newsletter)

    @staticmethod
    def _expired(newsletter: str | None, asked_before: datetime) -> Select:
        """Still-pending addresses asked before `asked_before`: id and email."""
        return (
            select(subscribers.c.id, subscribers.c.email)
            .select_from(reconfirmations.join(subscribers, subscribers.c.id == reconfirmations.c.subscriber_id))
            .where(
                reconfirmations.c.state == "sent",
                reconfirmations.c.sent_at <= asked_before,
                subscribers.c.status == "pending",
                _in_newsletter(newsletter),
            )
            .order_by(subscribers.c.id)
        )

    def expired(self, newsletter: str | None, asked_before: datetime) -> list[str]:
        """Still-pending addresses asked before `asked_before` (what `ask_again` would queue)."""
        with self.engine.connect() as connection:
            return [row.email for row in connection.execute(self._expired(newsletter, asked_before))]

    @staticmethod
    def _unanswered(asked_before: datetime) -> ColumnElement[bool]:
        """Pending and never consented; asked by a confirm-pending run before `asked_before` and
        sent no link since (by a run or a sign-up on the web); never sent anything else."""
        asked = exists().where(
            reconfirmations.c.subscriber_id == subscribers.c.id,
            reconfirmations.c.state == "sent",
            reconfirmations.c.sent_at <= asked_before,
        )
        return and_(
            subscribers.c.status == "pending",
            subscribers.c.consent_at.is_(None),
            func.coalesce(subscribers.c.confirmation_sent_at, subscribers.c.created_at) <= asked_before,
            asked,
            ~exists().where(deliveries.c.subscriber_id == subscribers.c.id),
        )

    def unanswered(self, asked_before: datetime) -> list[str]:
        """What `purge_unanswered` would delete, oldest first."""
        query = select(subscribers.c.email).where(self._unanswered(asked_before)).order_by(subscribers.c.id)
        with self.engine.connect() as connection:
            return list(connection.scalars(query))

    def purge_unanswered(self, asked_before: datetime) -> list[str]:
        """Delete the pending addresses whose confirmation link, sent before `asked_before`, has run
        out unanswered, with their subscriptions and ledger rows; returns them. The conditions are
        those of the DELETE itself, so one who confirms meanwhile is never deleted."""
        purge = delete(subscribers).where(self._unanswered(asked_before)).returning(subscribers.c.email)
        with self.engine.begin() as connection:
            return sorted(connection.scalars(purge))

    def ask_again(self, newsletter: str | None, *, asked_before: datetime, now: datetime) -> int:
        """Queue once more the addresses asked before `asked_before` that are still pending (their
        link has expired); each is then sent one mail by the run, like a first time. Returns how many."""
        still_pending = exists().where(
            subscribers.c.id == reconfirmations.c.subscriber_id, subscribers.c.status == "pending"
        )
        in_newsletter = exists().where(subscribers.c.id == reconfirmations.c.subscriber_id, _in_newsletter(newsletter))
        with self.engine.begin() as connection:
            return connection.execute(
                update(reconfirmations)
                .where(
                    reconfirmations.c.state == "sent",
                    reconfirmations.c.sent_at <= asked_before,
                    still_pending,
                    in_newsletter,
                )
                .values(state="pending", attempts=0, queued_at=now, updated_at=now, last_code=None, last_error="")
            ).rowcount

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            query = select(reconfirmations.c.state, func.count()).group_by(reconfirmations.c.state)
            found: dict[str, int] = dict(connection.execute(query).all())
        return {
            state: found.get(state, 0) for state in ("pending", "sending", "deferred", "sent", "failed", "cancelled")
        }
