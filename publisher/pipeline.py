"""What the timetable does, as plain functions of (store, settings, now).

`publisher run` calls these from its jobs, `publisher publish` calls `publish_due` once, and
`publisher demo` strings them together. Each slot of a newsletter is claimed once in the store
(`slot_runs`), so restarts, a DST fall-back and a second scheduler all end with one issue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from publisher import timetable
from publisher.archive import write_archive
from publisher.config import NewsletterSettings, Settings
from publisher.content import import_sources
from publisher.digest import Skipped
from publisher.dispatch import deliver_issue, start_issue
from publisher.errors import PublisherError
from publisher.feeds import build_feeds
from publisher.issues import build_issue
from publisher.model import ImportReport, Issue
from publisher.store import Store
from publisher.timetable import crontab_trigger

log = logging.getLogger("publisher.pipeline")
StopCheck = Callable[[], bool]


def never() -> bool:
    return False


# How far back start-up looks for a slot missed while the service was down.
CATCH_UP_WINDOW = timedelta(days=8)


@dataclass
class SlotOutcome:
    newsletter: str
    slot: datetime | None
    outcome: str  # sent | skipped | drafted | missed | handled | none | failed
    detail: str = ""
    issue: Issue | None = None


@dataclass
class PublishReport:
    imported: list[str] = field(default_factory=list)
    feeds_changed: int = 0
    slots: list[SlotOutcome] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    retried: int = 0


def _rounded(delta: timedelta) -> timedelta:
    return timedelta(seconds=round(delta.total_seconds()))


def latest_slot(newsletter: NewsletterSettings, now: datetime, within: timedelta) -> datetime | None:
    trigger = crontab_trigger(newsletter.schedule, newsletter.zone, where=f"newsletters.{newsletter.name}.schedule")
    return timetable.latest_slot(trigger, newsletter.zone, now, within)


def deliver(store: Store, settings: Settings, issue: Issue, now: datetime, should_stop: StopCheck = never) -> str:
    """Start the issue, publish its archive page (the view-in-browser target), then send it."""
    start_issue(store, issue, now)
    write_archive(store, settings, issue.newsletter)
    report = deliver_issue(store, settings, issue, now, should_stop=should_stop)
    return f"{report.get('delivered')} delivered, {report.get('failed')} failed, {report.get('deferred')} deferred"


def run_slot(
    store: Store, settings: Settings, name: str, slot: datetime, now: datetime, should_stop: StopCheck = never
) -> SlotOutcome:
    """Build and send the issue for one slot, once, however many callers race for it."""
    newsletter = settings.newsletter(name)
    if not store.slots.claim(name, slot, now):
        outcome, detail = store.slots.get(name, slot) or ("handled", "")
        log.info("%s: slot %s already handled (%s)", name, slot.isoformat(), outcome)
        return SlotOutcome(name, slot, "handled", outcome)
    try:
        built = build_issue(store, settings, newsletter, slot, now)
        if isinstance(built, Skipped):
            store.slots.finish(name, slot, "skipped", built.reason, now)
            log.info("%s: slot %s %s", name, slot.isoformat(), built.reason)
            return SlotOutcome(name, slot, "skipped", built.reason)
        if built.state == "draft":
            detail = f"issue {built.number} waits for `publisher digest approve {name}`"
            store.slots.finish(name, slot, "drafted", detail, now)
            log.info("%s: %s", name, detail)
            return SlotOutcome(name, slot, "drafted", detail, built)
        summary = deliver(store, settings, built, now, should_stop)
        store.slots.finish(name, slot, "sent", f"issue {built.number}: {summary}", now)
        log.info("%s: issue %d for slot %s: %s", name, built.number, slot.isoformat(), summary)
        return SlotOutcome(name, slot, "sent", summary, built)
    except PublisherError as error:
        store.slots.finish(name, slot, "failed", str(error), now)
        log.error("%s: slot %s failed: %s", name, slot.isoformat(), error)
        return SlotOutcome(name, slot, "failed", str(error))


def catch_up(store: Store, settings: Settings, name: str, now: datetime, should_stop: StopCheck = never) -> SlotOutcome:
    """At start-up: run the newest slot if it is within grace and unhandled; log it as missed if not."""
    newsletter = settings.newsletter(name)
    slot = latest_slot(newsletter, now, max(CATCH_UP_WINDOW, newsletter.grace))
    if slot is None:
        return SlotOutcome(name, None, "none")
    recorded = store.slots.get(name, slot)
    if recorded is not None and recorded[0] == "running" and store.issues.by_slot(name, slot) is None:
        store.slots.release(name, slot)  # a run that died before building anything
        recorded = None
    if recorded is not None:
        return SlotOutcome(name, slot, "handled", recorded[0])
    late = _rounded(now - slot)
    if late <= newsletter.grace:
        log.info(
            "%s: slot %s was due %s ago (grace %s): sending it now", name, slot.isoformat(), late, newsletter.grace
        )
        return run_slot(store, settings, name, slot, now, should_stop)
    if store.slots.claim(name, slot, now):
        detail = f"missed by {late} (grace {newsletter.grace}); not sent"
        store.slots.finish(name, slot, "missed", detail, now)
        log.warning("%s: slot %s %s", name, slot.isoformat(), detail)
        return SlotOutcome(name, slot, "missed", detail)
    return SlotOutcome(name, slot, "handled")


def send_ready(store: Store, settings: Settings, now: datetime, should_stop: StopCheck = never) -> list[str]:
    """Send issues that are ready: approved ones (a released draft, or a build whose send a crash
    cut short) and ones left half-sent (delivered recipients are never sent again). Oldest first."""
    lines = []
    for name in settings.newsletters:
        for issue in store.issues.list(name):
            if issue.state not in ("approved", "sending") or should_stop():
                continue
            verb = "resuming" if issue.state == "sending" else "sending approved"
            log.info("%s: %s issue %d", name, verb, issue.number)
            lines.append(f"{name} #{issue.number}: {deliver(store, settings, issue, now, should_stop)}")
    return lines


def start_up(store: Store, settings: Settings, now: datetime, should_stop: StopCheck = never) -> None:
    for line in send_ready(store, settings, now, should_stop):
        log.info("sent %s", line)
    for name in settings.newsletters:
        catch_up(store, settings, name, now, should_stop)


def rebuild_feeds(store: Store, settings: Settings) -> int:
    report = build_feeds(store, settings)
    return report.count("changed") + report.count("created") + report.count("removed")


def import_and_publish(
    store: Store, settings: Settings, sources, *, as_of: datetime, now: datetime
) -> tuple[list[ImportReport], int]:
    """Import the sources, then bring the feeds up to date with the store. Always, not only when
    this import changed something: a run killed between its commit and the rebuild left them stale,
    and the build rewrites only the files whose bytes differ (the count says how many did)."""
    reports = import_sources(store, settings, sources, as_of=as_of, now=now)
    return reports, rebuild_feeds(store, settings)


def poll_sources(store: Store, settings: Settings, now: datetime) -> list[str]:
    reports, _ = import_and_publish(store, settings, settings.sources, as_of=now, now=now)
    lines = []
    for report in reports:
        if report.added or report.updated:
            lines.append(f"{report.source}: {len(report.added)} added, {len(report.updated)} updated")
            log.info("import %s", lines[-1])
    return lines


def retry_deferred(store: Store, settings: Settings, now: datetime, should_stop: StopCheck = never) -> int:
    """Send issues approved since the last look, and deferred deliveries whose retry time has come."""
    retried = len(send_ready(store, settings, now, should_stop))
    for name in settings.newsletters:
        for issue in store.issues.list(name):
            if issue.state == "sent" and store.deliveries.due_retries(issue.id, now) and not should_stop():
                deliver(store, settings, issue, now, should_stop)
                retried += 1
    return retried


def run_job(
    store: Store, settings: Settings, kind: str, name: str, now: datetime, should_stop: StopCheck = never
) -> None:
    try:
        if kind == "newsletter":
            slot = latest_slot(settings.newsletter(name), now, settings.newsletter(name).grace)
            if slot is None:
                log.warning("%s: fired, but no slot within its grace time", name)
                return
            run_slot(store, settings, name, slot, now, should_stop)
        elif kind == "feeds":
            log.info("job feeds: %d files changed", rebuild_feeds(store, settings))
        elif kind == "poll":
            log.info("job poll: %d sources changed", len(poll_sources(store, settings, now)))
        elif kind == "retry":
            log.info("job retry: %d issues sent or retried", retry_deferred(store, settings, now, should_stop))
    except PublisherError as error:
        log.error("%s job failed: %s", kind, error)


def publish_due(store: Store, settings: Settings, now: datetime) -> PublishReport:
    """Everything due now, once: import sources, rebuild feeds, send due slots, retry deferrals."""
    report = PublishReport()
    if settings.sources:
        report.imported = poll_sources(store, settings, now)
    report.feeds_changed = rebuild_feeds(store, settings)
    report.sent = send_ready(store, settings, now)
    for name in settings.newsletters:
        report.slots.append(catch_up(store, settings, name, now))
    report.retried = retry_deferred(store, settings, now)
    return report
