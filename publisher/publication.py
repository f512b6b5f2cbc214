"""`Publication`: one publication's settings, store, clock and transport, and every operation on it.

The CLI, the web app and the timetable's jobs are faces of this object: each parses its input,
calls one method and shows the typed result. The methods join the pure core (selection,
rendering) to the edges (store, transports); none of the faces decides anything on its own.

    from publisher import Publication

    with Publication.open("config.toml") as publication:
        publication.import_sources()
        outcome = publication.send("weekly")
        print(outcome.status, outcome.report.counts if outcome.report else {})
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import jinja2

from publisher import (
    announcements,
    content,
    dispatch,
    feedback,
    issues,
    jobs,
    list_import,
    operators,
    overview,
    reconfirm,
    signup,
    subscribers,
)
from publisher.archive import archived_issues, write_archive
from publisher.clock import Clock, system_clock
from publisher.config import NewsletterSettings, Settings, SourceSettings, check_imap_password, load_settings
from publisher.errors import (
    AccessError,
    ArticleConflict,
    ConfigError,
    ContentError,
    DeliveryError,
    DigestError,
    LoginLocked,
    OperatorError,
    PublisherError,
    RateLimited,
    SiteError,
    SubscriberError,
)
from publisher.export import ExportReport, export_site
from publisher.feeds import FeedReport, build_feeds
from publisher.model import (
    Article,
    ImportReport,
    Issue,
    IssueKind,
    IssueState,
    PlannedIssue,
    StoredSubscriber,
    Subscriber,
    SubscriberStatus,
)
from publisher.operators import Actor, ApiToken, AuditEntry, Operator, Permission, Role
from publisher.resources import static_dir
from publisher.selection import Skipped
from publisher.site import ArchivedIssue, Site, Snapshot
from publisher.store import Store
from publisher.store.copy import copy_database
from publisher.store.inbound import Suppression
from publisher.store.reconfirmations import Standing
from publisher.store.runs import LockHolder, RunTotal
from publisher.store.stats import StoreStats
from publisher.store.subscribers import Lifted
from publisher.templates import environment
from publisher.transports import MaildirTransport, Transport

if TYPE_CHECKING:  # imported where used: commands that need none of them start faster
    from publisher import posting
    from publisher.inbound import files as inbound_files
    from publisher.inbound import imap as inbound_imap
    from publisher.inbound.parse import Feedback

StopCheck = Callable[[], bool]
ProgressHook = Callable[[dispatch.Progress], None]
UNFINISHED = (IssueState.SENDING, IssueState.PAUSED)
SCHEDULER_LOCK = "scheduler"  # the name `Scheduler` records its lock holder under


def never() -> bool:
    return False


def slot_words(slot: datetime, newsletter: NewsletterSettings) -> str:
    """A slot as an operator reads it: "2026-11-30 08:00 CET", or for a local-time newsletter its
    wall-clock time, "Mon 2026-11-30 08:00 in each reader's time zone" (not the UTC+14 instant)."""
    if newsletter.local:
        return f"{newsletter.wall_clock(slot):%a %Y-%m-%d %H:%M} in each reader’s time zone"
    return f"{slot.astimezone(newsletter.zone):%Y-%m-%d %H:%M %Z}"


def waits_for_slot(issue: PlannedIssue, newsletter: NewsletterSettings) -> str:
    when = slot_words(issue.slot, newsletter)
    return (
        f"issue {issue.number} is approved for its slot, {when}: `publisher run` (or `publisher publish` then) "
        f"sends it; `publisher digest send {issue.newsletter} --now` sends it now"
    )


def dry_run_maildir(settings: Settings, issue: PlannedIssue) -> Path:
    """Where a dry run writes: `dry-run/NEWSLETTER-NUMBER/` beside `[delivery] maildir`, never the
    outbox itself. An earlier dry run's messages for the same issue are removed first."""
    import mailbox

    box = settings.delivery.maildir.parent / "dry-run" / f"{issue.newsletter}-{issue.number}"
    try:
        box.parent.mkdir(parents=True, exist_ok=True)
        if (box / "cur").is_dir():
            mailbox.Maildir(box, factory=None, create=False).clear()
    except OSError as error:
        raise DeliveryError(f"{box}: cannot prepare the dry run's maildir: {error.strerror}") from None
    return box


def already_handled(issue: PlannedIssue) -> str:
    return (
        f"issue {issue.number} for this slot is already {issue.state}; to send another: "
        f"`publisher digest send {issue.newsletter} --now` (an issue of any newer articles) or "
        f"`publisher announce FILE.md --newsletter {issue.newsletter}` (a one-off message)"
    )


def waiting_text(name: str, waiting: WaitingRetries, newsletter: NewsletterSettings) -> str:
    when = waiting.next_attempt_at
    at = f"from {when.astimezone(newsletter.zone):%Y-%m-%d %H:%M %Z}" if when else "later"
    why = f" ({waiting.reason.reply})" if waiting.reason else ""
    return (
        f"{waiting.deferred:,} readers of issue {waiting.issue} are deferred{why} and are retried {at} "
        f"(`publisher run`, or `publisher digest send {name}` then); "
        f"`publisher digest send {name} --retry-now` retries them now"
    )


# --- reports -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    """What `import_sources` did: one report per source, the feed files rebuilt, the store's size."""

    reports: list[ImportReport]
    feeds_changed: int
    articles: int

    @property
    def changed(self) -> bool:
        return any(report.added or report.updated for report in self.reports)


@dataclass(frozen=True)
class BuildResult:
    """The issue for a slot (`existed`: built before this call), or why there is none."""

    newsletter: str
    issue: Issue | None = None
    skipped: Skipped | None = None
    existed: bool = False

    @property
    def reason(self) -> str:
        """Why no issue was built ("" when one was)."""
        return self.skipped.reason if self.skipped else ""


@dataclass(frozen=True)
class SendOutcome:
    """What `send` did. `status` is the contract's: sent | skipped | resumed | joined (another run was sending it)."""

    newsletter: str
    status: str
    issue: Issue | PlannedIssue | None = None  # a dry run's issue may be only planned (no id)
    report: dispatch.SendReport | None = None
    reason: str = ""
    dry_run_recipients: int | None = None  # set by a dry run: messages written, nothing recorded
    maildir: Path | None = None
    waves: tuple[dict[str, object], ...] = ()  # a local-time issue's waves still to go (`waves_left`)
    dry_run_nothing: int = 0  # a dry run's readers with nothing in the issue for their topics
    deferred_reason: DeferredReason | None = None  # the commonest reply of the deferred readers
    waiting: WaitingRetries | None = None  # a skipped send: deferred readers of the last issue

    def as_json(self) -> dict[str, object]:
        """The `publisher digest send NAME --json` object (product.md)."""
        if self.issue is None:
            return {
                "status": self.status,
                "issue": None,
                "newsletter": self.newsletter,
                "articles": 0,
                "recipients": 0,
                "delivered": 0,
                "failed": 0,
                "deferred": 0,
                "pending": 0,
                "state": None,
                "reason": self.reason,
                "run": dict(NOTHING_RUN),
                "waiting": self.waiting.as_json() if self.waiting else None,
            }
        if self.dry_run_recipients is not None:
            count = self.dry_run_recipients
            return {
                "status": self.status,
                "issue": self.issue.number,
                "newsletter": self.newsletter,
                "articles": len(self.issue.article_ids),
                "recipients": count,
                "delivered": count,
                "failed": 0,
                "deferred": 0,
                "dry_run": True,
                "maildir": str(self.maildir),
                "skipped": self.dry_run_nothing,
            }
        if self.report is None or not isinstance(self.issue, Issue):
            raise DigestError(f"{self.newsletter}: send outcome without a report")
        reason = self.deferred_reason.as_json() if self.deferred_reason else None
        return {
            **dispatch.summary(self.report, self.issue, self.status),
            "waves": list(self.waves),
            "deferred_reason": reason,
        }


NOTHING_RUN = {"frozen": 0, "delivered": 0, "failed": 0, "deferred": 0, "taken_over": 0}


