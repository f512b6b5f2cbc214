"""The deliveries ledger: one row per (issue, recipient), pending → sending → delivered | deferred | failed.

Rows are leased in batches (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: every transaction is
`BEGIN IMMEDIATE`, so leasers queue) by a worker, whose id is the row's `lease_token` (its owner),
and each outcome is written only after the server replied. Rows of a worker known to be dead
(`owners` + `reclaim`) are taken back at once; a lease that expires (its worker hung) makes the
row eligible again. Starting an issue and
freezing its audience happen in one transaction; so do recording outcomes and counting bounces.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from publisher.store.schema import deliveries, inbound_messages, issues, subscribers, subscriptions

OPEN_STATES = ("pending", "sending", "deferred")
_SUBSCRIBED = "confirmed"


@dataclass(frozen=True)
class Leased:
    """One recipient handed to a worker until `lease_until`; `token` proves the lease is still ours."""

    subscriber_id: int
    email: str
    name: str
    attempts: int  # including this one
    queued_at: datetime
    token: str
    topics: str = "[]"  # the reader's topics when the audience was frozen: which edition they get
    bounce_count: int = 0  # the subscriber's when leased: a delivery resets it when above 0


@dataclass(frozen=True)
class Outcome:
    """What to write for one leased row once the server has answered."""

    subscriber_id: int
    token: str
    state: str  # delivered | deferred | failed
    code: int | None = None
    status: str = ""
    detail: str = ""
    next_attempt_at: datetime | None = None
    bounce: str = ""  # "" | "hard" | "soft": counts against the subscriber
    bounce_count: int = 0  # the subscriber's when leased (a delivery resets it only when above 0)


@dataclass(frozen=True)
class Recipient:
    """One member of a newsletter's audience."""

    subscriber_id: int
    email: str
    name: str
    topics: str = "[]"


_RECORD = (
    update(deliveries)
    .where(
        deliveries.c.issue_id == bindparam("b_issue"),
        deliveries.c.subscriber_id == bindparam("b_id"),
        deliveries.c.lease_token == bindparam("b_token"),
        deliveries.c.state == "sending",
    )
    .values(
        state=bindparam("b_state"),
        last_code=bindparam("b_code"),
        last_status=bindparam("b_status"),
        last_error=bindparam("b_detail"),
        next_attempt_at=bindparam("b_next"),
        delivered_at=bindparam("b_delivered"),
        lease_until=None,
        lease_token="",
        updated_at=bindparam("b_now"),
    )
)


def _record_values(issue_id: int, outcome: Outcome, now: datetime) -> dict[str, Any]:
    return {
        "b_issue": issue_id,
        "b_id": outcome.subscriber_id,
        "b_token": outcome.token,
        "b_state": outcome.state,
        "b_code": outcome.code,
        "b_status": outcome.status[:16],
        "b_detail": outcome.detail[:1000],
        "b_next": outcome.next_attempt_at,
        "b_delivered": now if outcome.state == "delivered" else None,
        "b_now": now,
    }


# The same UPDATE as _RECORD, for the driver directly: a send writes every outcome through it.
_RECORD_SQLITE = (
    "UPDATE deliveries SET state = ?, last_code = ?, last_status = ?, last_error = ?, next_attempt_at = ?,"
    " delivered_at = ?, lease_until = NULL, lease_token = '', updated_at = ?"
    " WHERE issue_id = ? AND subscriber_id = ? AND lease_token = ? AND state = 'sending'"
)

_RECORD_POSTGRES = _RECORD_SQLITE.replace("?", "%s")


def _write_sqlite(driver: Any, rows: list[tuple]) -> int:
    """`_RECORD_SQLITE` for every row in one BEGIN IMMEDIATE transaction on SQLite's own connection
    (the SQLAlchemy connection holding it is idle between writes)."""
    cursor = driver.cursor()
    try:
        cursor.execute("BEGIN IMMEDIATE")
        try:
            cursor.executemany(_RECORD_SQLITE, rows)
            written = cursor.rowcount
            cursor.execute("COMMIT")
        except BaseException:
            with suppress(Exception):  # the error that got us here is the one to report
                cursor.execute("ROLLBACK")
            raise
        return written
    finally:
        cursor.close()


