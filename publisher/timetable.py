"""Crontab lines with their standard meaning, as APScheduler triggers, and the slots they define.

Two differences between a crontab and APScheduler 3 are mended here:
- day-of-week: crontab counts 0 (and 7) as Sunday; APScheduler counts 0 as Monday. Days are
  translated to names, which both read the same way.
- when day-of-month and day-of-week are both restricted, cron fires when *either* matches;
  APScheduler requires both. Such a line becomes two triggers joined with OR.

A *slot* is one fire time, named by its local wall-clock time: the hour that repeats when clocks
go back gives the same slot twice, so it can only ever produce one issue.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from publisher.errors import SchedulerError

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _day_number(token: str, where: str) -> int:
    token = token.lower()
    if token[:3] in DAY_NAMES and len(token) >= 3:
        return DAY_NAMES.index(token[:3])
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7
    raise SchedulerError(f"{where}: {token!r} is not a day of the week (0-7 or sun-sat)")


def _days_of_week(field: str, where: str) -> list[int]:
    """The crontab day-of-week field as a sorted list of days, 0 = Sunday."""
    days: set[int] = set()
    for item in field.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise SchedulerError(f"{where}: {item!r} has a bad step")
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            start, end = base.split("-", 1)
            first, last = _day_number(start, where), _day_number(end, where)
            if end.strip() in ("7",):
                last = 7
        else:
            first = last = _day_number(base, where)
            if step:
                last = 6
        if last < first:
            raise SchedulerError(f"{where}: the range {item!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step or 1))
    return sorted(days)


def _month_field(field: str) -> str:
    """APScheduler reads month names too; only the case needs care."""
    return field.lower()


def crontab_trigger(line: str, zone: ZoneInfo, *, where: str = "schedule") -> BaseTrigger:
    """An APScheduler trigger that fires exactly when cron would for `line` in `zone`."""
    expanded = _ALIASES.get(line.strip().lower(), line)
    parts = expanded.split()
    if len(parts) != 5:
        raise SchedulerError(f"{where}: {line!r} must have five fields: minute hour day month day-of-week")
    minute, hour, day, month, dow = parts
    days = _days_of_week(dow, where)
    dow_names = "*" if len(days) == 7 else ",".join(DAY_NAMES[d] for d in days)
    try:
        # As in cron, a field that starts with "*" (even "*/2") does not restrict the day.
        if not day.startswith("*") and not dow.startswith("*"):
            by_date = CronTrigger(minute=minute, hour=hour, day=day, month=_month_field(month), timezone=zone)
            by_weekday = CronTrigger(
                minute=minute, hour=hour, month=_month_field(month), day_of_week=dow_names, timezone=zone
            )
            return OrTrigger([by_date, by_weekday])
        return CronTrigger(
            minute=minute, hour=hour, day=day, month=_month_field(month), day_of_week=dow_names, timezone=zone
        )
    except ValueError as error:
        raise SchedulerError(f"{where}: {line!r} is not a valid crontab line: {error}") from None


def slot_of(fire_time: datetime, zone: ZoneInfo) -> datetime:
    """The slot a fire time belongs to, in UTC: the first instant with its local wall-clock time."""
    local = fire_time.astimezone(zone).replace(tzinfo=None)
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def fire_times(trigger: BaseTrigger, start: datetime, end: datetime) -> list[datetime]:
    """Every fire time in (start, end]."""
    times: list[datetime] = []
    previous = None
    moment = start + timedelta(microseconds=1)
    while (next_time := trigger.get_next_fire_time(previous, moment)) is not None and next_time <= end:
        times.append(next_time)
        previous = moment = next_time
    return times


def latest_slot(trigger: BaseTrigger, zone: ZoneInfo, now: datetime, within: timedelta) -> datetime | None:
    """The most recent slot at or before `now`, if one fell within `within` of it."""
    times = fire_times(trigger, now - within - timedelta(seconds=1), now)
    return slot_of(times[-1], zone) if times else None


def next_fire(trigger: BaseTrigger, now: datetime) -> datetime | None:
    return trigger.get_next_fire_time(None, now)


def next_slot(schedule: str, zone: ZoneInfo, now: datetime, *, where: str = "schedule") -> datetime | None:
    """The first slot (in UTC) of the crontab line `schedule`, read in `zone`, after `now`."""
    upcoming = next_fire(crontab_trigger(schedule, zone, where=where), now)
    return slot_of(upcoming, zone) if upcoming else None


def wave_time(slot: datetime, slot_zone: ZoneInfo, zone: ZoneInfo) -> datetime:
    """When a local-time slot comes in `zone`: the slot's wall-clock time there, in UTC.

    A time the clocks skip that day (spring forward) comes at the same distance after the jump;
    a time they repeat (fall back) comes the first time.
    """
    wall = slot.astimezone(slot_zone).replace(tzinfo=None)
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def human_interval(every: timedelta) -> str:
    """ "15 minutes", "1 hour 30 minutes", "2 days" (not timedelta's "0:15:00")."""
    left = int(every.total_seconds())
    parts = []
    for unit, seconds in _UNITS:
        count, left = divmod(left, seconds)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts) or "0 seconds"
