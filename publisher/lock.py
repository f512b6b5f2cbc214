"""One active scheduler per database, and which sending workers are alive.

SQLite: an exclusive `flock` on a file beside the database. PostgreSQL: a session advisory lock
held by one dedicated connection. Both vanish with the process that holds them, so a standby
takes over when the active instance dies, however it dies.

The same two locks name each sending worker (`WorkerLock`): a worker holds the lock of its own id
while it owns ledger rows, so another worker knows at once, without waiting for a lease to run
out, that the rows of a dead one are free to take.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import tempfile
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


# --- sending workers -------------------------------------------------------------------------


class WorkerLock(Protocol):
    """A sending worker's identity, held for as long as the worker lives."""

    worker_id: str

    def hold(self) -> None:
        """Take the lock of our own id (before owning any row)."""

    def alive(self, worker_id: str) -> bool:
        """Whether the worker `worker_id` still holds its lock (ours counts as alive)."""

    def release(self) -> None: ...


def new_worker_id() -> str:
    """A fresh id for one sending run (fits the ledger's lease_token and a bigint lock key)."""
    return secrets.token_hex(7)


class FileWorkerLock:
    """SQLite: `<database>.workers/<id>.lock`, flocked by its worker; a file nobody locks is a dead worker's."""

    def __init__(self, folder: Path, worker_id: str | None = None) -> None:
        self.folder = folder
        self.worker_id = worker_id or new_worker_id()
        self._fd: int | None = None

    def hold(self) -> None:
        if self._fd is not None:
            return
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.folder / f"{self.worker_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def alive(self, worker_id: str) -> bool:
        if worker_id == self.worker_id:
            return self._fd is not None
        path = self.folder / f"{os.path.basename(worker_id)}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        path.unlink(missing_ok=True)
        return False

    def release(self) -> None:
        if self._fd is None:
            return
        (self.folder / f"{self.worker_id}.lock").unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


class AdvisoryWorkerLock:
    """PostgreSQL: a session advisory lock on the worker's id, which the server drops with the session."""

    def __init__(self, store: Store, worker_id: str | None = None) -> None:
        self.store = store
        self.worker_id = worker_id or new_worker_id()
        self._connection: Connection | None = None

    @staticmethod
    def _key(worker_id: str) -> int:
        """Above every 32-bit key, so never the scheduler's lock."""
        try:
            return (1 << 60) | (int(worker_id, 16) & ((1 << 60) - 1))
        except ValueError:
            return (1 << 60) | zlib.crc32(worker_id.encode())

    def hold(self) -> None:
        if self._connection is not None:
            return
        connection = self.store.engine.connect()
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self._key(self.worker_id)})
        connection.commit()
        self._connection = connection

    def alive(self, worker_id: str) -> bool:
        if worker_id == self.worker_id:
            return self._connection is not None
        connection = self._connection
        if connection is None:
            raise RuntimeError("AdvisoryWorkerLock.alive before hold")
        key = self._key(worker_id)
        free = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        if free:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        connection.commit()
        return not free

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.execute(text("SELECT pg_advisory_unlock_all()"))
                connection.commit()
                connection.close()
            except DBAPIError:
                pass


def make_worker_lock(store: Store) -> WorkerLock:
    if store.dialect == "sqlite":
        database = store.engine.url.database
        if not database or database == ":memory:":
            folder = Path(tempfile.gettempdir()) / f"publisher-workers-{os.getpid()}"
        else:
            folder = Path(f"{database}.workers")
        return FileWorkerLock(folder)
    return AdvisoryWorkerLock(store)
