"""What the console shows: the dashboard's figures, an issue's rendered preview, one subscriber's
history, one article with its issues. Joins the store's lookups to the timetable and the renderer."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from publisher import issues
from publisher.config import Settings
from publisher.errors import SchedulerError
from publisher.model import Article, Issue, IssueState, StoredSubscriber
from publisher.selection import Reason, Verdict
from publisher.store import Store
from publisher.timetable import crontab_trigger, fire_times, slot_of

NEXT_SLOTS = 3
LAST_ISSUES = 5
ATTENTION_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class IssueSummary:
    issue: Issue
    counts: dict[str, int]

    @property
    def recipients(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class NewsletterSummary:
    name: str
    title: str
    audience: dict[str, int]  # subscribers per status
    joined_week: int
    joined_month: int
    next_slots: tuple[datetime, ...]
    last_issues: tuple[IssueSummary, ...]
    waiting: tuple[Issue, ...]  # drafts and approved issues not yet sent


@dataclass(frozen=True)
class Dashboard:
    newsletters: tuple[NewsletterSummary, ...]
    unfinished: tuple[IssueSummary, ...]  # sending or paused: an operator may need to act
    failures: tuple[dict[str, Any], ...]  # deliveries that failed in the last week
    articles: int
    subscribers: int


@dataclass(frozen=True)
class IssuePreview:
    """The next issue (or the pending draft) as a reader gets it, and what is held back and why."""

    newsletter: str
    number: int | None
    state: str  # draft | approved | planned (not built yet) | none (nothing would go)
    subject: str
    html: str
    text: str
    included: tuple[Verdict, ...]
    held_back: tuple[Verdict, ...]
    note: str = ""


@dataclass(frozen=True)
class IssueReport:
    """One issue for the console: its articles, its ledger's counts, the failures to look at."""

    issue: Issue
    counts: dict[str, int]
    articles: tuple[Article, ...]
    overflow: tuple[Article, ...]
    failures: tuple[dict[str, Any], ...]
    next_attempt_at: datetime | None

    @property
    def recipients(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        """Recipients the send is finished with (delivered, failed or cancelled)."""
        return sum(self.counts.get(state, 0) for state in ("delivered", "failed", "cancelled"))


@dataclass(frozen=True)
class SubscriberHistory:
    subscriber: StoredSubscriber
    received: list[dict[str, Any]] = field(default_factory=list)
    returned: list[dict[str, Any]] = field(default_factory=list)
    suppressions: list[dict[str, Any]] = field(default_factory=list)


def next_slots(settings: Settings, name: str, now: datetime, count: int = NEXT_SLOTS) -> tuple[datetime, ...]:
    newsletter = settings.newsletter(name)
    try:
        trigger = crontab_trigger(newsletter.schedule, newsletter.zone, where=f"newsletters.{name}.schedule")
    except SchedulerError:
        return ()
    times = fire_times(trigger, now, now + timedelta(days=400))[:count]
    return tuple(slot_of(moment, newsletter.zone) for moment in times)


def _summary(store: Store, issue: Issue) -> IssueSummary:
    return IssueSummary(issue, store.deliveries.counts(issue.id))


def _newsletter(
    store: Store, settings: Settings, name: str, audience: dict[str, int], now: datetime
) -> NewsletterSummary:
    every = store.issues.list(name)
    started = [i for i in every if i.state not in (IssueState.DRAFT, IssueState.APPROVED)]
    return NewsletterSummary(
        name=name,
        title=settings.newsletters[name].title,
        audience=audience,
        joined_week=store.lookups.joined_since(now - timedelta(days=7)).get(name, 0),
        joined_month=store.lookups.joined_since(now - timedelta(days=30)).get(name, 0),
        next_slots=next_slots(settings, name, now),
        last_issues=tuple(_summary(store, i) for i in reversed(started[-LAST_ISSUES:])),
        waiting=tuple(i for i in every if i.state in (IssueState.DRAFT, IssueState.APPROVED)),
    )


def dashboard(store: Store, settings: Settings, now: datetime) -> Dashboard:
    audience = store.lookups.audience()
    newsletters = tuple(
        _newsletter(store, settings, name, audience.get(name, {}), now) for name in settings.newsletters
    )
    unfinished = tuple(
        _summary(store, issue)
        for name in settings.newsletters
        for issue in store.issues.list(name, states=(IssueState.SENDING, IssueState.PAUSED))
    )
    return Dashboard(
        newsletters=newsletters,
        unfinished=unfinished,
        failures=tuple(store.lookups.recent_failures(now - ATTENTION_WINDOW)),
        articles=store.articles.count(),
        subscribers=store.subscribers.count(),
    )


def preview(store: Store, settings: Settings, name: str, now: datetime) -> IssuePreview:
    """Render the pending or next issue for a sample reader (nothing is stored)."""
    with tempfile.TemporaryDirectory(prefix="publisher-preview-") as folder:
        shown = issues.write_preview(store, settings, name, Path(folder), now)
        html = shown.files["html"].read_text(encoding="utf-8") if "html" in shown.files else ""
        text = shown.files["txt"].read_text(encoding="utf-8") if "txt" in shown.files else ""
    pending = store.issues.latest(name, states=(IssueState.DRAFT, IssueState.APPROVED))
    digest = shown.digest
    if digest is None:
        state, number, subject = "none", None, ""
    else:
        number, subject = digest.number, shown.rendered.subject if shown.rendered else ""
        state = pending.state.value if pending is not None and pending.number == number else "planned"
    included = tuple(v for v in shown.verdicts if v.reason in (Reason.IN, Reason.MORE))
    # an article an earlier issue took went out with it: it is not held back from this one
    held_back = tuple(v for v in shown.held_back() if v.reason != Reason.ALREADY_SENT)
    note = shown.note or (shown.skipped.reason if shown.skipped else "")
    return IssuePreview(name, number, state, subject, html, text, included, held_back, note)


def issue_report(store: Store, issue: Issue) -> IssueReport:
    return IssueReport(
        issue,
        store.deliveries.counts(issue.id),
        tuple(store.articles.by_ids(issue.article_ids)),
        tuple(store.articles.by_ids(issue.overflow_ids)),
        tuple(store.deliveries.failures(issue.id)[:100]),
        store.deliveries.next_attempt(issue.id),
    )


def history(store: Store, subscriber: StoredSubscriber) -> SubscriberHistory:
    return SubscriberHistory(
        subscriber,
        store.lookups.received(subscriber.id),
        store.lookups.returned(subscriber.id),
        store.lookups.suppressions(subscriber.id),
    )


def article_issues(store: Store, article: Article) -> list[dict[str, Any]]:
    return store.lookups.issues_of(article.id) if article.id is not None else []
