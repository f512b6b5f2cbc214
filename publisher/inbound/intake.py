"""Taking one message in, whichever way it came: a message that cannot be recorded never blocks
the ones after it.

A failure of the database itself (down, locked, full: a `StoreError`) is passed on, so the
caller stops and the message is read again later. Any other failure comes from the message
(something in it the store refuses, a parser bug it triggers): the message is then recorded as
`unknown`, with the error, and kept for an operator; if even that fails it is skipped with a
one-line warning naming it.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from publisher.config import Settings
from publisher.errors import StoreError
from publisher.feedback import apply
from publisher.inbound.parse import Feedback, Kind, clean, parse
from publisher.store import Store
from publisher.store.inbound import Recorded

log = logging.getLogger("publisher.inbound")


def digest(raw: bytes, envelope_to: str) -> str:
    """What a message is recorded once by (as `publisher.feedback.receive` computes it)."""
    return hashlib.sha256(envelope_to.lower().encode() + b"\n" + raw).hexdigest()


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
    key = digest(raw, envelope_to)
    try:
        found = feedback if feedback is not None else parse(raw, envelope_to=envelope_to)
        return apply(store, found, settings, now, source=source, raw=kept, digest=key)
    except StoreError:
        raise
    except Exception as error:  # whatever this message triggers, the next one is read
        why = clean(f"{type(error).__name__}: {error}")[:300]
        log.warning("%s: could not be read (%s): recording it as unknown", where, why)
        failed = Feedback(Kind.UNKNOWN, format="error", diagnostic=f"could not be read: {why}")
    try:
        return apply(store, failed, settings, now, source=source, raw=kept, digest=key)
    except StoreError:
        raise
    except Exception as error:
        log.warning("%s: skipped: could not be recorded (%s)", where, clean(f"{type(error).__name__}: {error}")[:300])
        return None
