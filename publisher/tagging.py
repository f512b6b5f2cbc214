"""Tags for content that has none: a source's own tags, and `[[tag_rules]]` over title and text.

A pure function of (draft, source tags, rules): the importer applies it before storing, and
`publisher articles --retag` applies it again to what is stored. Tags are only ever added.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence

from publisher.config import TagRule
from publisher.text import tag_slug

_TAG = re.compile(r"<[^>]*>")
MAX_TEXT = 20_000  # characters of title and text the rules read: enough to tag by, bounded in time


def plain_text(title: str, *bodies: str) -> str:
    """Title and HTML bodies as one searchable text (tags dropped, entities decoded)."""
    return "\n".join([title, *(html.unescape(_TAG.sub(" ", body)) for body in bodies)])


def matching_tags(text: str, rules: Sequence[TagRule]) -> list[str]:
    """The tags of every rule whose pattern is found in the first `MAX_TEXT` characters of `text`,
    in the rules' order (config load refused the patterns that could backtrack without end)."""
    text = text[:MAX_TEXT]
    return [rule.tag for rule in rules if rule.pattern.search(text)]


def merged(tags: Iterable[str], extra: Iterable[str]) -> tuple[str, ...]:
    """`tags` then any of `extra` whose slug is new: an article keeps its own spelling of a tag."""
    kept = list(tags)
    seen = {tag_slug(tag) for tag in kept}
    for tag in extra:
        if tag_slug(tag) and tag_slug(tag) not in seen:
            kept.append(tag)
            seen.add(tag_slug(tag))
    return tuple(kept)


def tags_for(
    title: str,
    summary_html: str,
    content_html: str,
    tags: Sequence[str],
    source_tags: Sequence[str],
    rules: Sequence[TagRule],
) -> tuple[str, ...]:
    """An article's tags: its own, its source's, then those its title and text earn by rule."""
    earned = matching_tags(plain_text(title, summary_html, content_html), rules) if rules else []
    return merged(tags, [*source_tags, *earned])