@dataclass(frozen=True)
class DeferredReason:
    """The commonest last reply among an issue's deferred readers, and how many share it."""

    reply: str
    count: int

    def as_json(self) -> dict[str, object]:
        return {"reply": self.reply, "count": self.count}


@dataclass(frozen=True)
class WaitingRetries:
    """Readers of an issue already sent who wait, deferred, for their retry time."""

    issue: int
    deferred: int
    next_attempt_at: datetime | None
    reason: DeferredReason | None

    def as_json(self) -> dict[str, object]:
        return {
            "issue": self.issue,
            "deferred": self.deferred,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
            "deferred_reason": self.reason.as_json() if self.reason else None,
        }


@dataclass(frozen=True)
class AnnounceOutcome:
    """What `announce` did. `status`: sent | resumed | scheduled | skipped (already sent)."""

    newsletter: str
    status: str
    issue: Issue | PlannedIssue
    report: dispatch.SendReport | None = None
    reason: str = ""
    dry_run_recipients: int | None = None
    maildir: Path | None = None
    deferred_reason: DeferredReason | None = None

    def as_json(self) -> dict[str, object]:
        """The `publisher announce --json` object: the digest send's keys, plus `kind`, `subject` and `at`."""
        about = {"kind": "announcement", "subject": self.issue.subject, "at": self.issue.slot.isoformat()}
        if self.report is not None and isinstance(self.issue, Issue):
            reason = self.deferred_reason.as_json() if self.deferred_reason else None
            return {**dispatch.summary(self.report, self.issue, self.status), **about, "deferred_reason": reason}
        count = self.dry_run_recipients or 0
        found = {
            "status": self.status,
            "issue": self.issue.number,
            "newsletter": self.newsletter,
            **about,
            "articles": 0,
            "recipients": count,
            "delivered": count,
            "failed": 0,
            "deferred": 0,
            "pending": 0,
            "state": self.issue.state,
            "run": dict(NOTHING_RUN),
        }
        if self.dry_run_recipients is not None:
            return {**found, "dry_run": True, "maildir": str(self.maildir)}
        return {**found, "reason": self.reason}


@dataclass(frozen=True)
class SiteBuild:
    """What `build_site` did: feed and archive files changed, and the export (when one was written)."""

    feeds_changed: int
    export: ExportReport | None = None


@dataclass(frozen=True)
class DatabaseStatus:
    url: str  # the password hidden
    schema_version: int
    articles: int
    subscribers: int
    confirmed: int


@dataclass(frozen=True)
class Health:
    """What /healthz shows: the store answers, who runs the timetable, when each kind of work last succeeded."""

    database: bool
    scheduler: LockHolder | None = None
    runs: tuple[RunTotal, ...] = ()


@dataclass(frozen=True)
class Metrics:
    """The store's counts and run totals, read at scrape time (for /metrics)."""

    stats: StoreStats
    runs: tuple[RunTotal, ...]
    newsletters: tuple[str, ...] = ()  # the configured ones: each gets its series, 0 before its first send


@dataclass(frozen=True)
class IssueStatus:
    """Where an issue's ledger stands: counts per delivery state and the next retry."""

    issue: Issue
    counts: dict[str, int]
    next_attempt_at: datetime | None

    @property
    def recipients(self) -> int:
        return sum(self.counts.values())


# --- the publication -----------------------------------------------------------------------


