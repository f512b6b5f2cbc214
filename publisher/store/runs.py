"""What the service has done, for /metrics and /healthz: run totals and the scheduler's lock holder.

Both are written by whichever process did the work (`publisher import`, `digest send`, the
scheduler, a worker) and read by whichever process serves the web app.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from publisher.store.schema import lock_holders, run_totals


@dataclass(frozen=True)
class RunTotal:
    """Every run of one kind (and name) so far."""

    kind: str
    name: str
    runs: int
    failures: int
    seconds: float
    last_started: datetime | None
    last_seconds: float
    last_ok_at: datetime | None
    last_error: str


@dataclass(frozen=True)
class LockHolder:
    lock: str
    holder: str
    since: datetime
    seen_at: datetime


class RunStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, kind: str, name: str, finished: datetime, seconds: float, error: str = "") -> None:
        """Add one run that took `seconds` and ended at `finished` (failed when `error` is given)."""
        started = finished - timedelta(seconds=seconds)
        with self.engine.begin() as connection:
            if not self._add(connection, kind, name, started, finished, seconds, error):
                try:
                    with connection.begin_nested():
                        connection.execute(insert(run_totals).values(kind=kind, name=name))
                except IntegrityError:
                    pass  # another process added the row first
                self._add(connection, kind, name, started, finished, seconds, error)

    @staticmethod
    def _add(
        connection: Connection, kind: str, name: str, started: datetime, finished: datetime, seconds: float, error: str
    ) -> bool:
        values: dict[str, object] = {
            "runs": run_totals.c.runs + 1,
            "seconds": run_totals.c.seconds + seconds,
            "last_started": started,
            "last_seconds": seconds,
            "last_error": error[:2000],
        }
        if error:
            values["failures"] = run_totals.c.failures + 1
        else:
            values["last_ok_at"] = finished
        result = connection.execute(
            update(run_totals).where(run_totals.c.kind == kind, run_totals.c.name == name).values(**values)
        )
        return result.rowcount > 0

    def totals(self) -> list[RunTotal]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(run_totals).order_by(run_totals.c.kind, run_totals.c.name))
            return [RunTotal(**row._mapping) for row in rows]

    def hold(self, lock: str, holder: str, now: datetime) -> None:
        """Say who holds `lock` (taken just now, or still held: `since` is kept for the same holder)."""
        with self.engine.begin() as connection:
            refreshed = connection.execute(
                update(lock_holders)
                .where(lock_holders.c.lock == lock, lock_holders.c.holder == holder)
                .values(seen_at=now)
            ).rowcount
            if not refreshed:
                connection.execute(delete(lock_holders).where(lock_holders.c.lock == lock))
                connection.execute(insert(lock_holders).values(lock=lock, holder=holder, since=now, seen_at=now))

    def let_go(self, lock: str, holder: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(lock_holders).where(lock_holders.c.lock == lock, lock_holders.c.holder == holder))

    def holder(self, lock: str) -> LockHolder | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(lock_holders).where(lock_holders.c.lock == lock)).first()
        return LockHolder(**row._mapping) if row else None
