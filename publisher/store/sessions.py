"""The console's sessions: one row per logged-in browser, found by the digest of its cookie."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from publisher.store.schema import console_sessions


@dataclass(frozen=True)
class ConsoleSession:
    operator_id: int
    generation: int
    csrf: str
    created_at: datetime
    seen_at: datetime
    expires_at: datetime


class SessionStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start(
        self, digest: str, operator_id: int, generation: int, csrf: str, now: datetime, lifetime: timedelta
    ) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(console_sessions).where(console_sessions.c.expires_at < now))
            connection.execute(
                insert(console_sessions).values(
                    digest=digest,
                    operator_id=operator_id,
                    generation=generation,
                    csrf=csrf,
                    created_at=now,
                    seen_at=now,
                    expires_at=now + lifetime,
                )
            )

    def get(self, digest: str) -> ConsoleSession | None:
        with self.engine.connect() as connection:
            row = (
                connection.execute(select(console_sessions).where(console_sessions.c.digest == digest))
                .mappings()
                .first()
            )
        if row is None:
            return None
        return ConsoleSession(
            row["operator_id"], row["generation"], row["csrf"], row["created_at"], row["seen_at"], row["expires_at"]
        )

    def seen(self, digest: str, now: datetime) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(console_sessions).where(console_sessions.c.digest == digest).values(seen_at=now))

    def end(self, digest: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(console_sessions).where(console_sessions.c.digest == digest))

    def end_all(self, operator_id: int) -> int:
        with self.engine.begin() as connection:
            return connection.execute(
                delete(console_sessions).where(console_sessions.c.operator_id == operator_id)
            ).rowcount
