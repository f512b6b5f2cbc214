"""One active scheduler per database.

SQLite: an exclusive `flock` on a file beside the database. PostgreSQL: a session advisory lock
held by one dedicated connection. Both vanish with the process that holds them, so a standby
takes over when the active instance dies, however it dies.
"""

from __future__ import annotations

import fcntl
import os
import zlib
from pathlib import Path
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from publisher.store import Store


class ActiveLock(Protocol):
    description: str

    def acquire(self) -> bool:
        """Try once, without waiting; True when this process is now the active one."""

    def held(self) -> bool:
        """Whether the lock is still ours (a PostgreSQL connection can drop)."""

    def release(self) -> None: ...


class FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"lock file {path}"
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class AdvisoryLock:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.description = "a PostgreSQL advisory lock"
        self._connection: Connection | None = None

    @staticmethod
    def _key(connection: Connection) -> int:
        """Named by what the server says it is serving, however the URL spells it; per schema,
        so publications sharing one database in separate schemas do not block each other."""
        identity = connection.execute(text("SELECT current_database() || '.' || current_schema()")).scalar()
        return zlib.crc32(f"publisher.scheduler:{identity}".encode())

    def acquire(self) -> bool:
        if self._connection is not None:
            return True
        connection = self.store.engine.connect()
        key = self._key(connection)
        self.description = f"PostgreSQL advisory lock {key}"
        got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        connection.commit()
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True

    def held(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
            self._connection.commit()
            return True
        except DBAPIError:
            self._connection = None
            return False

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock_all()"))
                self._connection.commit()
                self._connection.close()
            except DBAPIError:
                pass
            self._connection = None


def make_lock(store: Store) -> ActiveLock:
    if store.dialect == "sqlite":
        database = store.engine.url.database or "publisher.db"
        return FileLock(Path(f"{database}.scheduler.lock"))
    return AdvisoryLock(store)
