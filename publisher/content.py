"""Importing content: pick the importer for a source, parse it whole, then store it in one go.

Parsing happens before any write, so a malformed source changes nothing in the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from publisher.config import DEFAULT_MAX_BYTES, SOURCE_FORMATS, Settings, SourceSettings, resolve_path
from publisher.errors import ContentError
from publisher.links import article_url
from publisher.model import Article, Draft, ImportReport, SourceState
from publisher.store import Store
from publisher.store.articles import content_hash
from publisher.tagging import tags_for

FORMATS = SOURCE_FORMATS
_FEED_SUFFIXES = {".xml", ".rss", ".atom", ".rdf"}


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def detect_format(source: str) -> str:
    """The importer for a source: by URL, folder, extension, then a sniff of the first bytes."""
    if is_url(source):
        return "feed"
    path = Path(source)
    if path.is_dir() or path.suffix.lower() in {".md", ".markdown"}:
        return "markdown"
    if path.suffix.lower() in _FEED_SUFFIXES:
        return "feed"
    if path.suffix.lower() == ".txt":
        return "textpage"
    try:
        with path.open("rb") as handle:
            head = handle.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as error:
        raise ContentError(f"{source}: cannot read: {error.strerror}") from None
    return "feed" if head.startswith(b"<") else "textpage"


def parse_source(
    source: str, fmt: str, *, as_of: datetime, store: Store, now: datetime, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[Draft], SourceState | None]:
    """Parse one source into drafts (and a feed URL's validators, to be saved with them), raising
    ContentError (file and line) on malformed input."""
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt == "textpage":
        from publisher.importers.textpage import read_textpage

        return read_textpage(Path(source), as_of=as_of), None
    if fmt == "markdown":
        from publisher.importers.markdown import read_markdown

        return read_markdown(Path(source), now=now), None
    if fmt == "feed":
        from publisher.importers.feed import read_feed

        return read_feed(source, store=store, now=now, max_bytes=max_bytes)
    raise ContentError(f"{source}: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")


def _check_source_exists(source: str) -> None:
    if not is_url(source) and not Path(source).exists():
        raise ContentError(f"{source}: no such file or folder")


def import_sources(
    store: Store, settings: Settings, sources: Iterable[SourceSettings], *, as_of: datetime, now: datetime
) -> list[ImportReport]:
    """Import each source in turn; each is parsed whole and stored in its own transaction."""
    reports = []
    for source in sources:
        path = source_path(source, settings)
        _check_source_exists(path)
        drafts, state = parse_source(path, source.format, as_of=as_of, store=store, now=now, max_bytes=source.max_bytes)
        if source.link == "local":
            drafts = [replace(draft, url="") for draft in drafts]
        drafts = [_tagged(draft, source.tags, settings) for draft in drafts]
        reports.append(
            store.articles.ingest(drafts, guid_authority=settings.site.domain, now=now, source=path, source_state=state)
        )
    return reports


def _tagged(draft: Draft, source_tags: tuple[str, ...], settings: Settings) -> Draft:
    if not source_tags and not settings.tag_rules:
        return draft
    tags = tags_for(draft.title, draft.summary_html, draft.content_html, draft.tags, source_tags, settings.tag_rules)
    return replace(draft, tags=tags)


def source_path(source: SourceSettings, settings: Settings) -> str:
    """How a source's articles name it (`Article.source`): its URL, or its path resolved."""
    return source.path if is_url(source.path) else str(resolve_path(source.path, settings.base_dir))


def retag(store: Store, settings: Settings) -> list[tuple[Article, tuple[str, ...]]]:
    """Apply `[[sources]] tags` and `[[tag_rules]]` to every stored article again; tags are only
    added. Returns each article whose tags changed, with its new tags."""
    by_source = {source_path(source, settings): source.tags for source in settings.sources}
    changed = []
    for article in store.articles.newest(None):
        tags = tags_for(
            article.title,
            article.summary_html,
            article.content_html,
            article.tags,
            by_source.get(article.source, ()),
            settings.tag_rules,
        )
        if tags != article.tags:
            changed.append((article, tags))
    store.articles.set_tags([(article, tags, _hash(article, tags)) for article, tags in changed])
    return changed


def _hash(article: Article, tags: tuple[str, ...]) -> str:
    """The content hash an import of the article with these tags would compute (so a later import
    with the same rules finds it unchanged)."""
    draft = Draft(
        key="",
        slug=article.slug,
        title=article.title,
        summary_html=article.summary_html,
        content_html=article.content_html,
        truncated=article.truncated,
        published=article.published,
        url=article.origin,
        tags=tags,
        authors=article.authors,
    )
    return content_hash(draft)


def article_json(article: Article, site_url: str) -> dict:
    """The `publisher articles --json` contract (`url` computed from `site.url` now, never stored)."""
    return {
        "guid": article.guid,
        "slug": article.slug,
        "title": article.title,
        "url": article_url(article, site_url),
        "published": article.published.isoformat(),
        "updated": article.updated.isoformat(),
        "tags": list(article.tags),
        "authors": list(article.authors),
        "summary_html": article.summary_html,
        "content_html": article.content_html,
        "truncated": article.truncated,
        "source": article.source,
    }
