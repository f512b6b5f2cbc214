"""Which time zone names a reader or an operator may give: the IANA names of the zone database
(`zoneinfo.available_timezones()`), less the files in it that are no place's zone.

`ZoneInfo(name)` alone is not a check: it opens any file under the zone directory, so "America"
(a directory) raises IsADirectoryError, a very long name OSError, and "posix/UTC", "right/UTC",
"localtime" or "Factory" load although no reader lives there.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

NOT_PLACES = frozenset({"Factory", "localtime", "posixrules"})


@lru_cache(maxsize=1)
def _names() -> frozenset[str]:
    return frozenset(available_timezones()) - NOT_PLACES


def is_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone name such as "Europe/London" or "UTC"."""
    return name in _names()


def zone_or(name: str, fallback: ZoneInfo) -> ZoneInfo:
    """The zone called `name`, or `fallback` when that is none ("" or not a zone name)."""
    return ZoneInfo(name) if is_zone(name) else fallback
