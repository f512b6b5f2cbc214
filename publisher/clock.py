"""The one source of "now": a clock is a function returning an aware UTC datetime.

`Publication` holds one and passes it (or the moment it read) down; tests give a fixed one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def fixed(moment: datetime) -> Clock:
    """A clock that always says `moment`."""
    return lambda: moment


def running_from(start: datetime, clock: Clock = system_clock) -> Clock:
    """A clock that starts at `start` (the caller's idea of now) and runs in real time."""
    offset = start - clock()
    return lambda: clock() + offset