def _write_postgres(driver: Any, rows: list[tuple]) -> int:
    """`_RECORD_SQLITE` (in psycopg's placeholders) for every row, in one pipelined round trip on
    a connection in autocommit: each row is committed on its own."""
    with driver.cursor() as cursor:
        cursor.executemany(_RECORD_POSTGRES, rows)
        return cursor.rowcount


def _touches_subscribers(outcomes: Sequence[Outcome]) -> bool:
    """Whether writing these outcomes changes a subscriber's bounce count too."""
    return any(o.bounce or (o.state == "delivered" and o.bounce_count) for o in outcomes)


def _audience_of(newsletter: str) -> tuple[ColumnElement[bool], ...]:
    """Confirmed subscribers of `newsletter`: the one definition of an audience."""
    return (subscriptions.c.newsletter == newsletter, subscribers.c.status == _SUBSCRIBED)


@cache
def _due_kinds() -> tuple[ColumnElement[bool], ...]:
    """The rows a lease may take, by kind: expired leases (not the leaser's own), due retries, due fresh rows."""
    now = bindparam("c_now", type_=deliveries.c.updated_at.type)
    return (
        and_(
            deliveries.c.state == "sending",
            deliveries.c.lease_until <= now,
            deliveries.c.lease_token != bindparam("c_owner"),
        ),
        and_(deliveries.c.state == "deferred", deliveries.c.next_attempt_at <= now),
        and_(deliveries.c.state == "pending", or_(deliveries.c.due_at.is_(None), deliveries.c.due_at <= now)),
    )


@cache
def _candidate_queries(postgres: bool) -> tuple[Select, ...]:
    """The three lease queries of `DeliveryStore._candidates`, built once (a send leases every batch)."""
    eligible = and_(
        subscribers.c.status == _SUBSCRIBED,
        exists().where(
            subscriptions.c.subscriber_id == deliveries.c.subscriber_id,
            subscriptions.c.newsletter == bindparam("c_newsletter"),
        ),
    )
    queries = []
    for kind in _due_kinds():
        query = (
            select(
                deliveries.c.subscriber_id,
                deliveries.c.email,
                deliveries.c.name,
                deliveries.c.attempts,
                deliveries.c.queued_at,
                deliveries.c.topics,
                subscribers.c.bounce_count,
                eligible.label("eligible"),
            )
            .select_from(deliveries.join(subscribers, subscribers.c.id == deliveries.c.subscriber_id))
            .where(deliveries.c.issue_id == bindparam("c_issue"), kind)
            .limit(bindparam("c_limit"))
        )
        if postgres:
            query = query.with_for_update(skip_locked=True, of=deliveries)
        queries.append(query)
    return tuple(queries)


_RETURNED = {"bounce": "bounced", "soft_bounce": "soft_bounce", "complaint": "complained"}
_SOURCE = {"bounce": "dsn", "soft_bounce": "dsn", "complaint": "complaint"}


def _came_back(issue_id: int) -> Select:
    """The issue's verified bounces and complaints in `inbound_messages`, shaped as failures."""
    message = inbound_messages
    return (
        select(
            func.coalesce(subscribers.c.email, message.c.recipient).label("email"),
            message.c.kind.label("state"),
            null().label("attempts"),
            null().label("last_code"),
            message.c.status.label("last_status"),
            message.c.diagnostic.label("last_error"),
            message.c.received_at.label("updated_at"),
            null().label("next_attempt_at"),
        )
        .select_from(message.outerjoin(subscribers, subscribers.c.id == message.c.subscriber_id))
        .where(message.c.issue_id == issue_id, message.c.verified.is_(True), message.c.kind.in_(list(_RETURNED)))
        .order_by(message.c.kind, func.coalesce(subscribers.c.email, message.c.recipient), message.c.id)
    )


class DeliveryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- starting -------------------------------------------------------------------------------

    def start(self, issue_id: int, now: datetime, due: Callable[[str], datetime | None] | None = None) -> int | None:
        """Move an approved issue to sending and freeze its audience, in one transaction.

        Returns how many recipients were frozen, or None if the issue had already started (its
        audience is never extended) or is not approved. `due` (local-time delivery) gives the
        time each reader's wave is due from their time zone ("" for none); rows wait until then.
        """
        with self.engine.begin() as connection:
            started = connection.execute(
                update(issues)
                .where(issues.c.id == issue_id, issues.c.state == "approved")
                .values(state="sending", started_at=func.coalesce(issues.c.started_at, now))
            ).rowcount
            if not started:
                return None
            newsletter = connection.execute(select(issues.c.newsletter).where(issues.c.id == issue_id)).scalar_one()
            frozen = self._freeze(connection, issue_id, newsletter, now)
            if due is not None:
                self._plan_waves(connection, issue_id, due)
            return frozen

    @staticmethod
    def _plan_waves(connection: Connection, issue_id: int, due: Callable[[str], datetime | None]) -> None:
        """Each frozen row's due time, from its reader's time zone: one UPDATE per zone present."""
        readers = select(deliveries.c.subscriber_id).where(deliveries.c.issue_id == issue_id)
        zones = connection.execute(
            select(subscribers.c.timezone).where(subscribers.c.id.in_(readers)).distinct()
        ).scalars()
        for zone in list(zones):
            connection.execute(
                update(deliveries)
                .where(
                    deliveries.c.issue_id == issue_id,
                    deliveries.c.subscriber_id.in_(select(subscribers.c.id).where(subscribers.c.timezone == zone)),
                )
                .values(due_at=due(zone))
            )

    def audience(self, newsletter: str) -> list[Recipient]:
        """Who an issue of `newsletter` would go to now (the audience `start` freezes)."""
        query = (
            select(subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.topics)
            .select_from(subscribers.join(subscriptions, subscriptions.c.subscriber_id == subscribers.c.id))
            .where(*_audience_of(newsletter))
            .order_by(subscribers.c.id)
        )
        with self.engine.connect() as connection:
            return [Recipient(row.id, row.email, row.name, row.topics or "[]") for row in connection.execute(query)]

    @staticmethod
    def _freeze(connection: Connection, issue_id: int, newsletter: str, now: datetime) -> int:
        audience = (
            select(
                literal(issue_id),
                subscribers.c.id,
                subscribers.c.email,
                subscribers.c.name,
                literal("pending"),
                literal(0),
                literal(""),
                literal(""),
                literal(now, deliveries.c.queued_at.type),
                literal(now, deliveries.c.updated_at.type),
                subscribers.c.topics,
            )
            .select_from(subscribers.join(subscriptions, subscriptions.c.subscriber_id == subscribers.c.id))
            .where(
                *_audience_of(newsletter),
                ~exists().where(deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id == subscribers.c.id),
            )
        )
        columns = [
            "issue_id",
            "subscriber_id",
            "email",
            "name",
            "state",
            "attempts",
            "last_status",
            "last_error",
            "queued_at",
            "updated_at",
            "topics",
        ]
        connection.execute(insert(deliveries).from_select(columns, audience))
        return connection.execute(select(func.count()).where(deliveries.c.issue_id == issue_id)).scalar_one()

    # -- leasing --------------------------------------------------------------------------------

    def lease(self, issue_id: int, *, limit: int, now: datetime, lease_for: timedelta, owner: str = "") -> list[Leased]:
        """Up to `limit` rows that are due, marked sending by `owner` until now + lease_for.

        Nothing while the issue is paused or cancelled (a `sent` issue still retries its
        deferred recipients). Recipients who are no
        longer confirmed or subscribed to the newsletter are marked cancelled instead.
        """
        with self.engine.begin() as connection:
            issue = connection.execute(
                select(issues.c.state, issues.c.newsletter).where(issues.c.id == issue_id)
            ).first()
            if issue is None or issue.state not in ("sending", "sent"):
                return []
            rows = self._candidates(connection, issue_id, issue.newsletter, limit, now, owner)
            gone = [row.subscriber_id for row in rows if not row.eligible]
            keep = [row for row in rows if row.eligible]
            token = owner or secrets.token_hex(7)
            self._mark(
                connection,
                issue_id,
                gone,
                state="cancelled",
                lease_until=None,
                updated_at=now,
                last_error="no longer subscribed when its turn came",
            )
            self._mark(
                connection,
                issue_id,
                [row.subscriber_id for row in keep],
                state="sending",
                lease_until=now + lease_for,
                lease_token=token,
                updated_at=now,
                attempts=deliveries.c.attempts + 1,
            )
        return [
            Leased(
                row.subscriber_id,
                row.email,
                row.name,
                row.attempts + 1,
                row.queued_at,
                token,
                row.topics,
                row.bounce_count,
            )
            for row in keep
        ]

    def _candidates(
        self, connection: Connection, issue_id: int, newsletter: str, limit: int, now: datetime, owner: str
    ) -> list:
        """Expired leases first (never the leaser's own: those are still queued on its wire), then
        retries that are due, then fresh rows; each an index range."""
        found: list = []
        for query in _candidate_queries(connection.dialect.name == "postgresql"):
            if len(found) >= limit:
                break
            found.extend(
                connection.execute(
                    query,
                    {
                        "c_issue": issue_id,
                        "c_newsletter": newsletter,
                        "c_now": now,
                        "c_owner": owner,
                        "c_limit": limit - len(found),
                    },
                ).all()
            )
        return found

    @staticmethod
    def _mark(connection: Connection, issue_id: int, subscriber_ids: Sequence[int], **values: Any) -> None:
        for start in range(0, len(subscriber_ids), 500):
            chunk = list(subscriber_ids[start : start + 500])
            if chunk:
                connection.execute(
                    update(deliveries)
                    .where(deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id.in_(chunk))
                    .values(**values)
                )

    def holders(self, issue_id: int, *, now: datetime, owner: str = "") -> tuple[list[str], bool]:
        """The other workers holding rows of the issue in `sending`, and whether rows are due that
        `lease` would take were none locked (on PostgreSQL a lease skips the rows another worker's
        lease is taking in a transaction not yet committed). One statement, so one snapshot: a
        lease committing meanwhile shows its rows either as due or as held, never as neither."""
        held = (
            select(deliveries.c.lease_token.label("token"), literal(False).label("due"))
            .where(
                deliveries.c.issue_id == issue_id,
                deliveries.c.state == "sending",
                deliveries.c.lease_token != bindparam("c_owner"),
            )
            .distinct()
        )
        due = select(literal("").label("token"), literal(True).label("due")).where(
            exists().where(issues.c.id == issue_id, issues.c.state.in_(("sending", "sent"))),
            exists()
            .select_from(deliveries.join(subscribers, subscribers.c.id == deliveries.c.subscriber_id))
            .where(deliveries.c.issue_id == issue_id, or_(*_due_kinds())),
        )
        with self.engine.connect() as connection:
            rows = connection.execute(union_all(held, due), {"c_now": now, "c_owner": owner}).all()
        return [row.token for row in rows if not row.due and row.token], any(row.due for row in rows)

    def owners(self, issue_id: int, *, besides: str = "") -> list[str]:
        """The workers holding rows of the issue in `sending` (other than `besides`)."""
        with self.engine.connect() as connection:
            return [
                token
                for token in connection.scalars(
                    select(deliveries.c.lease_token)
                    .where(deliveries.c.issue_id == issue_id, deliveries.c.state == "sending")
                    .distinct()
                )
                if token and token != besides
            ]

    def reclaim(self, issue_id: int, dead: Sequence[str], now: datetime) -> int:
        """Rows that dead workers held in `sending`: pending again, for whoever leases next.

        Those that were on the wire when their worker died may reach their reader twice.
        """
        if not dead:
            return 0
        with self.engine.begin() as connection:
            return connection.execute(
                update(deliveries)
                .where(
                    deliveries.c.issue_id == issue_id,
                    deliveries.c.state == "sending",
                    deliveries.c.lease_token.in_(list(dead)),
                )
                .values(state="pending", lease_until=None, lease_token="", updated_at=now)
            ).rowcount

    # -- recording ------------------------------------------------------------------------------

    def record(self, issue_id: int, outcomes: Sequence[Outcome], now: datetime, *, soft_bounce_limit: int) -> int:
        """Write the servers' answers and count bounces, in one transaction; returns rows written.

        A row is written only while it is still `sending` under the same lease token, so a worker
        whose lease expired cannot overwrite the outcome of the worker that took over.
        """
        with self.writer() as write:
            return write(issue_id, outcomes, now, soft_bounce_limit=soft_bounce_limit)

    @contextmanager
    def writer(self) -> Iterator[Callable[..., int]]:
        """`record` on one connection held open, for a thread that records outcome after outcome.

        No pool checkout per call. On SQLite each call is one transaction. On PostgreSQL the
        outcomes go in one pipelined round trip, each row committed on its own (a row's outcome
        needs no other row), without waiting for the server's disk (`synchronous_commit = off`):
        a committed outcome survives this client being killed; only a server crash could lose the
        last fraction of a second, and those messages would then be sent again. Outcomes that
        change a subscriber's bounce count are written in one transaction with that change.
        """
        with self.engine.connect() as connection:
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                connection.execute(text("SET synchronous_commit = off"))
                connection.commit()
                connection.execution_options(isolation_level="AUTOCOMMIT")  # changes this connection

            stamp = deliveries.c.updated_at.type.bind_processor(connection.dialect) or (lambda value: value)

            def write(issue_id: int, outcomes: Sequence[Outcome], now: datetime, *, soft_bounce_limit: int) -> int:
                if not outcomes:
                    return 0
                if not _touches_subscribers(outcomes):
                    at = stamp(now)
                    plain = [
                        (
                            o.state,
                            o.code,
                            o.status[:16],
                            o.detail[:1000],
                            o.next_attempt_at and stamp(o.next_attempt_at),
                            at if o.state == "delivered" else None,
                            at,
                            issue_id,
                            o.subscriber_id,
                            o.token,
                        )
                        for o in outcomes
                    ]
                    driver = connection.connection.driver_connection
                    return _write_postgres(driver, plain) if postgres else _write_sqlite(driver, plain)
                rows = [_record_values(issue_id, outcome, now) for outcome in outcomes]
                if postgres:
                    with self.engine.begin() as other:
                        return self._write(other, rows, outcomes, now, soft_bounce_limit)
                with connection.begin():
                    return self._write(connection, rows, outcomes, now, soft_bounce_limit)

            try:
                yield write
            finally:
                if postgres and not connection.invalidated:
                    with suppress(DBAPIError):
                        connection.execute(text("RESET synchronous_commit"))

    def _write(
        self, connection: Connection, rows: list[dict], outcomes: Sequence[Outcome], now: datetime, limit: int
    ) -> int:
        written = connection.execute(_RECORD, rows).rowcount
        self._count_bounces(connection, outcomes, now, limit)
        return written

    @staticmethod
    def _count_bounces(
        connection: Connection, outcomes: Sequence[Outcome], now: datetime, soft_bounce_limit: int
    ) -> None:
        """Hard bounce: suppressed at once. Soft give-up: suppressed at the limit. Delivery: reset."""
        hard = [o.subscriber_id for o in outcomes if o.bounce == "hard"]
        soft = [o.subscriber_id for o in outcomes if o.bounce == "soft"]
        delivered = [o.subscriber_id for o in outcomes if o.state == "delivered" and o.bounce_count]
        for ids, limit in ((hard, 1), (soft, max(1, soft_bounce_limit))):
            if ids:
                connection.execute(
                    update(subscribers)
                    .where(subscribers.c.id.in_(ids))
                    .values(
                        bounce_count=subscribers.c.bounce_count + 1,
                        updated_at=now,
                        status=case(
                            (
                                and_(subscribers.c.status == _SUBSCRIBED, subscribers.c.bounce_count + 1 >= limit),
                                "bounced",
                            ),
                            else_=subscribers.c.status,
                        ),
                    )
                )
        if delivered:
            connection.execute(
                update(subscribers)
                .where(subscribers.c.id.in_(delivered), subscribers.c.bounce_count > 0)
                .values(bounce_count=0)
            )

    def release(self, issue_id: int, leased: Sequence[Leased], now: datetime) -> int:
        """Give back leased rows that were never handed to a transport, attempt undone: pending
        again, or deferred and due now when they had been tried before (so a retry round that
        stops, or waits out a relay outage, leaves them for the retries, not stranded as pending
        in an issue already sent)."""
        tried = deliveries.c.attempts > 1
        if not leased:
            return 0
        with self.engine.begin() as connection:
            return connection.execute(
                update(deliveries)
                .where(
                    deliveries.c.issue_id == issue_id,
                    deliveries.c.state == "sending",
                    deliveries.c.lease_token == leased[0].token,
                    deliveries.c.subscriber_id.in_([row.subscriber_id for row in leased]),
                )
                .values(
                    state=case((tried, "deferred"), else_="pending"),
                    next_attempt_at=case((tried, now), else_=deliveries.c.next_attempt_at),
                    lease_until=None,
                    lease_token="",
                    updated_at=now,
                    attempts=deliveries.c.attempts - 1,
                )
            ).rowcount

    # -- operator -------------------------------------------------------------------------------

    def counts(self, issue_id: int) -> dict[str, int]:
        """Rows per state (every state present, zero when none)."""
        from publisher.model import DELIVERY_STATES

        with self.engine.connect() as connection:
            found: dict[str, int] = dict(
                connection.execute(
                    select(deliveries.c.state, func.count())
                    .where(deliveries.c.issue_id == issue_id)
                    .group_by(deliveries.c.state)
                ).all()
            )
        return {state: found.get(state, 0) for state in DELIVERY_STATES}

    def next_attempt(self, issue_id: int) -> datetime | None:
        """When the earliest open row becomes due again (a deferral, a lease running out, a wave)."""
        with self.engine.connect() as connection:
            return connection.scalar(
                select(
                    func.min(
                        case(
                            (deliveries.c.state == "deferred", deliveries.c.next_attempt_at),
                            (deliveries.c.state == "pending", deliveries.c.due_at),
                            else_=deliveries.c.lease_until,
                        )
                    )
                ).where(deliveries.c.issue_id == issue_id, deliveries.c.state.in_(OPEN_STATES))
            )

    # -- editions and waves -----------------------------------------------------------------------

    def topic_sets(self, issue_id: int) -> list[str]:
        """The distinct frozen topics (JSON) of the rows not yet sent: one per possible edition."""
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    select(deliveries.c.topics)
                    .where(deliveries.c.issue_id == issue_id, deliveries.c.state == "pending")
                    .distinct()
                ).scalars()
            )

    def skip(self, issue_id: int, topic_sets: Sequence[str], now: datetime) -> int:
        """Mark pending rows whose topics hold none of the issue's articles `skipped`; returns how many."""
        if not topic_sets:
            return 0
        with self.engine.begin() as connection:
            return connection.execute(
                update(deliveries)
                .where(
                    deliveries.c.issue_id == issue_id,
                    deliveries.c.state == "pending",
                    deliveries.c.topics.in_(list(topic_sets)),
                )
                .values(state="skipped", updated_at=now, last_error="nothing in this issue for their topics")
            ).rowcount

    def due_now(self, issue_id: int, now: datetime) -> int:
        """Rows a send would take now: pending ones whose wave has come, due retries, dead leases."""
        pending = and_(deliveries.c.state == "pending", or_(deliveries.c.due_at.is_(None), deliveries.c.due_at <= now))
        with self.engine.connect() as connection:
            waiting = connection.scalar(select(func.count()).where(deliveries.c.issue_id == issue_id, pending)) or 0
        return waiting + self.due_retries(issue_id, now)

    def next_wave(self, now: datetime, issue_id: int | None = None) -> datetime | None:
        """When the next wave of a local-time issue (or of `issue_id`) is due, after `now`."""
        query = select(func.min(deliveries.c.due_at)).where(deliveries.c.state == "pending", deliveries.c.due_at > now)
        if issue_id is not None:
            query = query.where(deliveries.c.issue_id == issue_id)
        with self.engine.connect() as connection:
            return connection.scalar(query)

    def waves(self, issue_id: int) -> list[tuple[datetime | None, int, int]]:
        """(due at, rows still pending, rows in all) per wave of an issue, earliest first."""
        pending = func.sum(case((deliveries.c.state == "pending", 1), else_=0))
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(deliveries.c.due_at, pending, func.count())
                .where(deliveries.c.issue_id == issue_id)
                .group_by(deliveries.c.due_at)
            ).all()
        return sorted(
            ((due, int(left or 0), int(total)) for due, left, total in rows), key=lambda r: (r[0] is not None, r[0])
        )

    def due_retries(self, issue_id: int, now: datetime) -> int:
        """Deferred rows whose retry time has come, plus leases that ran out (a worker died)."""
        with self.engine.connect() as connection:
            return (
                connection.scalar(
                    select(func.count()).where(
                        deliveries.c.issue_id == issue_id,
                        or_(
                            and_(deliveries.c.state == "deferred", deliveries.c.next_attempt_at <= now),
                            and_(deliveries.c.state == "sending", deliveries.c.lease_until <= now),
                        ),
                    )
                )
                or 0
            )

    def cancel_open(self, issue_id: int, now: datetime) -> int:
        """Mark every row not yet sent as cancelled (a cancelled issue), and rows whose worker died.

        Rows on the wire under a live lease keep it: their outcome is written when the reply comes.
        """
        with self.engine.begin() as connection:
            return connection.execute(
                update(deliveries)
                .where(
                    deliveries.c.issue_id == issue_id,
                    or_(
                        deliveries.c.state.in_(("pending", "deferred")),
                        and_(deliveries.c.state == "sending", deliveries.c.lease_until <= now),
                    ),
                )
                .values(
                    lease_token="",
                    lease_until=None,
                    state="cancelled",
                    next_attempt_at=None,
                    updated_at=now,
                    last_error="the issue was cancelled",
                )
            ).rowcount

    def failures(self, issue_id: int) -> list[dict]:
        """Failed and deferred rows of an issue with the server's last reply, failed first, by
        address (`source` "smtp"); then each bounce or complaint that came back later for the
        issue, verified as ours (`source` "dsn" or "complaint"), with its status and diagnostic."""
        columns: tuple[Any, ...] = (
            deliveries.c.email,
            deliveries.c.state,
            deliveries.c.attempts,
            deliveries.c.last_code,
            deliveries.c.last_status,
            deliveries.c.last_error,
            deliveries.c.updated_at,
            deliveries.c.next_attempt_at,
            literal_column("'smtp'").label("source"),
        )
        query = (
            select(*columns)
            .where(deliveries.c.issue_id == issue_id, deliveries.c.state.in_(("failed", "deferred")))
            .order_by(deliveries.c.state.desc(), deliveries.c.email)
        )
        with self.engine.connect() as connection:
            found = [dict(row) for row in connection.execute(query).mappings()]
            came_back = connection.execute(_came_back(issue_id)).mappings()
            found += [{**row, "state": _RETURNED[row["state"]], "source": _SOURCE[row["state"]]} for row in came_back]
        return found

    def rows(self, issue_id: int) -> list[dict]:
        """Every row of an issue's ledger, for tests and exports."""
        with self.engine.connect() as connection:
            return [
                dict(row)
                for row in connection.execute(
                    select(deliveries).where(deliveries.c.issue_id == issue_id).order_by(deliveries.c.subscriber_id)
                ).mappings()
            ]

    # -- deferred readers ------------------------------------------------------------------------

    def deferred_reasons(self, issue_id: int, limit: int = 1) -> list[tuple[str, int]]:
        """The commonest last replies of an issue's deferred rows: (reply, rows), most first."""
        reply = (deliveries.c.last_code, deliveries.c.last_status, deliveries.c.last_error)
        query = (
            select(*reply, func.count().label("rows"))
            .where(deliveries.c.issue_id == issue_id, deliveries.c.state == "deferred")
            .group_by(*reply)
            .order_by(func.count().desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            found = connection.execute(query).all()
        return [
            (" ".join(str(part) for part in (code, status, text) if part) or "no reply", rows)
            for code, status, text, rows in found
        ]

    def bring_waves_forward(self, issue_id: int, now: datetime) -> int:
        """Make every pending row of an issue whose wave is still ahead due at once; returns how many."""
        with self.engine.begin() as connection:
            return connection.execute(
                update(deliveries)
                .where(deliveries.c.issue_id == issue_id, deliveries.c.state == "pending", deliveries.c.due_at > now)
                .values(due_at=now)
            ).rowcount

    def retry_now(self, issue_id: int, now: datetime) -> int:
        """Make every deferred row of an issue due at once; returns how many."""
        with self.engine.begin() as connection:
            return connection.execute(
                update(deliveries)
                .where(deliveries.c.issue_id == issue_id, deliveries.c.state == "deferred")
                .values(next_attempt_at=now, updated_at=now)
            ).rowcount
