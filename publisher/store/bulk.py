"""Many rows at once, for imports: straight to the driver, past SQLAlchemy's per-row work.

An import of 100,000 subscribers spends most of its time, through SQLAlchemy, adapting each
parameter and building each result row. Here a batch is written with one driver call (SQLite's
`executemany` or a multi-row INSERT … RETURNING, PostgreSQL's `COPY`, its text built a column at
a time and sent in pieces so the server works while the next piece is built), new rows' ids
are learned with them or in one query after, each distinct datetime is formatted once per
batch, and a lookup by a list of values sends the list as one parameter, so no lookup
depends on the batch's size and none is compiled per batch.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Integer, Table
from sqlalchemy.engine import Connection

from publisher.errors import StoreError
from publisher.store.failures import describe
from publisher.store.schema import UTCDateTime

_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_PIECE = 250  # rows per piece of a COPY: small enough that the server is never long idle


def _sqlite_time(value: datetime) -> str:
    """As the sqlite3 module stores a datetime (and SQLAlchemy reads it back): UTC, no offset."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")


def _time_formatter() -> Callable[[datetime | None], str | None]:
    """A datetime as SQLite's driver takes it, formatted once per distinct value (an import's rows
    share a few hundred consent times and one `now`)."""
    done: dict[datetime | None, str | None] = {None: None}

    def formatted(value: datetime | None) -> str | None:
        found = done.get(value, "")
        if found == "" and value is not None:
            found = done[value] = _sqlite_time(value)
        return found

    return formatted


def _row_converter(table: Table, keys: Sequence[str]) -> Callable[[Sequence[Any]], list[Any]]:
    """One row as SQLite's driver takes it: a list of values, times as text."""
    times = [(i, _time_formatter()) for i, key in enumerate(keys) if _is_time(table, key)]

    def values(row: Sequence[Any]) -> list[Any]:
        row = list(row)
        for i, formatted in times:
            row[i] = formatted(row[i])
        return row

    return values


def _is_time(table: Table, key: str) -> bool:
    return isinstance(table.c[key].type, UTCDateTime)


