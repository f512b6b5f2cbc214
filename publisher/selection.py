"""Choosing an issue's articles: a pure function of (articles, last watermark, ledger, settings, slot).

An issue holds the articles published after the newsletter's watermark (the newest publication
time among the articles of its previous issue; for the first issue, `slot - lookback`) and not
after `now` (future-dated posts wait), that the newsletter has never sent (its ledger) and that
pass the tag filters. Newest first; the first `max_articles` are the issue, the rest its overflow
(listed as links). Fewer than `min_articles` new articles give `Skipped`, and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from publisher.config import NewsletterSettings
from publisher.model import Article
from publisher.text import slugify


@dataclass(frozen=True)
class Selection:
    """What an issue will hold: `articles` (newest first) and `overflow` (linked as "more")."""

    articles: tuple[Article, ...]
    overflow: tuple[Article, ...]
    watermark: datetime  # the newest publication time among all of them
    since: datetime  # the previous watermark, or slot - lookback for a first issue

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

    @property
    def count(self) -> int:
        return len(self.articles) + len(self.overflow)


def lower_bound(watermark: datetime | None, newsletter: NewsletterSettings, slot: datetime) -> datetime:
    """Articles must be published after this moment: at or after the watermark (the ledger keeps out
    those already sent, so an article sharing the watermark's time is not lost), or strictly after
    `slot - lookback` for a first issue."""
    return watermark if watermark is not None else slot - newsletter.lookback


def _after(article: Article, bound: datetime, *, inclusive: bool) -> bool:
    return bound <= article.published if inclusive else bound < article.published


def _tag_slugs(tags: Iterable[str]) -> set[str]:
    return {slugify(tag) for tag in tags} - {""}


def passes_filters(article: Article, newsletter: NewsletterSettings) -> bool:
    """include_tags: at least one of them; exclude_tags: none of them (compared as slugs)."""
    tags = _tag_slugs(article.tags)
    if newsletter.include_tags and not tags & _tag_slugs(newsletter.include_tags):
        return False
    return not tags & _tag_slugs(newsletter.exclude_tags)


def _newest_first(articles: Iterable[Article]) -> list[Article]:
    return sorted(articles, key=lambda a: (a.published, a.id or 0), reverse=True)


def eligible(
    articles: Iterable[Article],
    *,
    watermark: datetime | None,
    sent_ids: Collection[int],
    newsletter: NewsletterSettings,
    slot: datetime,
    now: datetime,
    returned: Collection[int] = (),
) -> list[Article]:
    """Every article the next issue may hold, newest first. `returned` articles (given back by a
    cancelled issue) count whatever their date."""
    after = lower_bound(watermark, newsletter, slot)
    return _newest_first(
        article
        for article in articles
        if (article.id in returned or _after(article, after, inclusive=watermark is not None))
        and article.published <= now
        and article.id not in sent_ids
        and passes_filters(article, newsletter)
    )


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
) -> Selection | Skipped:
    """Choose the next issue's articles. `force` lowers `min_articles` to 1 (an empty issue never goes)."""
    chosen = eligible(
        articles, watermark=watermark, sent_ids=sent_ids, newsletter=newsletter, slot=slot, now=now, returned=returned
    )
    since = lower_bound(watermark, newsletter, slot)
    minimum = 1 if force else max(1, newsletter.min_articles)
    if len(chosen) < minimum:
        return Skipped(newsletter.name, len(chosen), minimum, since)
    limit = max(1, newsletter.max_articles)
    return Selection(
        articles=tuple(chosen[:limit]),
        overflow=tuple(chosen[limit:]),
        watermark=max(article.published for article in chosen),
        since=since,
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
    wanted = [(tag, slugify(tag)) for tag in section_tags]
    for article in articles:
        tags = _tag_slugs(article.tags)
        home = next((tag for tag, slug in wanted if slug in tags), None)
        (groups[home] if home else rest).append(article)
    grouped = [(tag, items) for tag, items in groups.items() if items]
    return grouped + ([("More", rest)] if rest else [])
