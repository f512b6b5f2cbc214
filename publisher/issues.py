"""Issues of a newsletter: build one for a slot, preview the next, approve, cancel, load for rendering.

The store does the I/O, `digest.select` decides; this module joins them. The scheduler and
`publisher digest send` call `build_issue`; it is safe to call again for the same slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

from publisher.announcements import render_announcement
from publisher.config import NewsletterSettings, Settings
from publisher.errors import DigestError, IssueConflict
from publisher.files import private_folder, write_private
from publisher.message import compile_message, message_id
from publisher.model import Issue, IssueKind, IssueState, PlannedIssue, RenderedIssue
from publisher.render import render_digest, render_subject
from publisher.selection import HELD_BACK, Digest, Reason, Selection, Skipped, Verdict, select
from publisher.store import Store
from publisher.store.articles import article_id
from publisher.timetable import next_slot
from publisher.tokens import preferences_url, unsubscribe_url
from publisher.topics import edition

_ATTEMPTS = 5


def _newsletter(settings: Settings, newsletter: str | NewsletterSettings) -> NewsletterSettings:
    return newsletter if isinstance(newsletter, NewsletterSettings) else settings.newsletter(newsletter)


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None:
        raise DigestError(f"{what} {moment.isoformat()} has no time zone offset")
    return moment.astimezone(UTC)


def next_selection(
    store: Store,
    newsletter: NewsletterSettings,
    slot: datetime,
    now: datetime,
    *,
    force: bool = False,
    before: int | None = None,
) -> Selection | Skipped:
    """What an issue for `slot` would hold now, from the store's articles, previous issue and ledger
    (the previous issue before number `before`, when given: the context a pending issue was built in)."""
    previous = store.issues.previous(newsletter.name, before=before)
    watermark, built_at = previous if previous else (None, None)
    candidates = store.articles.new_since(watermark, built_at)
    returned = store.issues.returned_ids(newsletter.name)
    known = {article.id for article in candidates}
    candidates += store.articles.by_ids(sorted(returned - known))
    return select(
        candidates,
        watermark=watermark,
        built_at=built_at,
        sent_ids=store.issues.sent_ids(newsletter.name),
        newsletter=newsletter,
        slot=slot,
        now=now,
        force=force,
        returned=returned,
    )


def plan_issue(
    store: Store,
    settings: Settings,
    newsletter: str | NewsletterSettings,
    slot: datetime,
    now: datetime,
    *,
    force: bool = False,
) -> PlannedIssue | Skipped:
    """The issue `slot` would get now, not stored (no id): for dry runs, and for `build_issue`."""
    config = _newsletter(settings, newsletter)
    slot, now = _utc(slot, "slot"), _utc(now, "now")
    chosen = next_selection(store, config, slot, now, force=force)
    if isinstance(chosen, Skipped):
        return chosen
    number = store.issues.next_number(config.name)
    digest = Digest(config.name, number, slot, chosen.articles, chosen.overflow, _since(store, config, chosen.since))
    return PlannedIssue(
        newsletter=config.name,
        number=number,
        slot=slot,
        state=IssueState.DRAFT if config.require_approval else IssueState.APPROVED,
        article_ids=tuple(article_id(a) for a in chosen.articles),
        overflow_ids=tuple(article_id(a) for a in chosen.overflow),
        watermark=chosen.watermark,
        subject=render_subject(edition(digest, (), settings.topics, config) or digest, settings, config),
        created_at=now,
    )


def build_issue(
    store: Store,
    settings: Settings,
    newsletter: str | NewsletterSettings,
    slot: datetime,
    now: datetime,
    *,
    force: bool = False,
) -> Issue | Skipped:
    """The issue for `slot`: the one already stored, or a new one (draft if approval is required).

    Returns `Skipped` (nothing stored) with fewer than `min_articles` new articles; `force`
    lowers the minimum to one article. Safe under restarts and concurrent schedulers: one slot,
    one issue.
    """
    config = _newsletter(settings, newsletter)
    slot, now = _utc(slot, "slot"), _utc(now, "now")
    for _ in range(_ATTEMPTS):
        if existing := store.issues.by_slot(config.name, slot):
            return existing
        planned = plan_issue(store, settings, config, slot, now, force=force)
        if isinstance(planned, Skipped):
            # A racing builder may have taken the articles for this very slot meanwhile.
            return store.issues.by_slot(config.name, slot) or planned
        try:
            issue, _created = store.issues.create(
                newsletter=config.name,
                slot=slot,
                state=planned.state,
                article_ids=list(planned.article_ids),
                overflow_ids=list(planned.overflow_ids),
                watermark=planned.watermark,
                subject=planned.subject,
                now=now,
                guid_authority=settings.site.domain,
            )
        except IssueConflict:
            continue
        return issue
    raise DigestError(
        f"{config.name}: could not build the issue for {slot.isoformat()}: "
        f"other writers kept changing the newsletter; try again"
    )


@dataclass(frozen=True)
class Outlook:
    """The pending or next issue (`digest`, None when nothing would go), and every candidate
    article with its reason: what is in, and what is held back and why."""

    digest: Digest | None
    verdicts: tuple[Verdict, ...]
    skipped: Skipped | None = None  # a scheduled run would skip the next issue (too few articles)
    note: str = ""  # why there is no issue to show


def _newest_first(verdicts: list[Verdict]) -> tuple[Verdict, ...]:
    return tuple(sorted(verdicts, key=lambda v: (v.article.published, v.article.id or 0), reverse=True))


def _pending_verdicts(store: Store, config: NewsletterSettings, pending: Issue, now: datetime) -> tuple[Verdict, ...]:
    """A built issue's articles (in, more), and the candidates of its time held back, or left for the next issue."""
    chosen = [Verdict(a, Reason.IN) for a in store.articles.by_ids(pending.article_ids)]
    chosen += [Verdict(a, Reason.MORE) for a in store.articles.by_ids(pending.overflow_ids)]
    taken = {*pending.article_ids, *pending.overflow_ids}
    context = next_selection(store, config, pending.slot, now, force=True, before=pending.number)
    for verdict in context.verdicts:
        if verdict.article.id in taken:
            continue
        later = verdict.reason in (Reason.IN, Reason.MORE)
        chosen.append(Verdict(verdict.article, Reason.NEXT_ISSUE) if later else verdict)
    return _newest_first(chosen)


