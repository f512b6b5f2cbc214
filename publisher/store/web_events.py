"""Counted web events (a subscription from an IP, a request for an address) for rate limits."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Engine

from publisher.store.schema import web_events

# Nothing is counted over a longer window than this; older rows are deleted as new ones arrive.
KEEP = timedelta(days=1)


class WebEventStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def hit(self, kind: str, subject: str, now: datetime, *, window: timedelta, limit: int) -> bool:
        """Record one event unless `limit` of the same kind and subject fall within `window`.

        True when the event was allowed (and recorded). Counting and recording happen in one
        transaction, so two requests racing for the last place cannot both get it on SQLite
        (BEGIN IMMEDIATE); on PostgreSQL the race can let one extra through, which a rate
        limit tolerates.
        """
        subject = subject[:320]
        with self.engine.begin() as connection:
            connection.execute(delete(web_events).where(web_events.c.at < now - KEEP))
            seen = connection.execute(
                select(func.count())
                .select_from(web_events)
                .where(web_events.c.kind == kind, web_events.c.subject == subject, web_events.c.at > now - window)
            ).scalar_one()
            if seen >= limit:
                return False
            connection.execute(insert(web_events).values(kind=kind, subject=subject, at=now))
        return True

    def count(self, kind: str, subject: str, since: datetime) -> int:
        with self.engine.connect() as connection:
            return (
                connection.scalar(
                    select(func.count())
                    .select_from(web_events)
                    .where(web_events.c.kind == kind, web_events.c.subject == subject[:320], web_events.c.at > since)
                )
                or 0
            )
