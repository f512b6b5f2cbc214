"""Taking one message in, whichever way it came: a message that cannot be recorded never blocks
the ones after it.

A failure of the database itself (down, locked, full, the connection lost) is raised as a
`StoreError`, so the caller stops and the message is read again later. Any other failure comes from the message
(something in it the store refuses, a parser bug it triggers): the message is then recorded as
`unknown`, with the error, and kept for an operator; if even that fails it is skipped with a
one-line warning naming it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.exc import DBAPIError, InterfaceError

from publisher.config import Settings
from publisher.errors import StoreError
from publisher.feedback import apply, message_digest
from publisher.inbound.parse import Feedback, Kind, clean, parse
from publisher.store import Store
from publisher.store.inbound import Recorded

log = logging.getLogger("publisher.inbound")


def _transient(error: Exception) -> StoreError | None:
    """The database's fault (down, locked, full, the connection lost), not the message's."""
    if isinstance(error, StoreError):
        return error
    if isinstance(error, InterfaceError) or (isinstance(error, DBAPIError) and error.connection_invalidated):
        return StoreError(f"the database failed: {_why(error)}")
    return None


def _why(error: Exception) -> str:
    """One line: the error's type and the driver's words (not the SQL and its parameters)."""
    cause = getattr(error, "orig", None) or error
    first_line = (str(cause).strip().splitlines() or [""])[0]
    return clean(f"{type(cause).__name__}: {first_line}")[:300]


def take(
    store: Store,
    settings: Settings,
    raw: bytes,
    now: datetime,
    *,
    source: str,
    where: str,
    envelope_to: str = "",
    feedback: Feedback | None = None,
    keep_raw: bool = True,
) -> Recorded | None:
    """Parse (unless `feedback` is given), record and act on one message; None when it could not
    be recorded at all. `where` names it in warnings (a file, an IMAP uid, a peer)."""
    kept = raw if keep_raw else b""
    key = message_digest(raw, envelope_to)
    try:
        found = feedback if feedback is not None else parse(raw, envelope_to=envelope_to)
        return apply(store, found, settings, now, source=source, raw=kept, digest=key)
    except Exception as error:  # whatever this message triggers, the next one is read
        if (transient := _transient(error)) is not None:
            raise transient from None
        why = _why(error)
        log.warning("%s: could not be read (%s): recording it as unknown", clean(where), why)
        failed = Feedback(Kind.UNKNOWN, format="error", diagnostic=f"could not be read: {why}")
    try:
        return apply(store, failed, settings, now, source=source, raw=kept, digest=key)
    except Exception as error:
        if (transient := _transient(error)) is not None:
            raise transient from None
        log.warning("%s: skipped: could not be recorded (%s)", clean(where), _why(error))
        return None