class Publication:
    """One publication: open it, call its methods, close it (or use it as a context manager).

    The store is opened on first use, so reading settings or `--help` needs no database; the
    transport is `[delivery]`'s unless one is given (tests pass a memory transport).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        *,
        clock: Clock = system_clock,
        transport: Transport | None = None,
        embedded: bool = False,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.transport = transport
        self.embedded = embedded
        if store is not None:
            self.__dict__["store"] = store

    @classmethod
    def open(
        cls,
        config: str | Path | Settings,
        *,
        clock: Clock = system_clock,
        transport: Transport | None = None,
        embedded: bool = False,
    ) -> Publication:
        """A publication from a config file (or settings already loaded); `embedded` uses built-in defaults."""
        settings = config if isinstance(config, Settings) else load_settings(config, embedded=embedded)
        return cls(settings, clock=clock, transport=transport, embedded=embedded)

    @cached_property
    def store(self) -> Store:
        return Store.open(self.settings.database.url)

    @cached_property
    def mailer(self) -> signup.Mailer:
        """The confirmation and welcome mails of the sign-up flows."""
        return signup.Mailer(self.settings, self.transport)

    def now(self) -> datetime:
        return self.clock()

    def close(self) -> None:
        """Release the database's connections and the mailer's transport (only what was opened)."""
        if "mailer" in self.__dict__:
            self.mailer.close()
        if "store" in self.__dict__:
            self.store.close()

    def __enter__(self) -> Publication:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def newsletter(self, name: str) -> NewsletterSettings:
        """A configured newsletter; an unknown name is a clear error."""
        return self.settings.newsletter(name)

    # --- content ---------------------------------------------------------------------------

    def import_sources(
        self, sources: Sequence[str] = (), *, fmt: str = "auto", as_of: datetime | None = None
    ) -> ImportResult:
        """Import files, folders or feed URLs (default: `[[sources]]`), then bring the feeds up to date.

        The feeds are rebuilt whether or not this import changed anything: a run killed between its
        commit and the rebuild left them stale, and the build rewrites only files whose bytes differ.
        """
        tags = {source.path: source.tags for source in self.settings.sources}
        chosen = (
            tuple(SourceSettings(path=source, format=fmt, tags=tags.get(source, ())) for source in sources)
            or self.settings.sources
        )
        if not chosen:
            raise ConfigError(f"{self.settings.path}: nothing to import: name a file or add [[sources]] to the config")
        now = self.now()
        with self.track("import"):
            reports = content.import_sources(self.store, self.settings, chosen, as_of=as_of or now, now=now)
        return ImportResult(reports, self.rebuild_feeds(), self.store.articles.count())

    def retag(self) -> list[tuple[Article, tuple[str, ...]]]:
        """Apply `[[sources]] tags` and `[[tag_rules]]` to the stored articles again (tags are only
        added); rebuilds the feeds. Returns each article whose tags changed, with its new tags."""
        changed = content.retag(self.store, self.settings)
        if changed:
            self.rebuild_feeds()
        return changed

    def articles(self, limit: int | None = None) -> list[Article]:
        """Stored articles, newest first."""
        return self.store.articles.newest(limit)

    def build_feeds(self) -> FeedReport:
        """Write the site's and each tag's RSS, Atom and JSON feeds; unchanged files are left alone."""
        with self.track("feeds"):
            return build_feeds(self.store, self.settings, now=self.now())

    def rebuild_feeds(self) -> int:
        """Bring what readers fetch up to date: the feeds, the newsletters' archive pages (their
        links follow `site.url`) and, with `[site] export_dir`, the static export. Returns how many
        feed and archive files changed."""
        return self.build_site(self.settings.site.export_dir).feeds_changed

    # --- the public site -------------------------------------------------------------------

    def site_snapshot(self) -> Snapshot:
        """What the public site shows now: articles published by now, their tags, archived issues."""
        now = self.now()
        return Snapshot(
            articles=tuple(self.store.articles.newest(until=now)),
            tags=self.store.articles.tags(until=now),
            issues={name: self._archived(name) for name in self.settings.newsletters},
        )

    def _archived(self, name: str) -> tuple[ArchivedIssue, ...]:
        return tuple(
            ArchivedIssue(i.number, i.subject, i.slot, len(i.article_ids) + len(i.overflow_ids))
            for i in archived_issues(self.store, name)
        )

    def site_fingerprint(self) -> tuple:
        """Changes whenever a page of the public site would: for caches of rendered pages."""
        issues = tuple((name, self._archived(name)) for name in self.settings.newsletters)
        return (self.store.articles.fingerprint(self.now()), issues)

    def site(self, env: jinja2.Environment | None = None) -> Site:
        """The public site's pages over a fresh snapshot (pass the app's template environment to reuse it)."""
        return Site(self.settings, self.site_snapshot(), env or environment(self.settings))

    def build_site(self, out: Path | None = None) -> SiteBuild:
        """Rebuild the feeds and the archive pages; with `out`, export the whole site there."""
        report = self.build_feeds()
        changed = report.count("changed") + report.count("created") + report.count("removed")
        for name in self.settings.newsletters:
            changed += len(write_archive(self.store, self.settings, name))
        if out is None:
            return SiteBuild(changed)
        exported = export_site(
            self.site(),
            out,
            feeds=self.settings.feeds.dir,
            archive=self.settings.archive.dir,
            static=static_dir(self.settings.templates.dir),
        )
        return SiteBuild(changed, exported)

    def export_site(self, out: Path | None = None) -> SiteBuild:
        """`publisher site build`: everything `build_site` does, into `out` or `[site] export_dir`."""
        target = out or self.settings.site.export_dir
        if target is None:
            raise SiteError(f"{self.settings.path}: say where to write the site: --out DIR or [site] export_dir")
        return self.build_site(target)

    # --- issues ----------------------------------------------------------------------------

    def preview(self, name: str, out: Path) -> issues.Preview:
        """Render the pending draft, or the issue that would be built now, for a sample recipient."""
        return issues.write_preview(self.store, self.settings, name, out, self.now())

    def build(self, name: str, slot: datetime | None = None, *, force: bool = False) -> BuildResult:
        """The issue for `slot`, built once; a draft if approval is required. `slot` without an
        offset is a wall-clock time (see `NewsletterSettings.slot_at`); without a slot: this
        minute, or for a local-time newsletter its next slot (so that readers get it at the
        schedule's time in their zone, not at this minute's wall-clock time at UTC+14)."""
        now = self.now()
        newsletter = self.newsletter(name)
        if slot is not None:
            moment = newsletter.slot_at(slot)
        elif newsletter.local:
            moment = self.next_slot(newsletter, now)
        else:
            moment = now.replace(second=0, microsecond=0)
        existed = self.store.issues.by_slot(name, moment) is not None
        built = issues.build_issue(self.store, self.settings, name, moment, now, force=force)
        if isinstance(built, Skipped):
            return BuildResult(name, skipped=built)
        return BuildResult(name, issue=built, existed=existed)

    @staticmethod
    def next_slot(newsletter: NewsletterSettings, now: datetime) -> datetime:
        """The newsletter's next slot after `now`, from its schedule."""
        from publisher.timetable import next_slot

        where = f"newsletters.{newsletter.name}.schedule"
        if (upcoming := next_slot(newsletter.schedule, newsletter.slot_zone, now, where=where)) is None:
            raise DigestError(f"{where}: {newsletter.schedule!r} never fires again")
        return upcoming

    def approve(self, name: str, number: int | None = None) -> Issue:
        """Release a draft for sending (default: the newest draft)."""
        self.newsletter(name)
        return issues.approve(self.store, name, number, self.now())

    def when_sent(self, issue: Issue) -> str:
        """When an approved issue goes out, and how to send it now (for the operator)."""
        newsletter, now = self.newsletter(issue.newsletter), self.now()
        if issue.slot > now:
            return waits_for_slot(issue, newsletter)
        if jobs.due(issue, newsletter, now):
            return (
                f"issue {issue.number}'s slot has come: the next `publisher run` round or `publisher publish` "
                f"sends it, or `publisher digest send {issue.newsletter}` now"
            )
        return (
            f"issue {issue.number}'s slot passed more than grace ({newsletter.grace}) ago, so the timetable "
            f"leaves it: `publisher digest send {issue.newsletter}` sends it"
        )

    def cancel(self, name: str, number: int) -> Issue:
        """Cancel an issue; one that had not started gives its articles back to the next issue."""
        self.newsletter(name)
        return issues.cancel(self.store, name, number, self.now())

    def issues(self, name: str) -> list[Issue]:
        """A newsletter's issues, oldest first."""
        self.newsletter(name)
        return self.store.issues.list(name)

    def issue(self, name: str, number: int | None = None, states: Iterable[str] | None = None) -> Issue:
        """Issue `number`, or the newest in one of `states`."""
        self.newsletter(name)
        wanted = tuple(states) if states else None
        found = self.store.issues.get(name, number) if number else self.store.issues.latest(name, states=wanted)
        if found is None:
            what = f"issue {number}" if number else f"issue that is {' or '.join(wanted or ('built',))}"
            raise DigestError(f"{name} has no {what}")
        return found

    def write_archive(self, name: str) -> list[Path]:
        """Rewrite the newsletter's web archive pages and issues feed; returns the files changed."""
        self.newsletter(name)
        return write_archive(self.store, self.settings, name)

    def deliver(
        self,
        issue: Issue,
        *,
        progress: ProgressHook | None = None,
        should_stop: StopCheck = never,
        at_once: bool = False,
        join: bool = False,
    ) -> dispatch.SendReport:
        """Start the issue (freezing its audience), publish its archive page, then send what is due.

        The one way an issue goes out: `send`, the timetable and the demo all come here. `at_once`
        (`digest send --now`): a local-time issue goes to every reader now, in no waves, and one
        already between its waves sends the waves left now.
        """
        self._require_postal_address()
        now = self.now()
        newsletter = self.newsletter(issue.newsletter)
        frozen = dispatch.start_issue(self.store, issue, now, None if at_once else newsletter)
        if at_once and newsletter.local:
            self.store.deliveries.bring_waves_forward(issue.id, now)
        write_archive(self.store, self.settings, issue.newsletter)  # the "view in browser" page
        if progress is not None:
            progress(dispatch.Progress(total=self.audience_left(issue)))
        report = dispatch.deliver_issue(
            self.store,
            self.settings,
            issue,
            now,
            transport=self.transport,
            progress=progress,
            should_stop=should_stop,
            started=True,
            join=join,
        )
        report.frozen = frozen
        return report

    def _require_postal_address(self, what: str = "every newsletter") -> None:
        """Bulk mail carries the sender's postal address; none is configured until the operator sets one."""
        if not self.settings.site.postal_address.strip():
            raise DeliveryError(
                f"{self.settings.path}: site.postal_address is empty; {what} must carry the "
                "sender's postal address (CAN-SPAM, the GDPR's imprint rules): set it in [site]"
            )

    def finish_leftovers(self, name: str, should_stop: StopCheck = never) -> SendOutcome | None:
        """With nothing new to send: the newest sent issue's due retries, and rows a dead sender
        left `sending`, are sent now (status "resumed"); None when there were none."""
        issue = self.store.issues.latest(name, states=(IssueState.SENT,))
        if issue is None:
            return None
        counts = self.store.deliveries.counts(issue.id)
        if not (counts.get("sending") or self.store.deliveries.due_retries(issue.id, self.now())):
            return None
        report = self.deliver_started(issue, should_stop=should_stop)
        if not any(report.run.values()):
            return None
        return self._outcome(name, "resumed", issue, report, reason="sent the leftovers of an issue already sent")

    def deliver_started(self, issue: Issue, *, should_stop: StopCheck = never) -> dispatch.SendReport:
        """Send what is due of an issue already started (a delivery-only worker's one job)."""
        return dispatch.deliver_issue(
            self.store, self.settings, issue, transport=self.transport, should_stop=should_stop, started=True
        )

    def next_to_send(
        self, name: str, *, force: bool = False, dry_run: bool = False, immediately: bool = False
    ) -> tuple[Issue | PlannedIssue | None, str, str]:
        """(issue, status, reason): the unfinished issue to resume, else the oldest approved digest
        (one whose slot is still ahead only `immediately`), else a new one for this minute (this
        very moment, `immediately`); no issue (status "skipped") when there is nothing to send.
        A dry run also takes a draft, and only plans a new issue (nothing is stored)."""
        self.newsletter(name)
        if unfinished := self.store.issues.latest(name, states=UNFINISHED):
            if unfinished.state == IssueState.PAUSED:
                raise DigestError(f"{name} issue {unfinished.number} is paused: `publisher digest resume {name}`")
            return unfinished, "resumed", ""
        now = self.now()
        waiting = self.store.issues.list(name, states=(IssueState.APPROVED,), kind=IssueKind.DIGEST)
        if waiting and (immediately or dry_run or waiting[0].slot <= now):
            return waiting[0], "sent", ""
        if waiting:
            return None, "skipped", waits_for_slot(waiting[0], self.newsletter(name))
        if dry_run and (draft := self.store.issues.latest(name, states=(IssueState.DRAFT,))):
            return draft, "sent", ""
        newsletter = self.newsletter(name)
        slot = now if immediately else now.replace(second=0, microsecond=0)
        if newsletter.local and not immediately:  # its readers' mornings, not this minute's wall-clock time
            slot = self.next_slot(newsletter, now)
        make = issues.plan_issue if dry_run else issues.build_issue
        built = make(self.store, self.settings, name, slot, now, force=force)
        if isinstance(built, Skipped):
            return None, "skipped", built.reason
        if built.state == IssueState.DRAFT and not dry_run:
            raise DigestError(f"{name} issue {built.number} is a draft: `publisher digest approve {name}` first")
        if built.state in (IssueState.SENT, IssueState.CANCELLED):
            return None, "skipped", already_handled(built)
        if built.slot > now and not dry_run:
            return None, "skipped", waits_for_slot(built, newsletter)
        return built, "sent", ""

    def send(
        self,
        name: str,
        *,
        force: bool = False,
        dry_run: bool = False,
        immediately: bool = False,
        retry_now: bool = False,
        progress: ProgressHook | None = None,
        should_stop: StopCheck = never,
    ) -> SendOutcome:
        """Send `name`'s issue now: resume an unfinished one, else the approved one whose slot has
        come (any approved one, `immediately`), else build one. When `should_stop()` turns true
        (SIGTERM), the messages on the wire finish and are recorded; a rerun sends the rest.

        With `dry_run`, the issue that would go (a draft too, or one only planned) is rendered for
        every current recipient into `dry_run_maildir` (beside the outbox, never in it); nothing is
        approved, stored or recorded. With `retry_now`, the deferred readers of the newest issue
        that went out are made due and sent to now (`retry_deferred_now`), and nothing else.
        """
        if retry_now:
            return self.retry_deferred_now(name, progress=progress, should_stop=should_stop)
        issue, status, reason = self.next_to_send(name, force=force, dry_run=dry_run, immediately=immediately)
        if issue is None and not dry_run and (racing := self.store.issues.latest(name, states=(IssueState.SENDING,))):
            issue, status = racing, "joined"  # another run started it after we looked: join it
        if issue is None and not dry_run and (leftover := self.finish_leftovers(name, should_stop)) is not None:
            return leftover
        if issue is None:
            waiting = None if dry_run else self.waiting_retries(name)
            if waiting is not None:
                reason = f"{reason}; {waiting_text(name, waiting, self.newsletter(name))}"
            return SendOutcome(name, status, reason=reason, waiting=waiting)
        if dry_run:
            box = dry_run_maildir(self.settings, issue)
            written = dispatch.dry_run(self.store, self.settings, issue, MaildirTransport(box), self.now())
            nothing = max(0, len(self.store.deliveries.audience(name)) - written)  # nothing for their topics
            return SendOutcome(name, status, issue, dry_run_recipients=written, maildir=box, dry_run_nothing=nothing)
        if not isinstance(issue, Issue):
            raise DigestError(f"{name}: issue {issue.number} was planned but not stored")
        report = self.deliver(  # join: another run's share too
            issue, progress=progress, should_stop=should_stop, at_once=immediately, join=True
        )
        if waves := tuple(self.waves_left(issue)):
            status = "sending"  # a local-time issue between its waves: the rest go at their time
        return SendOutcome(name, status, issue, report, waves=waves, deferred_reason=self.deferred_reason(report))

    def waves_left(self, issue: Issue) -> list[dict[str, object]]:
        """A local-time issue's waves still to go, earliest first: `due` (UTC), `local` (the
        wall-clock time they get), `zones` (their readers' zones), `left` and `readers`."""
        newsletter = self.newsletter(issue.newsletter)
        if not newsletter.local or issue.is_announcement:
            return []
        zones = [zone or newsletter.timezone for zone in self.store.subscribers.zones(newsletter.name)]
        waves: list[dict[str, object]] = []
        for due, left, total in self.store.deliveries.waves(issue.id):
            if not left:
                continue
            at = [z for z in dict.fromkeys(zones) if due and dispatch.wave_due(issue.slot, newsletter, z) == due]
            waves.append(
                {
                    "due": due.astimezone(UTC).isoformat() if due else None,
                    "local": f"{newsletter.wall_clock(issue.slot):%Y-%m-%dT%H:%M}",
                    "zones": at,
                    "left": left,
                    "readers": total,
                }
            )
        return waves

    def _outcome(
        self, name: str, status: str, issue: Issue, report: dispatch.SendReport, reason: str = ""
    ) -> SendOutcome:
        """A send's outcome, with the commonest reply of its deferred readers when there are any."""
        return SendOutcome(name, status, issue, report, reason=reason, deferred_reason=self.deferred_reason(report))

    def deferred_reason(self, report: dispatch.SendReport) -> DeferredReason | None:
        """The commonest last reply among the issue's deferred readers (None when none is deferred)."""
        if not report.get("deferred"):
            return None
        found = self.store.deliveries.deferred_reasons(report.issue_id)
        return DeferredReason(*found[0]) if found else None

    def waiting_retries(self, name: str) -> WaitingRetries | None:
        """The deferred readers of `name`'s newest issue that went out, waiting for their retry time."""
        issue = self.store.issues.latest(name, states=(IssueState.SENT,))
        if issue is None or not (deferred := self.store.deliveries.counts(issue.id).get("deferred", 0)):
            return None
        found = self.store.deliveries.deferred_reasons(issue.id)
        reason = DeferredReason(*found[0]) if found else None
        return WaitingRetries(issue.number, deferred, self.store.deliveries.next_attempt(issue.id), reason)

    def retry_deferred_now(
        self, name: str, *, progress: ProgressHook | None = None, should_stop: StopCheck = never
    ) -> SendOutcome:
        """Make the deferred readers of `name`'s newest started issue due now, then send to them."""
        self.newsletter(name)
        issue = self.store.issues.latest(name, states=(IssueState.SENDING, IssueState.SENT))
        if issue is None or not self.store.deliveries.retry_now(issue.id, self.now()):
            what = f"issue {issue.number}" if issue else "no issue that went out"
            return SendOutcome(name, "skipped", reason=f"nothing to retry: {what} has no deferred readers")
        if progress is not None:
            progress(dispatch.Progress(total=self.audience_left(issue)))
        report = dispatch.deliver_issue(
            self.store,
            self.settings,
            issue,
            transport=self.transport,
            progress=progress,
            should_stop=should_stop,
            started=True,
        )
        return self._outcome(name, "resumed", issue, report, reason="retried the deferred readers now")

    def announce(
        self,
        path: Path,
        name: str,
        *,
        at: datetime | None = None,
        dry_run: bool = False,
        progress: ProgressHook | None = None,
    ) -> AnnounceOutcome:
        """Send a one-off Markdown message to `name`'s confirmed audience, now or at `at`.

        The same file is one announcement: a re-run (after a crash, or by mistake) resumes it or
        says it went, never sends it twice. A future `at` stores it for `run`/`publish` to send.
        """
        newsletter = self.newsletter(name)
        message = announcements.read_announcement(path)
        now = self.now()
        when = at or now
        if when.tzinfo is None:
            raise DigestError(f"--at {when.isoformat()} has no time zone offset (e.g. +00:00)")
        if dry_run:
            planned = PlannedIssue(
                newsletter=name,
                number=self.store.issues.next_number(name),
                slot=when,
                state=IssueState.APPROVED,
                subject=message.subject,
                created_at=now,
                kind=IssueKind.ANNOUNCEMENT,
                preheader=message.preheader,
                body=message.body,
            )
            maildir = dry_run_maildir(self.settings, planned)
            written = dispatch.dry_run(self.store, self.settings, planned, MaildirTransport(maildir), now)
            return AnnounceOutcome(name, "sent", planned, dry_run_recipients=written, maildir=maildir)
        issue = self.store.issues.announcement(name, message.key) or self.store.issues.create_announcement(
            newsletter=name,
            at=when,
            subject=message.subject,
            preheader=message.preheader,
            body=message.body,
            content_key=message.key,
            now=now,
            guid_authority=self.settings.site.domain,
        )
        if issue.state == IssueState.SENT:
            return AnnounceOutcome(name, "skipped", issue, reason=f"already sent as {name} issue {issue.number}")
        if issue.state == IssueState.PAUSED:
            raise DigestError(f"{name} announcement {issue.number} is paused: `publisher digest resume {name}`")
        if issue.state == IssueState.APPROVED and issue.slot > now:
            when_text = f"{issue.slot.astimezone(newsletter.zone):%Y-%m-%d %H:%M %Z}"
            return AnnounceOutcome(name, "scheduled", issue, reason=f"`publisher run` sends it at {when_text}")
        status = "resumed" if issue.state == IssueState.SENDING else "sent"
        report = self.deliver(issue, progress=progress)
        return AnnounceOutcome(name, status, issue, report, deferred_reason=self.deferred_reason(report))

    def audience_left(self, issue: Issue) -> int:
        """Recipients still to try (for a progress bar), or the whole audience of a finished issue."""
        counts = self.store.deliveries.counts(issue.id)
        return sum(counts.get(state, 0) for state in ("pending", "sending", "deferred")) or sum(counts.values())

    def status(self, name: str, number: int | None = None) -> IssueStatus:
        """Delivery counts of issue `number` (default: the newest that started sending)."""
        started = (IssueState.SENDING, IssueState.PAUSED, IssueState.SENT, IssueState.CANCELLED)
        issue = self.issue(name, number, started)
        return IssueStatus(issue, self.store.deliveries.counts(issue.id), self.store.deliveries.next_attempt(issue.id))

    def pause(self, name: str) -> Issue:
        """Stop sending the current issue; messages on the wire finish and are recorded."""
        return dispatch.pause(self.store, self.issue(name, None, (IssueState.SENDING,)), self.now())

    def resume(self, name: str, *, progress: ProgressHook | None = None, should_stop: StopCheck = never) -> SendOutcome:
        """Continue sending the paused issue where it stopped."""
        issue = dispatch.resume(self.store, self.issue(name, None, (IssueState.PAUSED,)), self.now())
        return self._outcome(name, "resumed", issue, self.deliver(issue, progress=progress, should_stop=should_stop))

    def cancel_sending(self, name: str) -> tuple[Issue, int]:
        """Cancel the issue that is sending or paused; returns it and the recipients who won't get it."""
        return dispatch.cancel(self.store, self.issue(name, None, UNFINISHED), self.now())

    # --- subscribers -----------------------------------------------------------------------

    def add_subscriber(
        self,
        email: str,
        *,
        name: str = "",
        newsletters: Sequence[str] = (),
        confirmed: bool = False,
        topics: Sequence[str] = (),
        timezone: str = "",
        consent_text: str = "",
        source: str = "cli",
    ) -> tuple[StoredSubscriber, bool]:
        """Add one subscriber (or newsletters to an existing one, and its topics and time zone when
        given); returns it and whether it is new. `consent_text`: what a confirmed one agreed to."""
        known = self.settings.newsletters
        now = self.now()
        person = replace(
            subscribers.make_subscriber(
                email,
                name,
                tuple(newsletters) or tuple(known),
                known=known,
                confirmed=confirmed,
                source=source,
                now=now,
            ),
            topics=subscribers.check_topics(topics, {t.name: t.label for t in self.settings.topics}, "--topic"),
            timezone=subscribers.clean_timezone(timezone, "--timezone"),
            consent_text=consent_text.strip()[:2000] if confirmed else "",
        )
        if (found := self.store.subscribers.get(person.email)) and self.store.subscribers.suppression(found.id):
            raise SubscriberError(subscribers.suppressed_hint(found.email))
        is_new = self.store.subscribers.add(person, now)
        stored = self.store.subscribers.get(person.email)
        if stored is None:
            raise SubscriberError(f"{person.email} was not stored")
        return stored, is_new

    def import_subscribers(
        self,
        path: Path,
        *,
        confirmed: bool = False,
        newsletters: Sequence[str] = (),
        maps: Sequence[str] = (),
        dry_run: bool = False,
        on_error: Callable[[str], None] = lambda error: None,
        on_plan: Callable[[list_import.Plan], object] = lambda plan: None,
        on_progress: Callable[[list_import.ListImport], None] = lambda done: None,
    ) -> tuple[list_import.Plan, list_import.ListImport]:
        """Import a CSV file: `email,name,newsletters`, or a Mailchimp, Substack, Buttondown or
        listmonk export (recognised from its header row), streamed in batches. `on_plan` hears the
        detected format and mapping before any row is written, `on_progress` the counts after each
        batch; `dry_run` writes nothing."""
        for name in newsletters:
            self.newsletter(name)
        known = list_import.Known(tuple(self.settings.newsletters), {t.name: t.label for t in self.settings.topics})
        now = self.now()
        plan, rows = list_import.read_rows(
            path, list_import.parse_maps(maps, newsletters), known, confirmed=confirmed, now=now
        )
        on_plan(plan)
        writer = None if dry_run else self.store.subscribers
        existing = self.store.subscribers.known if dry_run else None
        return plan, list_import.import_rows(
            writer, rows, now, on_error=on_error, known=existing, on_progress=on_progress
        )

    def pending_to_ask(self, newsletter: str | None = None, *, again: bool = False) -> list[str]:
        """Pending addresses that `confirm_pending` would ask: never asked before, and with `again`
        those asked longer ago than `[web] confirm_expiry` who have not confirmed."""
        if newsletter:
            self.newsletter(newsletter)
        waiting = self.store.reconfirmations.not_asked(newsletter)
        if again:
            waiting += self.store.reconfirmations.expired(newsletter, self.now() - self.settings.web.confirm_expiry)
        return waiting

    def pending_standing(self, newsletter: str | None = None) -> Standing:
        """Where the pending addresses stand: never asked, asked and waiting, confirmed since asked."""
        if newsletter:
            self.newsletter(newsletter)
        return reconfirm.standing(self.settings, self.store, newsletter, self.now())

    def confirm_pending(self, newsletter: str | None = None, *, again: bool = False) -> reconfirm.ReconfirmReport:
        """Send each pending address one confirmation mail through a ledger (exactly once, resumable);
        `again`: also those whose link expired unanswered, once more."""
        if newsletter:
            self.newsletter(newsletter)
        self._require_postal_address("a mail asking a whole list to confirm")
        return reconfirm.send_confirmations(
            self.settings, self.store, newsletter=newsletter, again=again, transport=self.transport, clock=self.clock
        )

    def purge_unanswered(self, *, delete: bool = False) -> list[str]:
        """The pending addresses asked to confirm whose link (`[web] confirm_expiry`) has run out
        unanswered; with `delete`, they are deleted: the end of a re-permission campaign.
        Addresses never asked are left for `confirm_pending`."""
        asked_before = self.now() - self.settings.web.confirm_expiry
        if not delete:
            return self.store.reconfirmations.unanswered(asked_before)
        return self.store.reconfirmations.purge_unanswered(asked_before)

    def failures(self, issue: Issue) -> list[dict[str, Any]]:
        """Each failed or deferred recipient of `issue` with the server's last reply."""
        return [dict(row) for row in self.store.deliveries.failures(issue.id)]

    def subscribers(self, *, status: str | None = None, newsletter: str | None = None) -> list[StoredSubscriber]:
        """Subscribers, optionally of one status and one newsletter (an unknown newsletter is an error)."""
        if newsletter:
            self.newsletter(newsletter)
        return self.store.subscribers.all(status=status, newsletter=newsletter)

    def export_subscribers(self, *, status: str | None = None) -> str:
        """Subscribers as CSV: the import format, plus status, consent time and source."""
        return subscribers.to_csv(self.store.subscribers.all(status=status))

    def remove_subscriber(self, email: str) -> str:
        """Unsubscribe an address from every newsletter and forget its name; returns the address."""
        address = subscribers.normalise_email(email)
        if not self.store.subscribers.remove(address):
            raise SubscriberError(f"{address} is not a subscriber")
        return address

    # --- the sign-up flows (the web app) ---------------------------------------------------

    def subscribe(self, request: signup.SignUp, *, ip: str, honeypot: str = "", counted: bool = False) -> str:
        """One subscription request; the outcome is for the log only (every visitor sees the same page).
        `counted`: `count_subscribe_request` already counted it against the IP's limit."""
        return signup.subscribe(
            self.settings, self.store, self.mailer, request, ip=ip, now=self.now(), honeypot=honeypot, counted=counted
        )

    def count_subscribe_request(self, ip: str) -> None:
        """Count a subscription request against the IP's hourly limit (RateLimited past it), so the
        rest — which may send mail — can run after the answer went out."""
        signup.count_request(self.settings, self.store, ip, self.now())

    def read_confirmation(self, token: str) -> signup.Confirmation:
        return signup.read_confirmation(self.settings, self.store, token)

    def confirm(self, token: str) -> signup.Confirmation:
        return signup.confirm(self.settings, self.store, self.mailer, token, self.now())

    def read_unsubscribe(self, token: str) -> signup.Unsubscribe:
        return signup.read_unsubscribe(self.settings, self.store, token)

    def unsubscribe(self, token: str) -> signup.Unsubscribe:
        return signup.unsubscribe(self.settings, self.store, token, self.now())

    def resubscribe(self, token: str) -> signup.Unsubscribe:
        return signup.resubscribe(self.settings, self.store, token, self.now())

    def read_preferences(self, token: str) -> StoredSubscriber:
        return signup.read_preferences(self.settings, self.store, token)

    def save_preferences(
        self,
        token: str,
        *,
        name: str,
        newsletters: Sequence[str],
        topics: Sequence[str],
        timezone: str | None = None,
    ) -> StoredSubscriber:
        """Save the preferences page: name, newsletters, topics and (given) time zone."""
        return signup.save_preferences(
            self.settings,
            self.store,
            token,
            name=name,
            newsletters=newsletters,
            topics=topics,
            now=self.now(),
            timezone=timezone,
        )

    # --- what comes back (bounces, complaints, unsubscribe requests) ------------------------

    def import_inbound(self, paths: Sequence[Path]) -> inbound_files.ImportReport:
        """Read .eml files, mbox files or maildirs of returned mail and act on each message once."""
        from publisher.inbound import files as inbound_files

        return inbound_files.import_paths(self.store, self.settings, list(paths), self.now())

    def poll_inbound(self) -> inbound_imap.PollReport:
        """Read `[inbound] imap`'s mailbox once; processed mail moves to its folder."""
        from publisher.inbound import imap as inbound_imap

        check_imap_password(self.settings)
        return inbound_imap.poll(self.settings, self.store, self.now())

    def serve_inbound(self, stop: threading.Event) -> None:
        """Receive returned mail on `[inbound] listen` until `stop` is set."""
        from publisher.inbound import listener as inbound_listener  # aiosmtpd: only for this

        inbound_listener.serve(self.settings, self.store, stop)

    def inbound_messages(self, kind: str | None = None, limit: int = 50) -> list[dict]:
        """The newest recorded messages (of `kind`), newest first, without their raw text."""
        return self.store.inbound.messages(kind, limit, with_raw=False)

    def inbound_message(self, message_id: int) -> dict:
        """One recorded message with its raw text; an unknown id is a PublisherError."""
        found = self.store.inbound.message(message_id)
        if found is None:
            raise PublisherError(f"no inbound message {message_id} (see `publisher inbound list`)")
        return found

    def take_event(self, event: Feedback, *, source: str, event_id: str) -> feedback.Recorded:
        """An ESP webhook's event, its signature already verified, acted on once."""
        return feedback.apply_event(self.store, self.settings, event, self.now(), source=source, event_id=event_id)

    def claim_nonce(self, nonce: str, keep: timedelta) -> bool:
        """True the first time a signed webhook's one-time token is used (within `keep`); a replay gets False."""
        return self.store.inbound.claim_nonce(nonce, self.now(), keep)

    def release_nonce(self, nonce: str) -> None:
        """Forget a claimed token whose events could not be recorded, so the provider's retry is taken."""
        self.store.inbound.release_nonce(nonce)

    def suppressed(self) -> list[Suppression]:
        """Addresses nothing is sent to, with why, when and the evidence."""
        return self.store.inbound.suppressed()

    def unsuppress(self, email: str, reason: str) -> Lifted:
        """Lift a suppression (kept with `reason`): the address goes back to the status it had
        before (pending stays pending, unsubscribed stays unsubscribed; nothing invents consent)."""
        address = subscribers.normalise_email(email)
        if not reason.strip():
            raise SubscriberError("--reason: say why the address may receive mail again (it is kept with the lift)")
        lifted = self.store.subscribers.unsuppress(address, reason.strip()[:1000], self.now())
        if lifted is None:
            raise SubscriberError(f"no such subscriber: {address}")
        if not lifted.reasons:
            raise SubscriberError(f"{address} is not suppressed (it is {lifted.status})")
        return lifted

    # --- operators, API tokens and the audit log --------------------------------------------

    def audit(self, actor: Actor | str, action: str, detail: Mapping[str, Any] | None = None) -> None:
        """Write who did what, now, to the audit log (secrets in `detail` are masked; the actor
        and every text in `detail` are one line)."""
        label = operators.one_line(actor.label if isinstance(actor, Actor) else actor)
        self.store.audit.write(self.now(), label, action, operators.audit_detail(detail or {}))

    def audit_log(
        self, actor: Actor, *, limit: int = 100, before: int | None = None, who: str = ""
    ) -> list[AuditEntry]:
        """The audit log, newest first (owners and admin tokens only); `who` keeps one actor's entries."""
        operators.require(actor, Permission.ADMIN)
        return self.store.audit.newest(limit, before=before, actor=who)

    def operators(self) -> list[Operator]:
        return self.store.operators.all()

    def add_operator(self, email: str, role: Role, password: str = "", *, actor: Actor) -> tuple[Operator, bool]:
        """Add an operator, or change an existing one's role (and password, when given); returns it
        and whether it is new. A new password unlocks the account and ends its sessions."""
        operators.require(actor, Permission.ADMIN)
        address = subscribers.normalise_email(email)
        found = self.store.operators.get(address)
        if found is None:
            if not password:
                raise OperatorError(f"{address}: a new operator needs a password")
            added = self.store.operators.add(address, role, operators.hash_password(password), self.now())
            self.audit(actor, "operator.add", {"email": address, "role": role.value})
            return added, True
        if found.role == Role.OWNER and role != Role.OWNER:
            self._keep_an_owner(address)
        self.store.operators.update(
            found.id, self.now(), role=role, password_hash=operators.hash_password(password) if password else ""
        )
        self.audit(actor, "operator.update", {"email": address, "role": role.value, "new_password": bool(password)})
        return self.store.operators.get(address) or found, False

    def _keep_an_owner(self, address: str) -> None:
        if self.store.operators.count(Role.OWNER) <= 1:
            raise OperatorError(f"{address} is the only owner: make another operator an owner first")

    def remove_operator(self, email: str, *, actor: Actor) -> Operator:
        """Remove an operator: their sessions end with them and the API tokens they created are
        revoked (each audited); the last owner stays."""
        operators.require(actor, Permission.ADMIN)
        address = subscribers.normalise_email(email)
        found = self.store.operators.get(address)
        if found is None:
            raise OperatorError(f"{address} is not an operator")
        if found.role == Role.OWNER:
            self._keep_an_owner(address)
        self.store.operators.remove(address)
        self.audit(actor, "operator.remove", {"email": address})
        creator = operators.operator_actor(found).label
        for name in self.store.tokens.revoke_created_by(creator, self.now()):
            self.audit(actor, "token.revoke", {"name": name, "because": f"{creator} was removed"})
        return found

    def login(self, email: str, password: str, *, ip: str = "") -> Operator:
        """Check a console login. A wrong address, a wrong password and a locked account get the same
        answer and take the same time (the audit log tells them apart); the fifth wrong password in a
        row locks the account for `operators.LOCK_FOR`, however many attempts arrive at once."""
        now = self.now()
        address = email.strip().lower()[:320]
        if ip and not self.store.web_events.hit(
            "console-login", ip, now, window=operators.LOGIN_WINDOW, limit=operators.LOGIN_ATTEMPTS
        ):
            self.audit("anonymous", "login.rate_limited", {"email": address, "ip": ip})
            raise RateLimited("too many login attempts from this address: try again later", operators.LOGIN_WINDOW)
        if not self.store.web_events.hit(
            "console-login-account", address, now, window=operators.LOGIN_WINDOW, limit=operators.ACCOUNT_ATTEMPTS
        ):  # whatever IP addresses the attempts come from
            self.audit("anonymous", "login.rate_limited", {"email": address, "ip": ip, "per": "account"})
            raise RateLimited("too many login attempts for this account: try again later", operators.LOGIN_WINDOW)
        found = self.store.operators.get(address)
        claimed = found is not None and self.store.operators.claim_attempt(
            found.id, now, limit=operators.MAX_FAILED_LOGINS, lock_for=operators.LOCK_FOR
        )
        if found is not None and not claimed:
            operators.verify_password(None, password)  # as long as any other refusal
            self._refuse_locked(found, "login.locked", ip)
        matches = operators.verify_password(found.password_hash if found else None, password)  # timed alike
        if found is None or not matches:
            if found is not None and self.store.operators.login_failed(
                found.id, now, limit=operators.MAX_FAILED_LOGINS, lock_for=operators.LOCK_FOR
            ):
                self._refuse_locked(found, "login.lock", ip)
            self.audit(f"operator:{address}" if found else "anonymous", "login.failed", {"email": address, "ip": ip})
            raise AccessError(operators.WRONG_LOGIN)
        rehashed = operators.hash_password(password) if operators.needs_rehash(found.password_hash) else ""
        if not self.store.operators.login_succeeded(found.id, now, rehashed):  # locked while the password was checked
            self._refuse_locked(found, "login.locked", ip)
        self.audit(operators.operator_actor(found), "login", {"ip": ip})
        return found

    def _refuse_locked(self, operator: Operator, action: str, ip: str) -> NoReturn:
        """Refuse a locked account with the answer a wrong password gets; the audit log says until when."""
        until = (self.store.operators.by_id(operator.id) or operator).locked_until or self.now()
        self.audit(f"operator:{operator.email}", action, {"ip": ip, "locked_until": until.isoformat()})
        raise LoginLocked(operators.WRONG_LOGIN, until)

    def session_operator(self, operator_id: int, generation: int) -> Operator | None:
        """The operator a console session belongs to, unless they were removed or logged out everywhere."""
        found = self.store.operators.by_id(operator_id)
        return found if found is not None and found.session_generation == generation else None

    def start_session(self, operator: Operator) -> tuple[str, str]:
        """A new console session (a new id at every login): returns the cookie's value and the CSRF token."""
        session_id, digest, csrf = operators.mint_session()
        self.store.sessions.start(
            digest, operator.id, operator.session_generation, csrf, self.now(), operators.SESSION_LIFETIME
        )
        return session_id, csrf

    def session(self, session_id: str) -> tuple[Operator, str] | None:
        """The operator and CSRF token of a live console session; None when it ended, expired or went idle."""
        if not session_id:
            return None
        digest, now = operators.token_digest(session_id), self.now()
        found = self.store.sessions.get(digest)
        if found is None:
            return None
        operator = self.session_operator(found.operator_id, found.generation)
        if operator is None or now >= found.expires_at or now - found.seen_at > operators.SESSION_IDLE:
            self.store.sessions.end(digest)
            return None
        if now - found.seen_at > timedelta(minutes=1):
            self.store.sessions.seen(digest, now)
        return operator, found.csrf

    def end_session(self, session_id: str, operator: Operator) -> None:
        """Log out this browser: its session id stops working at once."""
        self.store.sessions.end(operators.token_digest(session_id))
        self.audit(operators.operator_actor(operator), "logout")

    def logout_everywhere(self, operator: Operator) -> None:
        """End every console session of `operator` (on every browser)."""
        self.store.operators.end_sessions(operator.id, self.now())
        self.store.sessions.end_all(operator.id)
        self.audit(operators.operator_actor(operator), "logout.everywhere")

    def tokens(self) -> list[ApiToken]:
        return self.store.tokens.all()

    def create_token(self, name: str, scope: Permission, *, actor: Actor) -> tuple[ApiToken, str]:
        """A new API token: returns the stored record and the token itself, which is shown once and kept nowhere."""
        operators.require(actor, Permission.ADMIN)
        secret, digest = operators.mint_token()
        stored = self.store.tokens.create(operators.check_token_name(name), scope, digest, self.now(), actor.label)
        self.audit(actor, "token.create", {"name": stored.name, "scope": scope.value})
        return stored, secret

    def revoke_token(self, name: str, *, actor: Actor) -> ApiToken:
        operators.require(actor, Permission.ADMIN)
        revoked = self.store.tokens.revoke(name.strip(), self.now())
        if revoked is None:
            raise OperatorError(f"there is no active token named {name.strip()!r}")
        self.audit(actor, "token.revoke", {"name": revoked.name})
        return revoked

    def token_actor(self, secret: str) -> Actor:
        """Who a bearer token speaks for; AccessError for an unknown or revoked token."""
        found = self.store.tokens.by_digest(operators.token_digest(secret)) if secret.strip() else None
        if found is None or not found.active:
            raise AccessError("the API token is unknown or revoked")
        self.store.tokens.used(found.id, self.now())
        return operators.token_actor(found)

    # --- what other systems do through the API ----------------------------------------------

    def subscriber_page(
        self, *, after: int = 0, limit: int = 50, status: str | None = None, newsletter: str | None = None
    ) -> list[StoredSubscriber]:
        """Up to `limit` subscribers after id `after`, in id order (the API's cursor pagination)."""
        if newsletter:
            self.newsletter(newsletter)
        return self.store.subscribers.page(after=after, limit=limit, status=status, newsletter=newsletter)

    def create_subscriber(
        self,
        email: str,
        *,
        name: str = "",
        newsletters: Sequence[str] = (),
        topics: Sequence[str] = (),
        consent: tuple[datetime, str] | None = None,
        source: str = "api",
    ) -> StoredSubscriber:
        """A new subscriber: pending and sent one confirmation mail (double opt-in), or confirmed at
        once when `consent` (when and what they agreed to) is given. A known address is an error."""
        wanted = signup.read_signup(self.settings, email, name, newsletters, topics)
        if self.store.subscribers.get(wanted.email) is not None:
            raise SubscriberError(f"{wanted.email} is already a subscriber")
        now = self.now()
        at, text = consent or (None, "")
        if at is not None and at > now:
            raise SubscriberError("consent.at is in the future")
        self.store.subscribers.add(
            Subscriber(
                email=wanted.email,
                name=wanted.name,
                status=SubscriberStatus.CONFIRMED if consent else SubscriberStatus.PENDING,
                newsletters=wanted.newsletters,
                topics=wanted.topics,
                source=source,
                consent_at=at,
                consent_text=text,
            ),
            now,
        )
        person = self.subscriber(wanted.email)
        if consent is None:
            outcome = signup.ask_to_confirm(self.settings, self.store, self.mailer, person, wanted, now)
            if outcome != "sent":
                raise DeliveryError(f"{person.email} was added, but the confirmation mail was not sent: see the log")
        return person

    def update_subscriber(
        self,
        email: str,
        *,
        name: str | None = None,
        newsletters: Sequence[str] | None = None,
        topics: Sequence[str] | None = None,
    ) -> StoredSubscriber:
        """Change a subscriber's name, newsletters (exactly these) or topics; what is None stays."""
        person = self.subscriber(email)
        if newsletters is not None:
            self.set_newsletters(person.email, newsletters)
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = subscribers.clean_name(name)
        if topics is not None:
            values["topics"] = signup.clean_topics(topics, self.settings)
        if values:
            self.store.subscribers.update(person.id, self.now(), **values)
        return self.subscriber(person.email)

    def post_article(self, posted: posting.Posted) -> tuple[Article, bool]:
        """Store an article another system sent (sanitised like an import), then bring the feeds and
        the site up to date. Returns it and whether it is new. An explicit `slug` of an article
        posted earlier updates it; a slug (given, or made from the title) that is taken otherwise —
        by an imported article, or by a posted one when no slug was given — is an ArticleConflict."""
        from publisher import posting

        now = self.now()
        draft = posting.draft(posted, now)
        taken = self.store.articles.by_key(draft.key) or self.store.articles.by_slug(draft.slug)
        if taken is not None and taken.source != posting.SOURCE:
            raise ArticleConflict(
                f"slug {draft.slug!r} belongs to an imported article (not one posted through the API): "
                "give another slug or title"
            )
        if taken is not None and not posted.slug:
            raise ArticleConflict(
                f'an article with the slug {draft.slug!r} exists: to update it, send "slug": {draft.slug!r}; '
                "otherwise give another title or slug"
            )
        with self.track("import", posting.SOURCE):
            report = self.store.articles.ingest(
                [draft], guid_authority=self.settings.site.domain, now=now, source=posting.SOURCE
            )
        self.rebuild_feeds()
        found = self.store.articles.by_key(draft.key)
        if found is None:
            raise ContentError(f"the article {draft.slug!r} was not stored")
        return found, bool(report.added)

    def issue_status(self, name: str, number: int) -> IssueStatus:
        """Issue `number` of `name` with its delivery counts (all zero before it starts sending)."""
        issue = self.issue(name, number)
        return IssueStatus(issue, self.store.deliveries.counts(issue.id), self.store.deliveries.next_attempt(issue.id))

    def send_issue(self, name: str, number: int) -> Issue:
        """Check that issue `number` can go now (approved, or sending after an interruption) and mark
        nothing yet: the caller then runs `deliver` (the API does it after answering)."""
        issue = self.issue(name, number)
        if issue.state == IssueState.DRAFT:
            raise DigestError(f"{name} issue {number} is a draft: approve it first")
        if issue.state not in (IssueState.APPROVED, IssueState.SENDING):
            raise DigestError(f"{name} issue {number} is {issue.state}: only an approved issue can be sent")
        return issue

    # --- what the console shows -------------------------------------------------------------

    def dashboard(self) -> overview.Dashboard:
        """Subscribers per newsletter and their growth, the next slots, the last issues with their
        delivery counts, and what needs attention (unfinished sends, recent failures)."""
        return overview.dashboard(self.store, self.settings, self.now())

    def preview_issue(self, name: str) -> overview.IssuePreview:
        """The pending draft (or the issue that would be built now) rendered for a sample reader, in
        memory: HTML, text, and each article held back with its reason."""
        self.newsletter(name)
        return overview.preview(self.store, self.settings, name, self.now())

    def issue_report(self, name: str, number: int) -> overview.IssueReport:
        """Issue `number` with its articles, its delivery counts and its failed or deferred recipients."""
        return overview.issue_report(self.store, self.issue(name, number))

    def find_subscribers(
        self,
        text: str = "",
        *,
        status: str | None = None,
        newsletter: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[StoredSubscriber], int]:
        """Subscribers whose address or name contains `text`, newest first; and how many match."""
        if newsletter:
            self.newsletter(newsletter)
        return self.store.lookups.subscribers(text, status=status, newsletter=newsletter, limit=limit, offset=offset)

    def subscriber(self, email: str) -> StoredSubscriber:
        address = subscribers.normalise_email(email)
        found = self.store.subscribers.get(address)
        if found is None:
            raise SubscriberError(f"{address} is not a subscriber")
        return found

    def subscriber_history(self, email: str) -> overview.SubscriberHistory:
        """One subscriber: consent, the issues sent to them, mail that came back, suppressions."""
        return overview.history(self.store, self.subscriber(email))

    def set_newsletters(self, email: str, newsletters: Sequence[str]) -> StoredSubscriber:
        """Subscribe an address to exactly these newsletters (the ones left are opted out of)."""
        person = self.subscriber(email)
        for name in newsletters:
            self.newsletter(name)
        if person.status == SubscriberStatus.BOUNCED:
            raise SubscriberError(subscribers.suppressed_hint(person.email))
        self.store.subscribers.set_newsletters(person.id, newsletters, self.now())
        return self.subscriber(person.email)

    def find_articles(self, text: str = "", *, limit: int = 50, offset: int = 0) -> tuple[list[Article], int]:
        """Articles whose title, slug or tags contain `text`, newest first; and how many match."""
        return self.store.lookups.articles(text, limit=limit, offset=offset)

    def article(self, slug: str) -> tuple[Article, list[dict[str, Any]]]:
        """One article and the issues it went into."""
        found = self.store.articles.by_slug(slug)
        if found is None:
            raise ContentError(f"there is no article {slug!r}")
        return found, overview.article_issues(self.store, found)

    # --- the database ----------------------------------------------------------------------

    def database_status(self) -> DatabaseStatus:
        """The database (password hidden), its schema version and what it holds."""
        store = self.store
        return DatabaseStatus(
            store.safe_url,
            store.migrate(),
            store.articles.count(),
            store.subscribers.count(),
            store.subscribers.count("confirmed"),
        )

    def copy_database(self, target_url: str, *, progress: Callable[[str, int], None]) -> tuple[str, dict[str, int]]:
        """Copy every row into another, empty database; returns where (password hidden) and rows per table."""
        target = Store.open(target_url)
        try:
            return target.safe_url, copy_database(self.store, target, progress=progress)
        finally:
            target.close()

    def healthy(self) -> bool:
        """The database answers."""
        return self.store.ping()

    def health(self) -> Health:
        """The database answers; the scheduler's lock holder; the last success of each kind of run."""
        if not self.store.ping():
            return Health(database=False)
        return Health(True, self.store.runs.holder(SCHEDULER_LOCK), tuple(self.store.runs.totals()))

    def metrics(self) -> Metrics:
        """Issues, deliveries, subscribers, mail taken in and run totals, as the store has them now."""
        return Metrics(
            self.store.stats.snapshot(self.now()), tuple(self.store.runs.totals()), tuple(self.settings.newsletters)
        )

    @contextmanager
    def track(self, kind: str, name: str = "") -> Iterator[None]:
        """Count the work inside (its time, and whether it raised a PublisherError) in the run totals."""
        started = time.monotonic()
        try:
            yield
        except PublisherError as error:
            took = time.monotonic() - started
            self.store.runs.record(kind, name, self.now(), took, str(error) or type(error).__name__)
            raise
        self.store.runs.record(kind, name, self.now(), time.monotonic() - started)

    # --- the timetable ---------------------------------------------------------------------

    def publish_due(self) -> jobs.PublishReport:
        """Everything due now, once: import sources, rebuild feeds, send due slots, retry deferrals."""
        return jobs.publish_due(self)

    def schedule(self) -> list[dict[str, object]]:
        """The timetable's jobs with their next fire times, then the one-off jobs: approved issues
        and announcements waiting for their time, the next article dated in the future. A
        local-time newsletter's row also has its next slot's `waves` (per time zone of its readers)
        and the waves its sending issue still has to go (`sending_waves`)."""
        from publisher.scheduler import schedule_table, waiting_table, waves_table

        rows = schedule_table(self.settings, self.now())
        for row in rows:
            newsletter = self.settings.newsletters.get(str(row["newsletter"]))
            if row["kind"] != "newsletter" or newsletter is None or not newsletter.local:
                continue
            upcoming = row["next_run_utc"]
            zones = self.store.subscribers.zones(newsletter.name)
            row["waves"] = waves_table(newsletter, datetime.fromisoformat(str(upcoming)), zones) if upcoming else []
            row["sending_waves"] = [
                {"issue": issue.number, **wave}
                for issue in self.store.issues.list(newsletter.name, states=(IssueState.SENDING,))
                for wave in self.waves_left(issue)
            ]
        return rows + waiting_table(self.settings, self.store, self.now())
