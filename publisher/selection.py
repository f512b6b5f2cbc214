"""Choosing an issue's articles: a pure function of (articles, previous issue, ledger, settings, slot, now).

An article is in a newsletter's next issue when it passes the newsletter's tag filters, is not in
the newsletter's ledger (no issue took it), is not dated after `now`, and either was published at
or after the previous issue's watermark or was first imported after the previous issue was built,
and was published after `floor`: `lookback` before the previous watermark (before the slot, for a
first issue). Newest first; with `sections`, each section keeps its newest article in full, then
the newest of the rest fill `max_articles`; the others are the issue's overflow ("More").

Every candidate gets a `Reason`, so nothing is left out silently: `digest preview` lists them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from publisher.config import NewsletterSettings, TopicSettings
from publisher.model import Article
from publisher.text import tag_slug


class Reason(StrEnum):
    """Why a candidate article is in the next issue, or held back."""

    IN = "in"  # in the issue, in full
    MORE = "more"  # in the issue, linked under "More" (over max_articles)
    TOO_OLD = "too-old"  # published before the lookback (a back catalogue is reported, never sent)
    EXCLUDED_TAG = "excluded-tag"  # carries an exclude_tags tag, or none of include_tags
    FUTURE = "future-dated"  # published after now: waits for its time
    ALREADY_SENT = "already-sent"  # an issue of this newsletter already took it
    NEXT_ISSUE = "next-issue"  # imported after the pending issue was built: goes in the one after


HELD_BACK = frozenset(Reason) - {Reason.IN, Reason.MORE}


@dataclass(frozen=True)
class Verdict:
    """One candidate article and why it is in or out."""

    article: Article
    reason: Reason


@dataclass(frozen=True)
class Selection:
    """What an issue will hold: `articles` (newest first) and `overflow` (linked as "more")."""

    articles: tuple[Article, ...]
    overflow: tuple[Article, ...]
    watermark: datetime  # the newest publication time among them (never before the previous watermark)
    since: datetime  # the previous watermark, or slot - lookback for a first issue
    verdicts: tuple[Verdict, ...] = ()

    @property
    def count(self) -> int:
        return len(self.articles) + len(self.overflow)


@dataclass(frozen=True)
class Skipped:
    """Too few new articles: nothing is built and the run says why."""

    newsletter: str
    new: int
    minimum: int
    since: datetime
    verdicts: tuple[Verdict, ...] = ()

    @property
    def reason(self) -> str:
        noun = "article" if self.new == 1 else "articles"
        return f"skipped: {self.new} new {noun}, minimum {self.minimum}"

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Digest:
    """An issue ready to render: a stored issue, or a preview of the next one."""

    newsletter: str
    number: int
    slot: datetime
    articles: tuple[Article, ...]
    overflow: tuple[Article, ...] = ()
    since: datetime | None = None
    topics: tuple[TopicSettings, ...] = ()  # `sections = "topics"`: a section per topic, in this order

    @property
    def count(self) -> int:
        return len(self.articles) + len(self.overflow)


def lower_bound(watermark: datetime | None, newsletter: NewsletterSettings, slot: datetime) -> datetime:
    """The "since" of an issue: the previous watermark, or `slot - lookback` for a first issue."""
    return watermark if watermark is not None else slot - newsletter.lookback


def floor(watermark: datetime | None, newsletter: NewsletterSettings, slot: datetime) -> datetime:
    """Articles published at or before this moment are too old: `lookback` before the previous
    watermark, or before the slot for a first issue."""
    return (watermark if watermark is not None else slot) - newsletter.lookback


def _tag_slugs(tags: Iterable[str]) -> set[str]:
    return {tag_slug(tag) for tag in tags} - {""}


def passes_filters(article: Article, newsletter: NewsletterSettings) -> bool:
    """include_tags: at least one of them; exclude_tags: none of them (compared as slugs)."""
    tags = _tag_slugs(article.tags)
    if newsletter.include_tags and not tags & _tag_slugs(newsletter.include_tags):
        return False
    return not tags & _tag_slugs(newsletter.exclude_tags)


def _newest_first(articles: Iterable[Article]) -> list[Article]:
    return sorted(articles, key=lambda a: (a.published, a.id or 0), reverse=True)


def is_candidate(
    article: Article, *, watermark: datetime | None, built_at: datetime | None, returned: Collection[int] = ()
) -> bool:
    """New since the previous issue: published at or after its watermark, or first imported after
    it was built (every article is new to a first issue; cancelled issues give theirs back)."""
    if watermark is None or article.id in returned or article.published >= watermark:
        return True
    return built_at is not None and article.first_seen is not None and article.first_seen > built_at


def judge(
    article: Article,
    *,
    sent_ids: Collection[int],
    newsletter: NewsletterSettings,
    oldest: datetime,
    now: datetime,
    returned: Collection[int] = (),
) -> Reason:
    """Why a candidate is held back, or `Reason.IN` (the split into full and "More" comes later)."""
    if article.id in sent_ids:
        return Reason.ALREADY_SENT
    if article.published > now:
        return Reason.FUTURE
    if not passes_filters(article, newsletter):
        return Reason.EXCLUDED_TAG
    if article.id not in returned and article.published <= oldest:
        return Reason.TOO_OLD
    return Reason.IN


def candidates(
    articles: Iterable[Article],
    *,
    watermark: datetime | None,
    built_at: datetime | None,
    sent_ids: Collection[int],
    newsletter: NewsletterSettings,
    slot: datetime,
    now: datetime,
    returned: Collection[int] = (),
) -> list[Verdict]:
    """Every candidate article, newest first, with its reason (IN for all that may go in)."""
    oldest = floor(watermark, newsletter, slot)
    return [
        Verdict(
            article, judge(article, sent_ids=sent_ids, newsletter=newsletter, oldest=oldest, now=now, returned=returned)
        )
        for article in _newest_first(articles)
        if is_candidate(article, watermark=watermark, built_at=built_at, returned=returned)
    ]


def home_section(article: Article, section_tags: Sequence[str]) -> str:
    """The first configured section whose tag the article carries ("" for none)."""
    tags = _tag_slugs(article.tags)
    return next((tag for tag in section_tags if tag_slug(tag) in tags), "")


def split(
    chosen: Sequence[Article], limit: int, section_tags: Sequence[str] = ()
) -> tuple[list[Article], list[Article]]:
    """(in full, overflow): each section's newest article first, then the newest others up to `limit`."""
    kept: list[Article] = []
    for tag in section_tags:
        newest = next((a for a in chosen if home_section(a, section_tags) == tag), None)
        if newest is not None:
            kept.append(newest)
    for article in chosen:
        if len(kept) >= limit:
            break
        if article not in kept:
            kept.append(article)
    full = _newest_first(kept)
    return full, [article for article in chosen if article not in full]


