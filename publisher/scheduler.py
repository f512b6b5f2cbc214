"""The timetable: APScheduler 3 with its SQLAlchemy job store in the project's database.

One job per newsletter (its crontab in its time zone), plus interval jobs for feeds, source
polling and delivery retries. Only one scheduler is active per database (see `lock.py`); a second
`publisher run` waits as a standby and takes over when the first dies.

Jobs are stored with the path of the config file, not the settings: each run reads the config
afresh. At start-up, jobs are compared with the config and changed only where a trigger changed
(re-adding them blindly would drop a missed run), and missed slots are caught up or logged.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from publisher import jobs
from publisher.clock import Clock, system_clock
from publisher.config import NewsletterSettings, Settings
from publisher.errors import PublisherError
from publisher.lock import ActiveLock, make_lock
from publisher.model import IssueKind, IssueState
from publisher.publication import SCHEDULER_LOCK, Publication
from publisher.store import Store
from publisher.timetable import crontab_trigger, human_interval, next_fire, wave_time
from publisher.zones import zone_or

log = logging.getLogger("publisher.scheduler")
# Set when this process is shutting down: a job sending an issue finishes the batch on the wire
# and stops there. It is process-wide because stored jobs are plain functions with picklable
# arguments, and a shutdown is a property of the process.
_stopping = threading.Event()
JOBS_TABLE = "apscheduler_jobs"
STANDBY_POLL = 2.0
# How often the active scheduler says it is still there (in `lock_holders`, read by /healthz).
HOLDER_REFRESH = timedelta(seconds=30)
# A one-off feeds job at the time the next article dated in the future comes due, so it is
# published on time rather than at the next `feeds_interval`; planned again after every job.
NEXT_ARTICLE_JOB = "feeds:next-article"
# Likewise a one-off send job at the time the next approved issue or announcement (`--at`) waits
# for, so it goes out at its time rather than at the next `retry_interval`.
NEXT_SEND_JOB = "retry:next-send"
ONE_OFF_JOBS = (NEXT_ARTICLE_JOB, NEXT_SEND_JOB)
# How often the active scheduler plans the one-off jobs again, so an issue approved or an
# announcement stored by another process (`announce --at`, the console) is sent at its time.
PLAN_EVERY = 10.0


@dataclass(frozen=True)
class JobSpec:
    id: str
    kind: str
    name: str
    trigger: BaseTrigger
    grace: timedelta
    description: str


def job_specs(settings: Settings) -> list[JobSpec]:
    """Every job the config asks for."""
    specs = [
        JobSpec(
            f"newsletter:{n.name}",
            "newsletter",
            n.name,
            crontab_trigger(n.schedule, n.slot_zone, where=f"{settings.path}: newsletters.{n.name}.schedule"),
            n.slot_grace,
            f"send {n.name} ({n.schedule}, {'in each reader’s own zone; built at UTC+14' if n.local else n.timezone})",
        )
        for n in settings.newsletters.values()
    ]
    intervals = [
        ("feeds", settings.scheduler.feeds_interval, "rebuild feeds"),
        ("retry", settings.scheduler.retry_interval, "send approved issues, retry deferred deliveries"),
    ]
    if settings.sources:
        intervals.append(("poll", settings.scheduler.poll_interval, "import [[sources]]"))
    if settings.inbound.imap.host:
        intervals.append(("inbound", settings.inbound.imap.interval, "read bounces from [inbound.imap]"))
    for kind, every, description in intervals:
        specs.append(
            JobSpec(
                kind,
                kind,
                "",
                IntervalTrigger(seconds=int(every.total_seconds()), timezone=UTC),
                every,
                f"{description} every {human_interval(every)}",
            )
        )
    return specs


def run_job(config_path: str, embedded: bool, kind: str, name: str) -> None:
    """What every stored job calls: read the config afresh, then do one thing."""
    with Publication.open(config_path, embedded=embedded) as publication:
        jobs.run_job(publication, kind, name, _stopping.is_set)


def schedule_table(settings: Settings, now: datetime) -> list[dict]:
    """The jobs with their next fire times, local and UTC, for `publisher schedule`."""
    rows = []
    for spec in job_specs(settings):
        upcoming = next_fire(spec.trigger, now)
        upcoming = upcoming.replace(microsecond=0) if upcoming else None
        newsletter = settings.newsletters[spec.name] if spec.kind == "newsletter" else None
        zone = newsletter.slot_zone if newsletter else UTC
        row: dict[str, object] = {
            "id": spec.id,
            "kind": spec.kind,
            "newsletter": spec.name or None,
            "description": spec.description,
            "next_run": upcoming.astimezone(zone).isoformat() if upcoming else None,
            "next_run_utc": upcoming.astimezone(UTC).isoformat() if upcoming else None,
            "grace": human_interval(spec.grace),
            "grace_seconds": int(spec.grace.total_seconds()),
        }
        if newsletter and newsletter.local:
            # The slot's wall-clock time, which each reader gets in their own zone (no offset).
            row["slot_local"] = upcoming.astimezone(zone).replace(tzinfo=None).isoformat() if upcoming else None
        rows.append(row)
    return rows


def waves_table(newsletter: NewsletterSettings, slot: datetime, zones: Mapping[str, int]) -> list[dict]:
    """A local-time slot's waves: when it reaches the readers of each time zone, earliest first."""
    waves: dict[str, int] = {}
    for zone, readers in zones.items():
        name = zone or newsletter.timezone
        waves[name] = waves.get(name, 0) + readers
    rows = []
    for name, readers in waves.items():
        where = zone_or(name, newsletter.zone)
        due = wave_time(slot, newsletter.slot_zone, where)
        rows.append(
            {
                "zone": name,
                "local": due.astimezone(where).isoformat(),
                "utc": due.astimezone(UTC).isoformat(),
                "readers": readers,
            }
        )
    return sorted(rows, key=lambda row: (row["utc"], row["zone"]))


