"""`publisher run` with real restarts: missed slots, one issue per slot, standby take-over, resume.

Each test writes a config whose newsletter schedule fired a few minutes ago (or hours ago), so
the real clock is the controlled one: what happens at start-up depends only on the schedule.
"""

from __future__ import annotations

import mailbox
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from publisher.clock import fixed
from publisher.config import load_settings
from publisher.jobs import run_slot
from publisher.model import Subscriber
from publisher.publication import Publication
from publisher.store import Store
from publisher.timetable import crontab_trigger, fire_times, slot_of
from tests.helpers import REPO

AUDIENCE = 30


def _cron_for(moment: datetime) -> str:
    return f"{moment.minute} {moment.hour} * * *"


def write_config(
    folder: Path,
    database_url: str,
    *,
    fired_ago: timedelta,
    grace: str = "1h",
    extra: str = "",
    transport: str = "maildir",
) -> Path:
    fired = datetime.now(UTC) - fired_ago
    config = folder / "config.toml"
    config.write_text(
        f"""
[site]
postal_address = "1 Example Road, Testville"
url = "https://news.example.org"
title = "Scheduler test"

[database]
url = "{database_url}"

[delivery]
transport = "{transport}"
maildir = "outbox"
lease = "1s"
{extra}

[newsletters.weekly]
schedule = "{_cron_for(fired)}"
timezone = "UTC"
grace = "{grace}"
lookback = "3650d"
""",
        encoding="utf-8",
    )
    return config


def prepare(config: Path) -> Store:
    settings = load_settings(config)
    store = Store.open(settings.database.url)
    from publisher.config import SourceSettings
    from publisher.content import import_sources

    now = datetime.now(UTC)
    import_sources(store, settings, [SourceSettings(path=str(REPO / "sample" / "content"))], as_of=now, now=now)
    store.subscribers.upsert_many(
        [
            Subscriber(email=f"reader{i}@example.org", status="confirmed", newsletters=("weekly",))
            for i in range(AUDIENCE)
        ],
        now,
    )
    return store


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_service_outlives_its_test():
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


