"""Topics that select: which of an issue's articles a reader gets, from the topics they chose.

An issue holds every article the newsletter selected. A reader who chose some `[[topics]]` gets
the articles carrying a tag of any of them; a reader who chose none, or all, gets everything.
Readers are grouped by the *edition* their choice gives (its articles, "More" links and sections),
so an issue is rendered once per distinct edition, never once per reader.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from publisher.config import NewsletterSettings, TopicSettings
from publisher.model import Article
from publisher.selection import Digest, sections, split
from publisher.text import tag_slug

EditionKey = tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[str, tuple[int, ...]], ...]]


def parse_topics(raw: str | Sequence[str]) -> tuple[str, ...]:
    """A reader's topic names, from the ledger's JSON (or a list); anything unreadable is none."""
    if not isinstance(raw, str):
        return tuple(raw)
    try:
        names = json.loads(raw or "[]")
    except ValueError:
        return ()
    return tuple(name for name in names if isinstance(name, str)) if isinstance(names, list) else ()


def chosen(names: Sequence[str], topics: Sequence[TopicSettings]) -> tuple[TopicSettings, ...]:
    """The configured topics among `names`, in the configured order; names no longer offered drop out."""
    wanted = set(names)
    return tuple(topic for topic in topics if topic.name in wanted)


def covers(article: Article, topic: TopicSettings) -> bool:
    """The article carries one of the topic's tags (compared as slugs)."""
    return bool({tag_slug(tag) for tag in article.tags} & {tag_slug(tag) for tag in topic.tags})


OTHER_NEWS = "Other news"  # the heading of a topic digest's articles of no topic (translated when shown)


def home_topic(article: Article, topics: Sequence[TopicSettings]) -> str:
    """The first topic (in the configured order) the article belongs to ("" for none)."""
    return next((topic.name for topic in topics if covers(article, topic)), "")


def topic_labels(article: Article, topics: Sequence[TopicSettings]) -> tuple[str, ...]:
    """The labels of the topics an article belongs to, for its meta line."""
    return tuple(topic.label or topic.name for topic in topics if covers(article, topic))


def topic_sections(articles: Sequence[Article], topics: Sequence[TopicSettings]) -> list[tuple[str, list[Article]]]:
    """A section per topic (its label), each article under the first topic it belongs to; the rest
    under "Other news". Empty sections vanish."""
    groups: dict[str, list[Article]] = {topic.name: [] for topic in topics}
    rest: list[Article] = []
    for article in articles:
        home = home_topic(article, topics)
        (groups[home] if home else rest).append(article)
    grouped = [(topic.label or topic.name, groups[topic.name]) for topic in topics if groups[topic.name]]
    return grouped + ([(OTHER_NEWS, rest)] if rest else [])


def split_by_topic(
    pool: Sequence[Article], limit: int, topics: Sequence[TopicSettings]
) -> tuple[list[Article], list[Article]]:
    """(in full, overflow) for a digest in topic sections: each topic's newest article first (so
    no topic's heading disappears for want of room), then the newest others up to `limit`."""
    kept = [a for topic in topics if (a := next((a for a in pool if home_topic(a, topics) == topic.name), None))]
    for article in pool:
        if len(kept) >= limit:
            break
        if article not in kept:
            kept.append(article)
    full = [article for article in pool if article in kept]  # the pool's order: newest first
    return full, [article for article in pool if article not in kept]


def edition(
    digest: Digest, names: Sequence[str], topics: Sequence[TopicSettings], newsletter: NewsletterSettings
) -> Digest | None:
    """The reader's copy of `digest` for their topic `names`; None when none of its articles is theirs."""
    picked = chosen(names, topics)
    everything = not picked or len(picked) == len(topics)
    section_topics = tuple(topics if everything else picked) if newsletter.by_topic else ()
    if everything and not section_topics:
        return replace(digest, topics=section_topics)
    pool = [a for a in (*digest.articles, *digest.overflow) if everything or any(covers(a, topic) for topic in picked)]
    if not pool:
        return None
    pool.sort(key=lambda a: (a.published, a.id or 0), reverse=True)
    limit = max(1, newsletter.max_articles)
    if section_topics:
        full, overflow = split_by_topic(pool, limit, section_topics)
    else:
        full, overflow = split(pool, limit, newsletter.sections)
    return replace(digest, articles=tuple(full), overflow=tuple(overflow), topics=section_topics)


def digest_sections(digest: Digest, articles: Sequence[Article], newsletter: NewsletterSettings) -> list:
    """The sections a rendered digest shows: per topic (`sections = "topics"`) or per section tag."""
    if digest.topics:
        return topic_sections(articles, digest.topics)
    return sections(articles, newsletter.sections)


def edition_key(digest: Digest, newsletter: NewsletterSettings) -> EditionKey:
    """What makes two readers' copies render the same: articles, "More" links and sections."""
    grouped = tuple(
        (title, tuple(a.id or 0 for a in group))
        for title, group in digest_sections(digest, digest.articles, newsletter)
    )
    return (
        tuple(a.id or 0 for a in digest.articles),
        tuple(a.id or 0 for a in digest.overflow),
        grouped,
    )
