"""Counts over the whole store for /metrics: read at scrape time, so work done by any process shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection, Engine

from publisher.store.schema import deliveries, inbound_messages, issues, subscribers, suppressions

OPEN_DELIVERIES = ("pending", "sending", "deferred")


@dataclass(frozen=True)
class StoreStats:
    issues: dict[tuple[str, str], int]  # (newsletter, state) -> issues
    deliveries: dict[tuple[str, str], int]  # (newsletter, state) -> ledger rows
    delivered_recently: int  # rows delivered within `window` before now
    window: timedelta
    subscribers: dict[str, int]  # status -> subscribers
    inbound: dict[str, int]  # kind (bounce, soft_bounce, complaint, ...) -> messages taken in
    suppressions: dict[str, int]  # reason -> addresses suppressed now (not lifted)

    @property
    def backlog(self) -> int:
        """Ledger rows still to try, across every issue."""
        return sum(count for (_, state), count in self.deliveries.items() if state in OPEN_DELIVERIES)


def _grouped(connection: Connection, query: object) -> dict:
    rows = connection.execute(query).all()  # type: ignore[call-overload]
    return {tuple(row[:-1]) if len(row) > 2 else row[0]: row[-1] for row in rows}


class StatsStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def snapshot(self, now: datetime, window: timedelta = timedelta(minutes=5)) -> StoreStats:
        """Everything /metrics reads, in one connection. The ledger is counted per issue and state
        through its (issue_id, state) index, and the recent deliveries only among the issues that
        were sending within `window`, so a scrape stays cheap on a large ledger."""
        with self.engine.connect() as connection:
            newsletters = dict(connection.execute(select(issues.c.id, issues.c.newsletter)).all())
            per_issue = connection.execute(
                select(deliveries.c.issue_id, deliveries.c.state, func.count()).group_by(
                    deliveries.c.issue_id, deliveries.c.state
                )
            ).all()
            ledger: dict[tuple[str, str], int] = {}
            for issue_id, state, count in per_issue:
                key = (newsletters.get(issue_id, ""), state)
                ledger[key] = ledger.get(key, 0) + count
            recent_issues = select(issues.c.id).where(
                or_(issues.c.state.in_(("sending", "paused")), issues.c.sent_at >= now - window)
            )
            recent = select(func.count()).where(
                deliveries.c.issue_id.in_(recent_issues),
                deliveries.c.state == "delivered",
                deliveries.c.delivered_at >= now - window,
            )
            return StoreStats(
                issues=_grouped(
                    connection,
                    select(issues.c.newsletter, issues.c.state, func.count()).group_by(
                        issues.c.newsletter, issues.c.state
                    ),
                ),
                deliveries=ledger,
                delivered_recently=connection.scalar(recent) or 0,
                window=window,
                subscribers=_grouped(
                    connection, select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
                ),
                inbound=_grouped(
                    connection, select(inbound_messages.c.kind, func.count()).group_by(inbound_messages.c.kind)
                ),
                suppressions=_grouped(
                    connection,
                    select(suppressions.c.reason, func.count())
                    .where(suppressions.c.lifted_at.is_(None))
                    .group_by(suppressions.c.reason),
                ),
            )