def waiting_table(settings: Settings, store: Store, now: datetime) -> list[dict]:
    """The one-off jobs `publisher run` plans, as `schedule_table` rows: each approved issue or
    announcement waiting for its time (sent at that time, or at the next send round when it has
    passed), and the next article dated in the future (the feeds are rebuilt when it comes due)."""
    rows: list[dict[str, object]] = []
    for name, newsletter in settings.newsletters.items():
        for issue in store.issues.list(name, states=[IssueState.APPROVED]):
            what = "announcement" if issue.kind == IssueKind.ANNOUNCEMENT else "issue"
            local = newsletter.local and issue.kind != IssueKind.ANNOUNCEMENT
            zone = newsletter.slot_zone if local else newsletter.zone
            subject = f" “{issue.subject}”" if issue.subject else ""
            rows.append(
                {
                    "id": f"send:{name}:{issue.number}",
                    "kind": "send",
                    "newsletter": name,
                    "description": f"send {name} {what} {issue.number}{subject} (approved, waiting for its time)",
                    "next_run": max(issue.slot, now).astimezone(zone).isoformat(),
                    "next_run_utc": max(issue.slot, now).astimezone(UTC).isoformat(),
                    "grace": human_interval(settings.scheduler.retry_interval),
                    "grace_seconds": int(settings.scheduler.retry_interval.total_seconds()),
                    **({"slot_local": f"{newsletter.wall_clock(issue.slot):%Y-%m-%dT%H:%M:%S}"} if local else {}),
                }
            )
    if (due := store.articles.next_scheduled(now)) is not None:
        rows.append(
            {
                "id": NEXT_ARTICLE_JOB,
                "kind": "feeds",
                "newsletter": None,
                "description": "publish the next scheduled article (rebuild feeds)",
                "next_run": due.astimezone(UTC).isoformat(),
                "next_run_utc": due.astimezone(UTC).isoformat(),
                "grace": human_interval(settings.scheduler.feeds_interval),
                "grace_seconds": int(settings.scheduler.feeds_interval.total_seconds()),
            }
        )
    return sorted(rows, key=lambda row: str(row["next_run_utc"]))


def trigger_key(trigger: BaseTrigger) -> str:
    """What makes two triggers fire at the same times: a cron trigger's fields *and* time zone
    (APScheduler's str() leaves the zone out), an interval's length (not its start)."""
    return str(trigger) if isinstance(trigger, IntervalTrigger) else repr(trigger)


