"""The timetable's jobs, as plain functions of a `Publication`.

`publisher run` calls these from its jobs, `publisher publish` calls `publish_due` once. Each
slot of a newsletter is claimed once in the store (`slot_runs`), so restarts, a DST fall-back and
a second scheduler all end with one issue. Sending always goes through `Publication.deliver`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from publisher import timetable
from publisher.config import NewsletterSettings
from publisher.errors import PublisherError
from publisher.issues import build_issue
from publisher.model import Issue, IssueState
from publisher.selection import Skipped
from publisher.timetable import crontab_trigger

if TYPE_CHECKING:
    from publisher.publication import Publication, StopCheck

log = logging.getLogger("publisher.jobs")


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
    zone = newsletter.slot_zone
    trigger = crontab_trigger(newsletter.schedule, zone, where=f"newsletters.{newsletter.name}.schedule")
    return timetable.latest_slot(trigger, zone, now, within)


def deliver(pub: Publication, issue: Issue, should_stop: StopCheck = never, totals: Counter[str] | None = None) -> str:
    """Send the issue through `Publication.deliver`; a one-line summary for the log. `totals` adds
    up what this run did (delivered, failed, deferred, taken_over)."""
    report = pub.deliver(issue, should_stop=should_stop)
    if totals is not None:
        totals.update(report.run)
    return f"{report.get('delivered')} delivered, {report.get('failed')} failed, {report.get('deferred')} deferred"


def run_slot(pub: Publication, name: str, slot: datetime, should_stop: StopCheck = never) -> SlotOutcome:
    """Build and send the issue for one slot, once, however many callers race for it."""
    store, now = pub.store, pub.now()
    newsletter = pub.newsletter(name)
    if not store.slots.claim(name, slot, now):
        outcome, detail = store.slots.get(name, slot) or ("handled", "")
        log.info("%s: slot %s already handled (%s)", name, slot.isoformat(), outcome)
        return SlotOutcome(name, slot, "handled", outcome)
    try:
        built = build_issue(store, pub.settings, newsletter, slot, now)
        if isinstance(built, Skipped):
            store.slots.finish(name, slot, "skipped", built.reason, now)
            log.info("%s: slot %s %s", name, slot.isoformat(), built.reason)
            return SlotOutcome(name, slot, "skipped", built.reason)
        if built.state == IssueState.DRAFT:
            detail = f"issue {built.number} waits for `publisher digest approve {name}`"
            store.slots.finish(name, slot, "drafted", detail, now)
            log.info("%s: %s", name, detail)
            return SlotOutcome(name, slot, "drafted", detail, built)
        summary = deliver(pub, built, should_stop)
        store.slots.finish(name, slot, "sent", f"issue {built.number}: {summary}", pub.now())
        log.info("%s: issue %d for slot %s: %s", name, built.number, slot.isoformat(), summary)
        return SlotOutcome(name, slot, "sent", summary, built)
    except PublisherError as error:
        store.slots.finish(name, slot, "failed", str(error), pub.now())
        log.error("%s: slot %s failed: %s", name, slot.isoformat(), error)
        return SlotOutcome(name, slot, "failed", str(error))


def catch_up(pub: Publication, name: str, should_stop: StopCheck = never) -> SlotOutcome:
    """At start-up: run the newest slot if it is within grace and unhandled; log it as missed if not."""
    store, now = pub.store, pub.now()
    newsletter = pub.newsletter(name)
    slot = latest_slot(newsletter, now, max(CATCH_UP_WINDOW, newsletter.slot_grace))
    if slot is None:
        return SlotOutcome(name, None, "none")
    recorded = store.slots.get(name, slot)
    if recorded is not None and recorded[0] == "running" and store.issues.by_slot(name, slot) is None:
        store.slots.release(name, slot)  # a run that died before building anything
        recorded = None
    if recorded is not None:
        return SlotOutcome(name, slot, "handled", recorded[0])
    late = _rounded(now - slot)
    if late <= newsletter.slot_grace:
        log.info(
            "%s: slot %s was due %s ago (grace %s): sending it now", name, slot.isoformat(), late, newsletter.slot_grace
        )
        return run_slot(pub, name, slot, should_stop)
    if store.slots.claim(name, slot, now):
        detail = f"missed by {late} (grace {newsletter.slot_grace}); not sent"
        store.slots.finish(name, slot, "missed", detail, now)
        log.warning("%s: slot %s %s", name, slot.isoformat(), detail)
        return SlotOutcome(name, slot, "missed", detail)
    return SlotOutcome(name, slot, "handled")


def due(issue: Issue, newsletter: NewsletterSettings, now: datetime) -> bool:
    """An approved issue goes at its slot (an announcement's at its `--at` time), or at once when
    that time passed no more than `grace` ago; later than that it waits for `digest send --now`."""
    return issue.slot <= now and now - issue.slot <= newsletter.slot_grace


def send_ready(pub: Publication, should_stop: StopCheck = never, totals: Counter[str] | None = None) -> list[str]:
    """Send issues that are ready: approved ones whose slot has come (a released draft, an
    announcement, or a build whose send a crash cut short) and ones left half-sent (delivered
    recipients are never sent again). Oldest first."""
    lines = []
    for name in pub.settings.newsletters:
        newsletter = pub.newsletter(name)
        for issue in pub.store.issues.list(name, states=(IssueState.APPROVED, IssueState.SENDING)):
            if should_stop():
                break
            if issue.state == IssueState.SENDING and waits_for_wave(pub, issue):
                continue
            if issue.state == IssueState.APPROVED and not due(issue, newsletter, pub.now()):
                if issue.slot <= pub.now():
                    log.warning(
                        "%s: approved issue %d missed its slot %s by more than grace %s; "
                        "`publisher digest send %s --now` sends it",
                        name,
                        issue.number,
                        issue.slot.isoformat(),
                        newsletter.slot_grace,
                        name,
                    )
                continue
            verb = "resuming" if issue.state == IssueState.SENDING else f"sending approved {issue.kind}"
            log.info("%s: %s issue %d", name, verb, issue.number)
            lines.append(f"{name} #{issue.number}: {deliver(pub, issue, should_stop, totals)}")
    return lines


def waits_for_wave(pub: Publication, issue: Issue) -> bool:
    """A local-time issue between waves: nothing to send until its next wave is due."""
    now = pub.now()
    return pub.store.deliveries.next_wave(now, issue.id) is not None and not pub.store.deliveries.due_now(issue.id, now)


def start_up(pub: Publication, should_stop: StopCheck = never) -> None:
    for line in send_ready(pub, should_stop):
        log.info("sent %s", line)
    for name in pub.settings.newsletters:
        catch_up(pub, name, should_stop)


def poll_sources(pub: Publication) -> list[str]:
    result = pub.import_sources(as_of=pub.now())
    lines = []
    for report in result.reports:
        if report.added or report.updated:
            lines.append(f"{report.source}: {len(report.added)} added, {len(report.updated)} updated")
            log.info("import %s", lines[-1])
    return lines


def retry_deferred(pub: Publication, should_stop: StopCheck = never, totals: Counter[str] | None = None) -> int:
    """Send issues approved since the last look, and deferred deliveries whose retry time has come;
    returns how many issues were sent to (`totals` adds up what was done)."""
    retried = len(send_ready(pub, should_stop, totals))
    for name in pub.settings.newsletters:
        for issue in pub.store.issues.list(name):
            if (
                issue.state == IssueState.SENT
                and pub.store.deliveries.due_retries(issue.id, pub.now())
                and not should_stop()
            ):
                deliver(pub, issue, should_stop, totals)
                retried += 1
    return retried


def run_job(pub: Publication, kind: str, name: str, should_stop: StopCheck = never) -> None:
    """Run one of the timetable's jobs; its time and outcome go into the run totals (/healthz, /metrics)."""
    try:
        with pub.track("job", f"{kind}:{name}" if name else kind):
            _run_job(pub, kind, name, should_stop)
    except PublisherError as error:
        log.error("%s job failed: %s", kind, error)


def _run_job(pub: Publication, kind: str, name: str, should_stop: StopCheck) -> None:
    if kind == "newsletter":
        newsletter = pub.newsletter(name)
        slot = latest_slot(newsletter, pub.now(), newsletter.slot_grace)
        if slot is None:
            log.warning("%s: fired, but no slot within its grace time", name)
            return
        run_slot(pub, name, slot, should_stop)
    elif kind == "feeds":
        log.info("job feeds: %d files changed", pub.rebuild_feeds())
    elif kind == "poll":
        log.info("job poll: %d sources changed", len(poll_sources(pub)))
    elif kind == "retry":
        totals: Counter[str] = Counter()
        retried = retry_deferred(pub, should_stop, totals)
        log.info(
            "job retry: %d issues sent or retried: %d delivered, %d failed, %d deferred, %d taken over",
            retried,
            totals["delivered"],
            totals["failed"],
            totals["deferred"],
            totals["taken_over"],
        )
    elif kind == "inbound":
        log.info("job inbound: %d messages read", pub.poll_inbound().processed)


def publish_due(pub: Publication) -> PublishReport:
    """Everything due now, once: import sources, rebuild feeds, send due slots, retry deferrals."""
    report = PublishReport()
    if pub.settings.sources:
        report.imported = poll_sources(pub)
    report.feeds_changed = pub.rebuild_feeds()
    report.sent = send_ready(pub)
    for name in pub.settings.newsletters:
        report.slots.append(catch_up(pub, name))
    report.retried = retry_deferred(pub)
    return report
