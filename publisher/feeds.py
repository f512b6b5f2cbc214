"""Feed files: every spec written in every format of `publisher.feedformats`, only when it changes.

`article_feeds` is the table of specs for the stored articles (the site feed and one per tag).
`write_feed_set` writes one spec in every format; another scope (an issues archive, say) calls it
with its own spec and entries. Files are replaced atomically; an unchanged file is not touched,
so its mtime and HTTP validators stay; a changed feed is announced to the WebSub hub.
"""

from __future__ import annotations

import html
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from publisher.clock import system_clock
from publisher.config import FeedSettings, Settings
from publisher.errors import FeedError
from publisher.feedformats import FORMATS, FeedEntry, FeedFormat, FeedSpec, clean_entry, clean_spec
from publisher.links import FEEDS_PATH, article_url, tag_path
from publisher.model import Article
from publisher.store import Store
from publisher.text import safe_links, safe_url

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

FEEDS_URL_PATH = FEEDS_PATH  # where the web app serves [feeds] dir
TAGS_DIR = "tags"


# ---------------------------------------------------------------------------- writing


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except FileNotFoundError:
        return False


def _replace(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename it over `path`: never half a feed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; the web server must read feeds
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_if_changed(path: Path, data: bytes) -> bool:
    """Replace `path` atomically with `data`, unless it already holds exactly that. True if written."""
    try:
        if _holds(path, data):
            return False  # untouched: its mtime, and every HTTP cache's validators, stay
        _replace(path, data)
    except OSError as error:
        raise FeedError(f"cannot write the feed {path}: {error.strerror} (check [feeds] dir)") from None
    return True


def ping_hub(hub: str, topics: Sequence[str], client: httpx.Client | None = None) -> None:
    """Tell a WebSub hub these feeds changed. A hub that fails is logged, never fatal."""
    if not hub or not topics:
        return
    import httpx  # only when there is a hub to ping: it takes a tenth of a second to import

    own = client is None
    client = client or httpx.Client(timeout=5.0)
    try:
        for topic in topics:
            try:
                client.post(hub, data={"hub.mode": "publish", "hub.url": topic}).raise_for_status()
            except httpx.HTTPStatusError as error:
                log.warning("WebSub hub %s refused the ping for %s: HTTP %s", hub, topic, error.response.status_code)
            except httpx.HTTPError as error:
                log.warning("WebSub hub %s unreachable (%s); not pinging it this build", hub, error)
                return
    finally:
        if own:
            client.close()


def _write_status(path: Path, data: bytes) -> str:
    existed = path.exists()
    if not write_if_changed(path, data):
        return "unchanged"
    return "changed" if existed else "created"


def _write_formats(spec: FeedSpec, entries: Iterable[FeedEntry], feeds: FeedSettings) -> list[tuple[FeedFormat, str]]:
    """Write one feed in every format: each format with "created", "changed" or "unchanged"."""
    spec = clean_spec(spec)
    chosen = sorted((clean_entry(entry) for entry in entries), key=lambda e: e.published, reverse=True)
    chosen = chosen[: feeds.limit]
    return [
        (fmt, _write_status(spec.file(feeds.dir, fmt.filename), fmt.render(spec, chosen, spec.url(fmt.filename))))
        for fmt in FORMATS
    ]


def write_feed_set(
    spec: FeedSpec, entries: Iterable[FeedEntry], feeds: FeedSettings, *, client: httpx.Client | None = None
) -> list[Path]:
    """Write one feed in every format, newest `feeds.limit` entries first; ping the hub if it
    changed. Returns the files written. This is the entry point for any scope of feed."""
    changed = [fmt for fmt, status in _write_formats(spec, entries, feeds) if status != "unchanged"]
    ping_hub(spec.hub, [spec.url(fmt.filename) for fmt in changed], client)
    return [spec.file(feeds.dir, fmt.filename) for fmt in changed]


# ---------------------------------------------------------------------------- the article feeds

_START_TAG = re.compile(r"<[a-zA-Z][^>]*>")
_URL_ATTRIBUTE = re.compile(r"""(\s(?:href|src)=)(["'])(.*?)\2""")


def absolute_links(markup: str, base: str) -> str:
    """href and src attributes made absolute against `base`, so feed readers can follow them.
    An empty one, or one whose scheme is not http, https or mailto, is removed, not resolved."""

    def absolute(match: re.Match) -> str:
        prefix, quote, value = match.groups()
        url = html.unescape(value).strip()
        resolved = safe_url(urljoin(base, url)) if url and safe_url(url) else ""
        return f"{prefix}{quote}{html.escape(resolved)}{quote}" if resolved else ""

    return _START_TAG.sub(lambda tag: _URL_ATTRIBUTE.sub(absolute, tag[0]), safe_links(markup))


def article_entry(article: Article, site_url: str) -> FeedEntry:
    """One article as a feed item; its link computed from `site_url` now (the guid never changes)."""
    url = article_url(article, site_url)
    content = absolute_links(article.content_html, url)
    if article.truncated and url:
        title = html.escape(article.title, quote=False)
        content += f'\n<p><a href="{html.escape(url)}">Continue reading {title}</a></p>'
    return FeedEntry(
        id=article.guid,
        is_permalink=article.guid == url,
        title=article.title,
        link=url,
        summary_html=absolute_links(article.summary_html, url),
        content_html=content,
        authors=article.authors,
        categories=article.tags,
        published=article.published,
        updated=article.updated,
    )


def make_spec(settings: Settings, path: str, title: str, description: str) -> FeedSpec:
    """A spec with the site's links, language, author and hub; for any scope under the feeds dir."""
    site = settings.site
    return FeedSpec(
        path=path,
        title=title,
        description=description,
        home_url=f"{site.url}/",
        feeds_url=f"{site.url}{FEEDS_URL_PATH}",
        language=site.language,
        author=site.author or site.title,
        hub=settings.feeds.hub,
    )


def article_feeds(settings: Settings, tags: dict[str, str]) -> list[tuple[FeedSpec, str | None]]:
    """The table of article feeds: (spec, tag slug to select by, or None for every article)."""
    site = settings.site
    table: list[tuple[FeedSpec, str | None]] = [(make_spec(settings, "", site.title, site.description), None)]
    for slug, name in sorted(tags.items()):
        spec = make_spec(
            settings, f"{TAGS_DIR}/{slug}", f"{site.title}: {name}", f"Articles tagged “{name}” on {site.title}."
        )
        table.append((replace(spec, home_url=f"{site.url}{tag_path(slug)}"), slug))
    return table


STATUSES = ("created", "changed", "unchanged", "removed")


@dataclass(frozen=True)
class FeedReport:
    """What a build did to each file, in build order: "created", "changed", "unchanged" or "removed"."""

    files: tuple[tuple[Path, str], ...]

    @property
    def changed(self) -> list[Path]:
        """The files a reader would see differently: created, changed or removed."""
        return [path for path, status in self.files if status != "unchanged"]

    def count(self, status: str) -> int:
        return sum(1 for _, done in self.files if done == status)


def _remove_stale_tags(root: Path, slugs: set[str]) -> list[Path]:
    """Feeds of tags no article carries any more: our files go, then the folder if it is empty."""
    tags_dir = root / TAGS_DIR
    if not tags_dir.is_dir():
        return []
    stale = sorted(p for p in tags_dir.iterdir() if p.is_dir() and p.name not in slugs)
    removed = [folder / fmt.filename for folder in stale for fmt in FORMATS if (folder / fmt.filename).exists()]
    try:
        for path in removed:
            path.unlink()
        for folder in stale:
            if not any(folder.iterdir()):
                folder.rmdir()
    except OSError as error:
        raise FeedError(f"cannot remove the stale feed {error.filename}: {error.strerror}") from None
    return removed


def build_feeds(
    store: Store, settings: Settings, *, client: httpx.Client | None = None, now: datetime | None = None
) -> FeedReport:
    """Write the site feed and one feed per tag in every format; the store does the limiting.

    Only articles published by `now` are in them: one dated in the future waits for its time."""
    now = now or system_clock()
    tags = store.articles.tags(until=now)
    files: list[tuple[Path, str]] = []
    topics: list[str] = []  # pinged once at the end, so a dead hub costs one timeout, not one per feed
    for spec, tag_slug in article_feeds(settings, tags):
        articles = store.articles.newest(settings.feeds.limit, tag_slug=tag_slug, until=now)
        entries = [article_entry(article, settings.site.url) for article in articles]
        for fmt, status in _write_formats(spec, entries, settings.feeds):
            files.append((spec.file(settings.feeds.dir, fmt.filename), status))
            if status != "unchanged":
                topics.append(spec.url(fmt.filename))
    files += [(path, "removed") for path in _remove_stale_tags(settings.feeds.dir, set(tags))]
    ping_hub(settings.feeds.hub, topics, client)
    return FeedReport(tuple(files))
