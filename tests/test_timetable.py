"""Crontab lines keep their standard meaning; slots survive DST fall-back."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from publisher.errors import SchedulerError
from publisher.timetable import crontab_trigger, fire_times, latest_slot, slot_of

UTC = ZoneInfo("UTC")
LONDON = ZoneInfo("Europe/London")
JANUARY = (datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 31, tzinfo=timezone.utc))


def weekdays(line: str) -> set[str]:
    return {moment.strftime("%A") for moment in fire_times(crontab_trigger(line, UTC), *JANUARY)}


@pytest.mark.parametrize("line", ["0 9 * * 0", "0 9 * * 7", "0 9 * * sun", "0 9 * * SUN", "@weekly"])
def test_day_zero_and_seven_are_sunday(line):
    assert weekdays(line) == {"Sunday"}


def test_day_one_is_monday_and_ranges_keep_their_meaning():
    assert weekdays("0 9 * * 1") == {"Monday"}
    assert weekdays("0 9 * * mon-fri") == {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}
    assert weekdays("0 9 * * 5-7") == {"Friday", "Saturday", "Sunday"}
    assert weekdays("0 9 * * */3") == {"Sunday", "Wednesday", "Saturday"}


def test_day_of_month_or_day_of_week_as_in_cron():
    days = [m.day for m in fire_times(crontab_trigger("0 9 13 * 5", UTC), *JANUARY)]
    assert days == [2, 9, 13, 16, 23, 30]  # every Friday, and the 13th (a Tuesday)


def test_dst_fall_back_gives_one_slot_for_the_repeated_hour():
    trigger = crontab_trigger("30 1 * * *", LONDON)
    day = (datetime(2025, 10, 25, 12, tzinfo=timezone.utc), datetime(2025, 10, 26, 12, tzinfo=timezone.utc))
    times = fire_times(trigger, *day)
    assert len(times) == 2  # APScheduler fires at 01:30 BST and again at 01:30 GMT
    assert {slot_of(t, LONDON) for t in times} == {datetime(2025, 10, 26, 0, 30, tzinfo=timezone.utc)}


def test_latest_slot_within_a_window():
    trigger = crontab_trigger("0 8 * * mon", LONDON)
    monday_9am = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
    assert latest_slot(trigger, LONDON, monday_9am, timedelta(hours=3)) == monday_9am - timedelta(hours=1)
    assert latest_slot(trigger, LONDON, monday_9am, timedelta(minutes=30)) is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 9 * *", "five fields"),
        ("0 9 * * 8", "not a day of the week"),
        ("61 9 * * *", "not a valid crontab line"),
        ("0 9 * * fri-mon", "runs backwards"),
    ],
)
def test_bad_lines_are_explained(line, message):
    with pytest.raises(SchedulerError, match=message):
        crontab_trigger(line, UTC, where="config.toml: newsletters.weekly.schedule")


def test_a_day_field_starting_with_a_star_does_not_widen_the_weekday():
    # cron: "*/2" in day-of-month still counts as unrestricted, so both fields must match.
    days = [m.day for m in fire_times(crontab_trigger("0 8 */2 * mon", UTC), *JANUARY)]
    assert days == [5, 19]  # Mondays that fall on odd days


def test_intervals_read_as_words_not_as_clock_times():
    from publisher.timetable import human_interval

    assert human_interval(timedelta(minutes=15)) == "15 minutes"
    assert human_interval(timedelta(hours=1)) == "1 hour"
    assert human_interval(timedelta(minutes=90)) == "1 hour 30 minutes"
    assert human_interval(timedelta(days=2, seconds=1)) == "2 days 1 second"