def _copy_text(table: Table, keys: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """`rows` as PostgreSQL's COPY text, built a column at a time: each column is converted,
    checked for characters COPY must escape and joined in C loops, not a Python call per value."""
    columns: list[Sequence[str]] = []
    for key, column in zip(keys, zip(*rows, strict=True), strict=True):
        values = column
        if _is_time(table, key):
            distinct = {value: None if value is None else value.isoformat() for value in set(column)}
            values = tuple(map(distinct.__getitem__, column))
        texts: Sequence[str] = list(map(str, values))
        if _COPY_SPECIAL.search("".join(texts)):  # rare: a tab, newline or backslash in a name
            texts = [text.translate(_COPY_ESCAPES) for text in texts]
        if None in values:
            texts = ["\\N" if value is None else text for value, text in zip(values, texts, strict=True)]
        columns.append(texts)
    return "\n".join(map("\t".join, zip(*columns, strict=True))) + "\n"


def _copy(connection: Connection, table: Table, keys: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """COPY `rows` into `table`, sent in pieces so the server inserts one while the next is built."""
    statement = f"COPY {table.name} ({', '.join(keys)}) FROM STDIN"  # our own names, never input
    with _driver_errors(connection), closing(_driver(connection).cursor()) as cursor, cursor.copy(statement) as copy:
        for start in range(0, len(rows), _COPY_PIECE):
            copy.write(_copy_text(table, keys, rows[start : start + _COPY_PIECE]))


def _driver(connection: Connection) -> Any:
    driver = connection.connection.driver_connection
    if driver is None:
        raise StoreError("the database connection closed during an import: run it again")
    return driver


@contextmanager
def _driver_errors(connection: Connection) -> Iterator[None]:
    """The driver's own errors as the one-line StoreError the engine gives for SQLAlchemy's."""
    try:
        yield
    except connection.dialect.loaded_dbapi.Error as error:
        url = connection.engine.url.render_as_string(hide_password=True)
        raise StoreError(describe(url, error)) from None


def insert_rows(connection: Connection, table: Table, keys: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert `rows` (values in the order of `keys`) in the connection's transaction."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        _copy(connection, table, keys, rows)
        return
    marks = ", ".join("?" * len(keys))
    statement = f"INSERT INTO {table.name} ({', '.join(keys)}) VALUES ({marks})"  # noqa: S608 (our own names)
    with _driver_errors(connection), closing(_driver(connection).cursor()) as cursor:
        cursor.executemany(statement, map(_row_converter(table, keys), rows))


def insert_returning_ids(
    connection: Connection, table: Table, keys: Sequence[str], rows: Sequence[Sequence[Any]]
) -> dict[Any, int]:
    """Insert `rows` like `insert_rows` and return {first value of each row: the id it got}.

    PostgreSQL: a block of ids is reserved from the table's sequence in one statement (a nextval
    per row is a third of the server's work on an import) and written with the rows by COPY. The
    table is locked against other writers until the transaction ends, so no sign-up can draw an
    id inside the block; they wait for this batch, a fraction of a second.
    SQLite: multi-row INSERTs with RETURNING, as many rows per statement as its parameters allow.
    """
    if not rows:
        return {}
    if connection.dialect.name == "postgresql":
        with _driver_errors(connection), closing(_driver(connection).cursor()) as cursor:
            # the table's name comes from our own schema, never from input
            cursor.execute(f"LOCK TABLE {table.name} IN SHARE ROW EXCLUSIVE MODE")
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), nextval(pg_get_serial_sequence(%s, 'id')) + %s - 1)",
                (table.name, table.name, len(rows)),
            )
            (last,) = cursor.fetchone()
        ids = range(last - len(rows) + 1, last + 1)
        _copy(connection, table, ("id", *keys), [(i, *row) for i, row in zip(ids, rows, strict=True)])
        return {row[0]: i for i, row in zip(ids, rows, strict=True)}
    convert = _row_converter(table, keys)
    driver = _driver(connection)
    # as many rows per statement as this SQLite's parameter limit allows (250,000 on Debian's)
    per_statement = max(1, min(driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER), 30_000) // len(keys))
    found: dict[Any, int] = {}
    with _driver_errors(connection), closing(driver.cursor()) as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            cursor.execute(
                _insert_returning(table, tuple(keys), len(chunk)), [v for row in chunk for v in convert(row)]
            )
            found.update(cursor.fetchall())
    return found


@lru_cache(maxsize=8)
def _insert_returning(table: Table, keys: tuple[str, ...], count: int) -> str:
    """INSERT of `count` rows, RETURNING the first column and the id (SQLite; one text per batch size)."""
    row = f"({', '.join('?' * len(keys))})"
    # table and column names come from our own schema, never from input
    return f"INSERT INTO {table.name} ({', '.join(keys)}) VALUES {', '.join([row] * count)} RETURNING {keys[0]}, id"  # noqa: S608


def select_where_in(
    connection: Connection, table: Table, columns: Sequence[str], key: str, values: Iterable[Any]
) -> list[tuple[Any, ...]]:
    """Rows of `columns` whose `key` is one of `values` (plain tuples; times as the driver gives them)."""
    values = list(values)
    if not values:
        return []
    statement, parameter = _where_in(connection.dialect.name, table, tuple(columns), key)
    cursor = _driver(connection).cursor()
    with _driver_errors(connection), closing(cursor):
        cursor.execute(statement, (parameter(values),))
        return cursor.fetchall()


@lru_cache(maxsize=32)
def _where_in(dialect: str, table: Table, columns: tuple[str, ...], key: str) -> tuple[str, Callable[[list], str]]:
    """The statement, and how the list becomes its one parameter (a JSON array on SQLite, a
    newline-separated string on PostgreSQL: both use the key's index, whatever the list's length)."""
    chosen = ", ".join(columns)
    if dialect == "postgresql":
        cast = "bigint" if isinstance(table.c[key].type, Integer) else "text"
        where = f"{key} = ANY(string_to_array(%s, E'\\n')::{cast}[])"
        parameter: Callable[[list], str] = lambda values: "\n".join(map(str, values))  # noqa: E731
    else:
        where, parameter = f"{key} IN (SELECT value FROM json_each(?))", json.dumps  # noqa: S608
    # table and column names come from our own schema, never from input
    return f"SELECT {chosen} FROM {table.name} WHERE {where}", parameter  # noqa: S608
