"""Database failures an operator can act on (disk full, read-only, locked, server down), raised
as a one-line `StoreError` naming the database instead of a traceback full of SQL parameters.

The translation hangs on the engine (`handle_error`), so every command, job and page gets it.
The transaction is rolled back as before: the store stays consistent.
"""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine, ExceptionContext
from sqlalchemy.exc import OperationalError

from publisher import redact
from publisher.errors import StoreError

_MAX_DETAIL = 200
_READ_ONLY_SQLSTATE = "25006"  # PostgreSQL: read_only_sql_transaction
# (words in the driver's message, what the operator should know)
_HINTS = (
    (("disk is full", "no space left", "could not extend file", "disk full"), "the disk is full: free some space"),
    (("readonly", "read-only", "read only"), "it is read-only: check the file's and its folder's permissions"),
    (("database is locked", "lock timeout"), "it is locked by another process: try again"),
    (("unable to open", "no such file"), "cannot open it: check that the path and its folder exist and are writable"),
    (("connection", "could not connect", "server closed", "timeout expired"), "cannot reach it: is the server up?"),
)


class DatabaseUnavailable(StoreError, OperationalError):
    """A StoreError for the user, and still a DBAPIError for code that catches those."""

    def __init__(self, message: str, original: BaseException) -> None:
        orig = getattr(original, "orig", original)
        OperationalError.__init__(self, getattr(original, "statement", None), None, orig)
        self.message = message

    def __str__(self) -> str:
        return self.message


def describe(url: str, driver_error: BaseException) -> str:
    """One line: which database, what is wrong in plain words, and the driver's first line."""
    text = str(driver_error).strip()
    detail = " ".join(text.splitlines()[0].split()) if text else type(driver_error).__name__
    detail = detail if len(detail) <= _MAX_DETAIL else detail[:_MAX_DETAIL] + "…"
    lowered = text.lower()
    hint = next((words for keys, words in _HINTS if any(key in lowered for key in keys)), "it failed")
    return redact.url(f"database {url}: {hint} ({detail})")


def _actionable(context: ExceptionContext) -> bool:
    """Operational errors (the database's state, not our SQL) and PostgreSQL's read-only refusal."""
    if isinstance(context.sqlalchemy_exception, OperationalError):
        return True
    return getattr(context.original_exception, "sqlstate", None) == _READ_ONLY_SQLSTATE


def translate_errors(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=True)

    @event.listens_for(engine, "handle_error")
    def on_error(context: ExceptionContext) -> None:
        if context.is_pre_ping or not _actionable(context):
            return
        original = context.sqlalchemy_exception or context.original_exception
        raise DatabaseUnavailable(describe(url, context.original_exception), original)