def _nothing_new(store: Store, config: NewsletterSettings, since: datetime) -> str:
    first = store.issues.watermark(config.name) is None
    hours = config.lookback.total_seconds() / 3600
    span = f"{hours / 24:g} days" if hours % 24 == 0 else f"{hours:g} hours"
    hint = f" (a first issue looks back {span}: newsletters.{config.name}.lookback)"
    return (
        f"{config.name}: nothing to preview: no new articles since "
        f"{since.astimezone(config.zone):%Y-%m-%d %H:%M %Z}{hint if first else ''}"
    )


def preview_digest(store: Store, settings: Settings, newsletter: str | NewsletterSettings, now: datetime) -> Outlook:
    """What to preview: the newsletter's unsent draft or approved digest, else the next issue,
    with every candidate article's reason."""
    config = _newsletter(settings, newsletter)
    now = _utc(now, "now")
    pending = store.issues.latest(config.name, states=("draft", "approved"), kind=IssueKind.DIGEST)
    if pending is not None:
        return Outlook(load_digest(store, pending, config), _pending_verdicts(store, config, pending, now))
    chosen = next_selection(store, config, now, now, force=True)
    if isinstance(chosen, Skipped):
        return Outlook(None, chosen.verdicts, note=_nothing_new(store, config, chosen.since))
    strict = next_selection(store, config, now, now)
    # dated like the issue it previews: a local-time newsletter's next slot (Monday 08:00), not this minute
    slot = (next_slot(config.schedule, config.slot_zone, now) if config.local else None) or now
    digest = Digest(
        config.name,
        store.issues.next_number(config.name),
        slot,
        chosen.articles,
        chosen.overflow,
        _since(store, config, chosen.since),
    )
    return Outlook(digest, chosen.verdicts, strict if isinstance(strict, Skipped) else None)


def _since(store: Store, config: NewsletterSettings, since: datetime) -> datetime | None:
    """The "since" a new issue's summary names: the previous issue's watermark; none for a first
    issue (its lookback start moves from run to run and means nothing to a reader)."""
    return since if store.issues.watermark(config.name) is not None else None


def load_digest(store: Store, issue: PlannedIssue, newsletter: NewsletterSettings) -> Digest:
    """A stored issue with its articles, ready for `render.render_digest`."""
    since = store.issues.watermark(issue.newsletter, before=issue.number)  # none for a first issue
    articles = store.articles.by_ids(issue.article_ids)
    overflow = store.articles.by_ids(issue.overflow_ids)
    return Digest(issue.newsletter, issue.number, issue.slot, tuple(articles), tuple(overflow), since)


