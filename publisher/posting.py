"""An article posted by another system (a CMS, through the API): checked and sanitised like an import.

`draft(posted, now)` turns the posted fields into the same `Draft` the importers make: Markdown is
rendered and cleaned by the Markdown importer's code, HTML by the feed importer's sanitiser, so a
posted article can hold nothing an imported one could not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from publisher.errors import ContentError
from publisher.importers.feed import clean_html
from publisher.importers.markdown import MORE, render_markdown
from publisher.model import Draft
from publisher.text import MAX_HTML_DEPTH, slugify, too_deep

MAX_TITLE = 500
MAX_TAGS = 50
MAX_TAG = 100
SOURCE = "api"


@dataclass(frozen=True)
class Posted:
    """What the client sent: a title, the body as Markdown or as HTML (one of them), tags, a date."""

    title: str
    markdown: str | None = None
    html: str | None = None
    published: datetime | None = None
    tags: tuple[str, ...] = ()
    slug: str = ""


def _title(value: str) -> str:
    title = " ".join(value.split())
    if not title:
        raise ContentError("title: an article needs a title")
    if len(title) > MAX_TITLE or any(ord(c) < 32 for c in title):
        raise ContentError(f"title: at most {MAX_TITLE} characters, no control characters")
    return title


def _tags(values: tuple[str, ...]) -> tuple[str, ...]:
    tags = tuple(dict.fromkeys(" ".join(tag.split()) for tag in values if tag.strip()))
    if len(tags) > MAX_TAGS or any(len(tag) > MAX_TAG or not slugify(tag) for tag in tags):
        raise ContentError(
            f"tags: at most {MAX_TAGS} tags of at most {MAX_TAG} characters, each with a letter or digit"
        )
    return tags


def _body(posted: Posted) -> tuple[str, str, bool]:
    """(summary HTML, content HTML, truncated)."""
    if (posted.markdown is None) == (posted.html is None):
        raise ContentError("give the body as either markdown or html (exactly one of them)")
    if posted.markdown is not None:
        teaser, more, _ = posted.markdown.partition(MORE)
        content = render_markdown(posted.markdown.replace(MORE, ""))
        return (render_markdown(teaser) if more else content), content, bool(more)
    if too_deep(posted.html or ""):
        raise ContentError(f"html: nests deeper than {MAX_HTML_DEPTH} levels")
    content = clean_html(posted.html or "")
    return content, content, False


def draft(posted: Posted, now: datetime) -> Draft:
    """The posted article as a draft to store; ContentError names the field to fix."""
    title = _title(posted.title)
    slug = slugify(posted.slug or title)
    if not slug:
        raise ContentError("slug: the title has no letters or digits to make an address from; give a slug")
    published = posted.published or now
    if published.tzinfo is None:
        raise ContentError("published: give a time zone offset, e.g. 2026-11-28T09:00:00+00:00")
    summary, content, truncated = _body(posted)
    return Draft(
        key=slug,
        slug=slug,
        title=title,
        summary_html=summary,
        content_html=content,
        truncated=truncated,
        published=published,
        tags=_tags(posted.tags),
        source=SOURCE,
    )
