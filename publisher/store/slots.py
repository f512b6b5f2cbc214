"""The scheduler's record of each newsletter slot: claimed once, then marked with its outcome."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from publisher.store.schema import slot_runs


class SlotStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, newsletter: str, slot: datetime, now: datetime) -> bool:
        """True for exactly one caller per (newsletter, slot), whatever processes race for it."""
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(slot_runs).values(newsletter=newsletter, slot=slot, outcome="running", detail="", at=now)
                )
        except IntegrityError:
            return False
        return True

    def finish(self, newsletter: str, slot: datetime, outcome: str, detail: str, now: datetime) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(slot_runs)
                .where(
                    slot_runs.c.newsletter == newsletter,
                    slot_runs.c.slot == slot,
                )
                .values(outcome=outcome, detail=detail, at=now)
            )

    def release(self, newsletter: str, slot: datetime) -> None:
        """Forget a claim whose run crashed before deciding anything, so it can be tried again."""
        with self.engine.begin() as connection:
            connection.execute(
                delete(slot_runs).where(
                    slot_runs.c.newsletter == newsletter, slot_runs.c.slot == slot, slot_runs.c.outcome == "running"
                )
            )

    def get(self, newsletter: str, slot: datetime) -> tuple[str, str] | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(slot_runs.c.outcome, slot_runs.c.detail).where(
                    slot_runs.c.newsletter == newsletter, slot_runs.c.slot == slot
                )
            ).first()
        return (row[0], row[1]) if row else None

    def recent(self, newsletter: str, limit: int = 20) -> list[tuple[datetime, str, str]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(slot_runs.c.slot, slot_runs.c.outcome, slot_runs.c.detail)
                .where(slot_runs.c.newsletter == newsletter)
                .order_by(slot_runs.c.slot.desc())
                .limit(limit)
            )
            return [tuple(row) for row in rows]