def select(
    articles: Iterable[Article],
    *,
    watermark: datetime | None,
    sent_ids: Collection[int],
    newsletter: NewsletterSettings,
    slot: datetime,
    now: datetime,
    force: bool = False,
    returned: Collection[int] = (),
    built_at: datetime | None = None,
) -> Selection | Skipped:
    """Choose the next issue's articles; `built_at` is when the previous issue was built.

    `force` lowers `min_articles` to 1 (an empty issue never goes)."""
    verdicts = candidates(
        articles,
        watermark=watermark,
        built_at=built_at,
        sent_ids=sent_ids,
        newsletter=newsletter,
        slot=slot,
        now=now,
        returned=returned,
    )
    chosen = [verdict.article for verdict in verdicts if verdict.reason == Reason.IN]
    since = lower_bound(watermark, newsletter, slot)
    minimum = 1 if force else max(1, newsletter.min_articles)
    if len(chosen) < minimum:
        return Skipped(newsletter.name, len(chosen), minimum, since, tuple(verdicts))
    full, overflow = split(chosen, max(1, newsletter.max_articles), newsletter.sections)
    more = {id(article) for article in overflow}
    newest = max(article.published for article in chosen)
    return Selection(
        articles=tuple(full),
        overflow=tuple(overflow),
        watermark=max(newest, watermark) if watermark is not None else newest,
        since=since,
        verdicts=tuple(Verdict(v.article, Reason.MORE) if id(v.article) in more else v for v in verdicts),
    )


def sections(articles: Sequence[Article], section_tags: Sequence[str]) -> list[tuple[str, list[Article]]]:
    """Group articles by the newsletter's section tags, in the configured order.

    An article goes to the first section whose tag it carries; the rest go to a last section
    titled "More" (or, with no sections configured, one untitled section). Empty sections vanish.
    """
    if not section_tags:
        return [("", list(articles))] if articles else []
    groups: dict[str, list[Article]] = {tag: [] for tag in section_tags}
    rest: list[Article] = []
    for article in articles:
        home = home_section(article, section_tags)
        (groups[home] if home else rest).append(article)
    grouped = [(tag, items) for tag, items in groups.items() if items]
    return grouped + ([("More", rest)] if rest else [])