class Service:
    """A `publisher run --no-web` subprocess whose log we can wait on."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self.handle = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "publisher", "--config", str(config), "run", "--no-web"],
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        _started.append(self.process)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} not logged within {timeout}s:\n{self.text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.handle.close()
        return code


def outbox(folder: Path) -> list[str]:
    box = mailbox.Maildir(folder / "outbox", create=False)
    recipients = []
    for key in box.keys():  # noqa: SIM118 - a Mailbox iterates over messages, not keys
        message = BytesParser(policy=policy.default).parsebytes(box.get_bytes(key))
        recipients.append(str(message["To"]))
    return recipients


def issues(store: Store) -> list:
    return store.issues.list("weekly")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path


def test_a_slot_missed_while_down_is_sent_once_on_restart_within_grace(folder, database_url):
    config = write_config(folder, database_url, fired_ago=timedelta(minutes=10))
    store = prepare(config)
    first = Service(config, folder / "run1.log")
    first.wait_for("weekly: issue 1 for slot")
    assert first.stop() == 0
    assert "scheduler stopped" in first.text()
    second = Service(config, folder / "run2.log")
    second.wait_for("active: holding")
    second.wait_for("next newsletter:weekly")
    assert second.stop() == 0
    assert len(issues(store)) == 1
    assert sorted(outbox(folder)) == sorted(f"reader{i}@example.org" for i in range(AUDIENCE))
    store.close()


def test_a_slot_missed_beyond_grace_is_logged_and_not_sent(folder, database_url):
    config = write_config(folder, database_url, fired_ago=timedelta(hours=2), grace="1h")
    store = prepare(config)
    service = Service(config, folder / "run.log")
    service.wait_for("not sent")
    assert service.stop() == 0
    assert (issues(store) == [] and not (folder / "outbox").exists()) or outbox(folder) == []
    assert store.slots.recent("weekly")[0][1] == "missed"
    store.close()


def test_two_services_on_one_database_give_one_issue_and_a_standby_takes_over(folder, database_url):
    config = write_config(folder, database_url, fired_ago=timedelta(minutes=5))
    store = prepare(config)
    first = Service(config, folder / "a.log")
    second = Service(config, folder / "b.log")
    deadline = time.monotonic() + 30
    while "standby:" not in first.text() + second.text() and time.monotonic() < deadline:
        time.sleep(0.1)
    active, standby = (second, first) if "standby:" in first.text() else (first, second)
    active.wait_for("weekly: issue 1 for slot")
    active.stop(signal.SIGKILL)  # dies without releasing anything: the OS frees the lock
    standby.wait_for("active: holding")
    standby.wait_for("next newsletter:weekly")
    assert standby.stop() == 0
    assert len(issues(store)) == 1
    assert len(outbox(folder)) == AUDIENCE
    store.close()


class _DyingTransport:
    """Delivers into the maildir, then dies mid-send like a killed process would."""

    def __init__(self, inner, after: int) -> None:
        self.inner, self.after, self.sent = inner, after, 0

    def send(self, message):
        if self.sent >= self.after:
            raise KeyboardInterrupt("the process died")
        self.sent += 1
        return self.inner.send(message)

    def send_many(self, messages):
        return [self.send(m) for m in messages]

    def close(self):
        self.inner.close()


def test_a_restart_in_the_middle_of_a_send_resumes_without_duplicates(folder, database_url):
    config = write_config(folder, database_url, fired_ago=timedelta(minutes=5), extra="batch_size = 4")
    store = prepare(config)
    settings = load_settings(config)
    from publisher.dispatch import deliver_issue
    from publisher.issues import build_issue
    from publisher.transports import make_transport

    now = datetime.now(UTC)
    slot = slot_of(
        fire_times(crontab_trigger(settings.newsletter("weekly").schedule, UTC), now - timedelta(hours=1), now)[-1], UTC
    )
    assert store.slots.claim("weekly", slot, now)
    issue = build_issue(store, settings, "weekly", slot, now)
    dying = _DyingTransport(make_transport(settings.delivery), after=10)
    with pytest.raises(KeyboardInterrupt):
        deliver_issue(store, settings, issue, now, transport=dying)
    assert len(outbox(folder)) == 10
    time.sleep(1.2)  # the dead worker's leases ([delivery] lease = 1s) expire
    service = Service(config, folder / "run.log")
    service.wait_for("weekly: resuming issue 1")
    service.wait_for("sent weekly #1")
    assert service.stop() == 0
    received = outbox(folder)
    assert set(received) == {f"reader{i}@example.org" for i in range(AUDIENCE)}
    assert len(received) - AUDIENCE <= 8  # at most the rows leased but not recorded (2 batches)
    assert store.issues.list("weekly")[0].state == "sent"
    store.close()


def test_dst_fall_back_sends_one_issue(store, make_settings):
    settings = make_settings(
        {"newsletters": {"weekly": {"schedule": "30 1 * * *", "timezone": "Europe/London", "lookback": "3650d"}}},
        database_url=store.url,
    )
    from publisher.model import Draft

    published = datetime(2025, 10, 25, 12, tzinfo=UTC)
    store.articles.ingest(
        [
            Draft(
                key="a",
                slug="a",
                title="A",
                summary_html="<p>a</p>",
                content_html="<p>a</p>",
                truncated=False,
                published=published,
            )
        ],
        site_url=settings.site.url,
        guid_authority="x",
        now=published,
        source="t",
    )
    zone = settings.newsletter("weekly").zone
    trigger = crontab_trigger("30 1 * * *", zone)
    firings = fire_times(trigger, datetime(2025, 10, 25, 12, tzinfo=UTC), datetime(2025, 10, 26, 12, tzinfo=UTC))
    assert len(firings) == 2
    outcomes = []
    for fired in firings:
        now = fired.astimezone(UTC)
        publication = Publication(settings, store, clock=fixed(now))
        outcomes.append(run_slot(publication, "weekly", slot_of(fired, zone)).outcome)
    assert outcomes[1] == "handled"
    assert len(store.issues.list("weekly")) == 1


def test_sigterm_during_a_send_finishes_the_batch_in_hand_and_a_restart_completes_it(folder, database_url):
    from tests.sink import SinkHandler, smtp_sink

    handler = SinkHandler(delay=0.1)
    with smtp_sink(handler) as port:
        config = write_config(
            folder,
            database_url,
            fired_ago=timedelta(minutes=5),
            extra=(f'batch_size = 5\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\nconnections = 1\n'),
            transport="smtp",
        )
        store = prepare(config)
        first = Service(config, folder / "run1.log")
        deadline = time.monotonic() + 30
        while sum(handler.received().values()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.stop() == 0  # SIGTERM: a clean exit, not a kill
        assert "scheduler stopped" in first.text()
        partial = sum(handler.received().values())
        assert 5 <= partial < AUDIENCE  # it stopped early rather than sending everyone first
        assert store.issues.list("weekly")[0].state == "sending"
        second = Service(config, folder / "run2.log")
        second.wait_for("weekly: resuming issue 1")
        second.wait_for("sent weekly #1")
        assert second.stop() == 0
    assert handler.received() == {f"reader{i}@example.org": 1 for i in range(AUDIENCE)}
    assert store.issues.list("weekly")[0].state == "sent"
    store.close()


def test_a_changed_time_zone_moves_the_stored_job(folder, database_url):
    config = write_config(folder, database_url, fired_ago=timedelta(days=2))
    store = prepare(config)
    first = Service(config, folder / "run1.log")
    first.wait_for("next newsletter:weekly")
    assert first.stop() == 0
    text = config.read_text().replace('timezone = "UTC"', 'timezone = "America/New_York"')
    config.write_text(text)
    second = Service(config, folder / "run2.log")
    second.wait_for("updated job newsletter:weekly")
    second.wait_for("next newsletter:weekly")
    assert second.stop() == 0
    line = next(l for l in second.text().splitlines() if "next newsletter:weekly" in l)
    assert line.rstrip().endswith(("-05:00", "-04:00"))  # 8:00 in New York, not in UTC
    store.close()


def test_an_announcement_at_a_later_time_goes_out_at_that_time_under_publisher_run(folder, database_url):
    """`publisher announce --at` with `publisher run` going: sent at its time, not at the next retry round."""
    config = write_config(folder, database_url, fired_ago=timedelta(hours=2), grace="1m")  # its digest: missed
    prepare(config).close()
    note = folder / "moving.md"
    note.write_text("---\nsubject: We are moving\n---\nThe club moves to a new address next month.\n")
    at = datetime.now(UTC) + timedelta(seconds=8)
    with Publication.open(config) as publication:
        assert publication.announce(note, "weekly", at=at).status == "scheduled"
    service = Service(config, folder / "run.log")
    service.wait_for("send the next issue waiting for its time at")
    assert not (folder / "outbox").exists()  # nothing before its time (the retry round is every 5 minutes)
    deadline = time.monotonic() + 40
    while not ((folder / "outbox").exists() and len(outbox(folder)) >= AUDIENCE) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert datetime.now(UTC) >= at
    assert sorted(outbox(folder)) == sorted(f"reader{i}@example.org" for i in range(AUDIENCE))
    assert service.stop() == 0
    assert "sending approved announcement issue 1" in service.text()


def test_an_announcement_stored_while_publisher_run_is_going_goes_out_at_its_time(folder, database_url):
    """`announce --at` after `publisher run` started: the running scheduler notices it within seconds
    and sends it at its time, not at the next retry round (every 5 minutes)."""
    config = write_config(folder, database_url, fired_ago=timedelta(hours=2), grace="1m")  # its digest: missed
    prepare(config).close()
    service = Service(config, folder / "run.log")
    service.wait_for("next retry at")
    note = folder / "moving.md"
    note.write_text("---\nsubject: We are moving\n---\nThe club moves to a new address next month.\n")
    at = datetime.now(UTC) + timedelta(seconds=5)
    with Publication.open(config) as publication:
        assert publication.announce(note, "weekly", at=at).status == "scheduled"
    service.wait_for("send the next issue waiting for its time at")
    deadline = time.monotonic() + 40
    while not ((folder / "outbox").exists() and len(outbox(folder)) >= AUDIENCE) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert datetime.now(UTC) >= at
    assert sorted(outbox(folder)) == sorted(f"reader{i}@example.org" for i in range(AUDIENCE))
    assert service.stop() == 0


def test_schedule_says_intervals_in_words_and_lists_what_waits_for_its_time(tmp_path: Path, database_url: str):
    import json

    from click.testing import CliRunner

    from publisher.cli import cli

    config = tmp_path / "config.toml"
    config.write_text(
        f'[site]\nurl = "https://news.example.org"\npostal_address = "1 Example Road"\n'
        f'[database]\nurl = "{database_url}"\n[delivery]\ntransport = "maildir"\n'
        '[scheduler]\nfeeds_interval = "90m"\n[newsletters.weekly]\nschedule = "0 8 * * mon"\n',
        encoding="utf-8",
    )

    def run(*args: str):
        return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)

    before = run("schedule").output
    assert "rebuild feeds every 1 hour 30 minutes" in before and "every 5 minutes" in before
    assert "0:05:00" not in before and "waiting for its time" not in before
    message = tmp_path / "moving.md"
    message.write_text("---\nsubject: We are moving\n---\nNew address from February.\n", encoding="utf-8")
    at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    assert run("announce", str(message), "--newsletter", "weekly", "--at", at.isoformat()).exit_code == 0
    listed = run("schedule").output
    assert "send weekly announcement 1 “We are moving” (approved, waiting for its time)" in listed
    assert f"({(at - timedelta(microseconds=1)).isoformat()} UTC)" in listed  # its slot: see create_announcement
    rows = json.loads(run("schedule", "--json").output)
    waiting = [(row["id"], datetime.fromisoformat(row["next_run_utc"])) for row in rows if row["kind"] == "send"]
    assert waiting == [("send:weekly:1", at - timedelta(microseconds=1))]
