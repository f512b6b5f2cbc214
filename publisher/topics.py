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


def topic_sections(articles: Sequence[Article], topics: Sequence[TopicSettings]) -> list[tuple[str, list[Article]]]:
    """A section per topic (its label), each article under the first topic it belongs to; the rest
    under "More". Empty sections vanish."""
    groups: dict[str, list[Article]] = {topic.name: [] for topic in topics}
    rest: list[Article] = []
    for article in articles:
        home = next((topic.name for topic in topics if covers(article, topic)), "")
        (groups[home] if home else rest).append(article)
    grouped = [(topic.label or topic.name, groups[topic.name]) for topic in topics if groups[topic.name]]
    return grouped + ([("More", rest)] if rest else [])


def edition(
    digest: Digest, names: Sequence[str], topics: Sequence[TopicSettings], newsletter: NewsletterSettings
) -> Digest | None:
    """The reader's copy of `digest` for their topic `names`; None when none of its articles is theirs."""
    picked = chosen(names, topics)
    everything = not picked or len(picked) == len(topics)
    section_topics = tuple(topics if everything else picked) if newsletter.by_topic else ()
    if everything:
        return replace(digest, topics=section_topics)
    pool = [a for a in (*digest.articles, *digest.overflow) if any(covers(a, topic) for topic in picked)]
    if not pool:
        return None
    pool.sort(key=lambda a: (a.published, a.id or 0), reverse=True)
    full, overflow = split(pool, max(1, newsletter.max_articles), newsletter.sections)
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