class Scheduler:
    """The active scheduler: holds the lock, runs the jobs, gives both up on stop."""

    def __init__(
        self, settings: Settings, store: Store, *, embedded: bool = False, clock: Clock = system_clock
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedded = embedded
        self.clock = clock
        self.lock: ActiveLock = make_lock(store)
        self._scheduler: BackgroundScheduler | None = None
        self._stop = threading.Event()
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    def _make_scheduler(self) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.store.engine, tablename=JOBS_TABLE)},
            executors={"default": {"type": "threadpool", "max_workers": 2}},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        scheduler.add_listener(lambda _event: self.plan_one_offs(scheduler), EVENT_JOB_EXECUTED)
        return scheduler

    def plan_one_offs(self, scheduler: BackgroundScheduler) -> None:
        """(Re)plan the one-off jobs: the next scheduled article, the next issue waiting for its time."""
        self.plan_next_article(scheduler)
        self.plan_next_send(scheduler)

    def plan_next_article(self, scheduler: BackgroundScheduler) -> datetime | None:
        """(Re)plan the feeds job for the next scheduled article; returns its time, or None."""
        due = self.store.articles.next_scheduled(self.clock())
        grace = self.settings.scheduler.feeds_interval
        return self._plan_once(scheduler, NEXT_ARTICLE_JOB, due, "feeds", grace, "publish the next scheduled article")

    def plan_next_send(self, scheduler: BackgroundScheduler, since: datetime | None = None) -> datetime | None:
        """(Re)plan a send job for the next approved issue or announcement waiting for its time, or
        the next wave of a local-time issue. With `since` (the previous look), one whose time came
        between that look and now is planned for now."""
        now = self.clock()
        times = [self.store.issues.next_approved_slot(since or now), self.store.deliveries.next_wave(now)]
        due = min((max(time, now) for time in times if time is not None), default=None)
        grace = self.settings.scheduler.retry_interval
        return self._plan_once(
            scheduler, NEXT_SEND_JOB, due, "retry", grace, "send the next issue waiting for its time"
        )

    def _plan_once(
        self,
        scheduler: BackgroundScheduler,
        job_id: str,
        due: datetime | None,
        kind: str,
        grace: timedelta,
        description: str,
    ) -> datetime | None:
        if due is None:
            if scheduler.get_job(job_id) is not None:
                scheduler.remove_job(job_id)
            return None
        job = scheduler.get_job(job_id)
        if job is None or job.next_run_time != due:
            scheduler.add_job(
                run_job,
                DateTrigger(run_date=due, timezone=UTC),
                id=job_id,
                name=description,
                args=(str(self.settings.path), self.embedded, kind, ""),
                misfire_grace_time=int(grace.total_seconds()),
                replace_existing=True,
            )
            log.info("%s at %s: job planned", description, due.isoformat())
        return due

    @staticmethod
    def _on_event(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning(
                "job %s missed its run at %s (beyond its grace time); not run", event.job_id, event.scheduled_run_time
            )
        else:
            log.error("job %s failed: %s", event.job_id, event.exception)

    def _reconcile(self, scheduler: BackgroundScheduler) -> None:
        """Add new jobs, update changed ones, remove ones no longer configured; leave the rest."""
        wanted = {spec.id: spec for spec in job_specs(self.settings)}
        for job in scheduler.get_jobs():
            if job.id not in wanted and job.id not in ONE_OFF_JOBS:
                log.info("removing job %s (no longer in the config)", job.id)
                job.remove()
        for spec in wanted.values():
            args = (str(self.settings.path), self.embedded, spec.kind, spec.name)
            grace = int(spec.grace.total_seconds())
            job = scheduler.get_job(spec.id)
            if job is None:
                scheduler.add_job(
                    run_job, spec.trigger, id=spec.id, name=spec.description, args=args, misfire_grace_time=grace
                )
                log.info("added job %s: %s", spec.id, spec.description)
            elif (changed := trigger_key(job.trigger) != trigger_key(spec.trigger)) or (
                job.misfire_grace_time != grace or tuple(job.args) != args
            ):
                job.modify(args=args, misfire_grace_time=grace, name=spec.description)
                if changed:
                    job.reschedule(spec.trigger)
                log.info("updated job %s: %s", spec.id, spec.description)

    def start(self) -> None:
        """Become active (the lock must be held): catch up, resume, then run the timetable."""
        scheduler = self._make_scheduler()
        _stopping.clear()
        scheduler.start(paused=True)
        self._reconcile(scheduler)
        self.plan_one_offs(scheduler)
        jobs.start_up(Publication(self.settings, self.store, clock=self.clock), self._stop.is_set)
        scheduler.resume()
        self._scheduler = scheduler
        for job in scheduler.get_jobs():
            log.info("next %s at %s", job.id, job.next_run_time.isoformat() if job.next_run_time else "never")

    def stop(self) -> None:
        """Finish the batch in hand, then release the lock."""
        _stopping.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        self.lock.release()
        self._say_held(held=False)

    def _plan_again(self, since: datetime) -> None:
        """Notice what other processes approved or stored since the last look (`since`); a
        database hiccup only delays it to the next look."""
        if self._scheduler is None:
            return
        try:
            self.plan_next_article(self._scheduler)
            self.plan_next_send(self._scheduler, since - timedelta(seconds=STANDBY_POLL))
        except PublisherError as error:
            log.warning("cannot plan the next send: %s", error)

    def _say_held(self, *, held: bool = True) -> None:
        """Record (or clear) this process as the lock's holder; a database hiccup only costs the record."""
        try:
            if held:
                self.store.runs.hold(SCHEDULER_LOCK, self.holder, self.clock())
            else:
                self.store.runs.let_go(SCHEDULER_LOCK, self.holder)
        except PublisherError as error:
            log.warning("cannot record the scheduler's lock holder: %s", error)

    def serve(self, stop: threading.Event) -> None:
        """Wait as a standby until active, run until `stop`, and stand by again if the lock is lost."""
        announced = False
        self._stop = stop
        while not stop.is_set():
            if not self.lock.acquire():
                if not announced:
                    log.info("standby: another scheduler is active (%s); waiting to take over", self.lock.description)
                    announced = True
                stop.wait(STANDBY_POLL)
                continue
            log.info("active: holding %s", self.lock.description)
            announced = False
            self._say_held()
            self.start()
            said = planned = self.clock()
            while not stop.wait(STANDBY_POLL):
                if not self.lock.held():
                    log.error("lost %s; stopping the timetable", self.lock.description)
                    break
                if self.clock() - said >= HOLDER_REFRESH:
                    self._say_held()
                    said = self.clock()
                if (self.clock() - planned).total_seconds() >= PLAN_EVERY:
                    self._plan_again(since=planned)
                    planned = self.clock()
            self.stop()
        log.info("scheduler stopped")
