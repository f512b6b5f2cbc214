"""The store: the only code that speaks SQL, through SQLAlchemy Core, on SQLite or PostgreSQL.

`Store` owns the engine and hands out one repository per concept (`articles`, `subscribers`,
`issues`, `deliveries`, `slots`, `web_events`, `operators`, `tokens`, `audit`), each in its own module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, insert, make_url, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from publisher import redact
from publisher.clock import system_clock
from publisher.errors import StoreError
from publisher.files import create_private
from publisher.store.articles import ArticleStore
from publisher.store.deliveries import DeliveryStore
from publisher.store.failures import translate_errors
from publisher.store.inbound import InboundStore
from publisher.store.issues import IssueStore
from publisher.store.lookups import LookupStore
from publisher.store.operators import AuditStore, OperatorStore, TokenStore
from publisher.store.reconfirmations import ReconfirmationStore
from publisher.store.runs import RunStore
from publisher.store.schema import MIGRATIONS, metadata, schema_migrations
from publisher.store.sessions import SessionStore
from publisher.store.slots import SlotStore
from publisher.store.stats import StatsStore
from publisher.store.subscribers import SubscriberStore
from publisher.store.web_events import WebEventStore


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, a generous busy timeout, and BEGIN IMMEDIATE so writers queue, not fail."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextlib.contextmanager
def _foreign_keys_off(connection: Connection) -> Iterator[None]:
    """On SQLite, foreign keys off while migrating, as its procedure for rebuilding a table asks
    (the pragma is ignored inside a transaction, so it is set before one begins); back on after."""
    if connection.dialect.name != "sqlite":
        yield
        return
    raw: Any = connection.connection.driver_connection
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        try:
            raw.execute("PRAGMA foreign_keys=ON")
        except Exception:  # a connection that cannot say so never goes back to the pool without them
            connection.invalidate()
            raise


def _create_sqlite_file(url: str) -> None:
    """A new database file is created owner-only before SQLite writes anything into it."""
    path = make_url(url).database
    if path and path != ":memory:" and not path.startswith("file:") and Path(path).parent.is_dir():
        with contextlib.suppress(OSError):  # SQLite itself reports an unusable path, in its own words
            create_private(Path(path))


def _hidden(url: str) -> str:
    """The URL with its credentials masked, even when SQLAlchemy cannot parse it."""
    return redact.url(url)


def make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            _create_sqlite_file(url)
            engine = create_engine(url)
            _configure_sqlite(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        translate_errors(engine)
    except (ArgumentError, NoSuchModuleError, ValueError) as error:  # ValueError: a port like ":abc"
        raise StoreError(
            f"database.url {_hidden(url)!r} is not a database URL SQLAlchemy understands: {redact.url(str(error))}"
        ) from None
    except ImportError as error:
        raise StoreError(
            f"database.url {_hidden(url)!r} needs a driver that is not installed ({error.name}); "
            f"use sqlite:/// or postgresql+psycopg://"
        ) from None
    return engine


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect and bring the schema up to date."""
        store = cls(url)
        store.migrate()
        return store

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> int:
        """Apply pending migrations in order; returns the schema version."""
        try:
            with self.engine.connect() as connection, _foreign_keys_off(connection), connection.begin():
                if self.dialect == "postgresql":
                    # One migrator at a time when several processes start together.
                    connection.execute(text("SELECT pg_advisory_xact_lock(7461626)"))
                metadata.create_all(connection, tables=[schema_migrations])
                done = set(connection.scalars(select(schema_migrations.c.version)))
                for version, migration in enumerate(MIGRATIONS, start=1):
                    if version not in done:
                        migration(connection)
                        connection.execute(insert(schema_migrations).values(version=version, applied_at=system_clock()))
        except StoreError:
            raise  # already one line that names the database
        except DBAPIError as error:
            raise StoreError(f"cannot open the database {self.safe_url}: {error.orig}") from None
        return len(MIGRATIONS)

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except DBAPIError:
            return False

    def close(self) -> None:
        self.engine.dispose()

    @cached_property
    def articles(self) -> ArticleStore:
        return ArticleStore(self.engine)

    @cached_property
    def subscribers(self) -> SubscriberStore:
        return SubscriberStore(self.engine)

    @cached_property
    def issues(self) -> IssueStore:
        return IssueStore(self.engine)

    @cached_property
    def deliveries(self) -> DeliveryStore:
        return DeliveryStore(self.engine)

    @cached_property
    def reconfirmations(self) -> ReconfirmationStore:
        return ReconfirmationStore(self.engine)

    @cached_property
    def slots(self) -> SlotStore:
        return SlotStore(self.engine)

    @cached_property
    def web_events(self) -> WebEventStore:
        return WebEventStore(self.engine)

    @cached_property
    def inbound(self) -> InboundStore:
        return InboundStore(self.engine)

    @cached_property
    def runs(self) -> RunStore:
        return RunStore(self.engine)

    @cached_property
    def stats(self) -> StatsStore:
        return StatsStore(self.engine)

    @cached_property
    def operators(self) -> OperatorStore:
        return OperatorStore(self.engine)

    @cached_property
    def tokens(self) -> TokenStore:
        return TokenStore(self.engine)

    @cached_property
    def audit(self) -> AuditStore:
        return AuditStore(self.engine)

    @cached_property
    def sessions(self) -> SessionStore:
        return SessionStore(self.engine)

    @cached_property
    def lookups(self) -> LookupStore:
        return LookupStore(self.engine)