def render_issue(store: Store, settings: Settings, issue: PlannedIssue) -> RenderedIssue:
    """Render a stored issue once (the delivery engine personalises the result per recipient)."""
    newsletter = settings.newsletter(issue.newsletter)
    if issue.is_announcement:
        return render_announcement(issue, settings=settings, newsletter=newsletter)
    loaded = load_digest(store, issue, newsletter)
    digest = edition(loaded, (), settings.topics, newsletter) or loaded  # a reader of every topic
    return render_digest(digest, settings=settings, newsletter=newsletter, subject=issue.subject or None)


def approve(store: Store, newsletter: str, number: int | None, now: datetime) -> Issue:
    """Release a draft for sending (the newest draft when no number is given)."""
    if number is None:
        draft = store.issues.latest(newsletter, states=("draft",))
        if draft is None:
            raise DigestError(f"{newsletter} has no draft issue to approve")
        number = draft.number
    return store.issues.transition(newsletter, number, "approved", now)


def cancel(store: Store, newsletter: str, number: int, now: datetime) -> Issue:
    """Cancel an issue; one that has not started sending gives its articles back to the next issue,
    and one that has started sends nothing more (its unsent recipients are cancelled)."""
    cancelled = store.issues.transition(newsletter, number, "cancelled", now)
    store.deliveries.cancel_open(cancelled.id, now)
    return cancelled


SAMPLE_SUBSCRIBER_ID = 0
SAMPLE_RECIPIENT = {"subscriber_id": SAMPLE_SUBSCRIBER_ID, "email": "reader@example.com", "name": "Sample Reader"}


@dataclass(frozen=True)
class Preview:
    """What `publisher digest preview` wrote: the files and the rendered issue (none when nothing
    would go), every candidate article with its reason, and any skip warning."""

    digest: Digest | None
    rendered: RenderedIssue | None
    files: dict[str, Path]
    verdicts: tuple[Verdict, ...] = ()
    skipped: Skipped | None = None
    note: str = ""

    def held_back(self) -> list[Verdict]:
        return [verdict for verdict in self.verdicts if verdict.reason in HELD_BACK]


def sample_values(settings: Settings, newsletter: str) -> dict[str, str]:
    """The per-recipient values of the preview's sample recipient (real signed links, id 0)."""
    subscriber = SAMPLE_SUBSCRIBER_ID
    return {
        "email": str(SAMPLE_RECIPIENT["email"]),
        "name": str(SAMPLE_RECIPIENT["name"]),
        "unsubscribe_url": unsubscribe_url(settings.site.url, settings.secret_keys, subscriber, newsletter),
        "preferences_url": preferences_url(settings.site.url, settings.secret_keys, subscriber),
    }


def write_preview(store: Store, settings: Settings, newsletter: str, out: Path, now: datetime) -> Preview:
    """Render the pending or next issue and write `.html`, `.txt` and `.eml` for a sample recipient.

    Nothing is stored: the preview of a not-yet-built issue takes no number and no articles.
    """
    config = settings.newsletter(newsletter)
    outlook = preview_digest(store, settings, config, now)
    digest = outlook.digest
    if digest is None:
        return Preview(None, None, {}, outlook.verdicts, note=outlook.note)
    everything = edition(digest, (), settings.topics, config) or digest  # a reader of every topic
    rendered = render_digest(everything, settings=settings, newsletter=config)
    values = sample_values(settings, newsletter)
    eml = compile_message(rendered, settings=settings, newsletter=config, issue_number=digest.number).personalise(
        subscriber_id=0,
        email=values["email"],
        name=values["name"],
        unsubscribe_url=values["unsubscribe_url"],
        preferences_url=values["preferences_url"],
        message_id=message_id(settings.site.domain, "preview", newsletter, digest.number),
        date=now,
    )
    stem = f"{newsletter}-{digest.number}"
    files = {"html": out / f"{stem}.html", "txt": out / f"{stem}.txt", "eml": out / f"{stem}.eml"}
    try:
        private_folder(out)  # its links carry real signed tokens
        message = BytesParser(policy=policy.default).parsebytes(eml)
        text_part, html_part = message.get_body(("plain",)), message.get_body(("html",))
        if text_part is None or html_part is None:
            raise DigestError("the preview message lacks its text or HTML part")
        write_private(files["html"], html_part.get_content().encode())
        write_private(files["txt"], text_part.get_content().replace("\r\n", "\n").encode())
        write_private(files["eml"], eml)
    except OSError as error:
        raise DigestError(f"cannot write the preview to {out}: {error.strerror}") from None
    return Preview(digest, rendered, files, outlook.verdicts, outlook.skipped)
