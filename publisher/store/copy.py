"""Copying every row from one database to another (moving from SQLite to PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, insert, select, text

from publisher.errors import StoreError
from publisher.store import Store
from publisher.store.schema import metadata, schema_migrations

_CHUNK = 1000


def copy_database(
    source: Store, target: Store, *, progress: Callable[[str, int], None] = lambda t, n: None
) -> dict[str, int]:
    """Copy all tables into an empty, migrated target; returns rows copied per table."""
    target.migrate()
    tables = [t for t in metadata.sorted_tables if t is not schema_migrations]
    with target.engine.connect() as connection:
        for table in tables:
            if connection.scalar(select(func.count()).select_from(table)):
                raise StoreError(f"the target database already has rows in {table.name}; copy into an empty database")
    copied: dict[str, int] = {}
    with source.engine.connect() as reader, target.engine.begin() as writer:
        for table in tables:
            count = 0
            rows = reader.execute(select(table)).mappings()
            while chunk := rows.fetchmany(_CHUNK):
                writer.execute(insert(table), [dict(row) for row in chunk])
                count += len(chunk)
            copied[table.name] = count
            progress(table.name, count)
        if target.dialect == "postgresql":
            for table in tables:
                for column in table.primary_key.columns:
                    if column.autoincrement is True:
                        # the names come from our own schema, never from input
                        statement = (
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "  # noqa: S608
                            f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"
                        )
                        writer.execute(text(statement))
    return copied
