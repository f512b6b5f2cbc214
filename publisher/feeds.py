"""Feeds: RSS 2.0, Atom 1.0 and JSON Feed 1.1 from neutral entries, written only when they change.

A `FeedSpec` says what one feed is (where it lives, its title and links); a `FeedEntry` is one
item in any format. `FORMATS` is the table of formats; `article_feeds` is the table of specs for
the stored articles (the site feed and one per tag). Every spec is written in every format by
`write_feed_set`, which another scope (an issues archive, say) can call with its own spec and
entries.

The guarantees: the same entries give the same bytes (a feed's `updated` is its newest entry's,
never "now"); files are replaced atomically; an unchanged file is not touched, so its mtime and
HTTP validators stay; characters XML forbids are removed first, so one bad article never breaks
a feed.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin

import httpx
from feedgen.ext.base import BaseExtension
from feedgen.feed import FeedGenerator

from publisher import __version__
from publisher.config import FeedSettings, Settings
from publisher.errors import FeedError
from publisher.model import Article
from publisher.store import Store
from publisher.text import safe_links, safe_url, xml_safe

log = logging.getLogger(__name__)

GENERATOR = "publisher"
FEEDS_URL_PATH = "/feeds"  # where the web app serves [feeds] dir
TAGS_DIR = "tags"
# A feed with no entries still needs an `updated`; "now" would make its bytes change every build.
EMPTY_FEED_UPDATED = datetime(1970, 1, 1, tzinfo=UTC)
ATOM_NS = "http://www.w3.org/2005/Atom"
RSS_TYPE, ATOM_TYPE, JSON_TYPE = "application/rss+xml", "application/atom+xml", "application/feed+json"


@dataclass(frozen=True)
class FeedEntry:
    """One item of a feed, in no particular format. Dates must carry a time zone."""

    id: str
    title: str
    link: str
    summary_html: str
    content_html: str
    published: datetime
    updated: datetime
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    is_permalink: bool = False


@dataclass(frozen=True)
class FeedSpec:
    """One feed: its folder under the feeds dir ("" for the site feed) and what it says about itself."""

    path: str
    title: str
    description: str
    home_url: str  # the HTML page the feed stands for (RSS <link>, Atom rel="alternate")
    feeds_url: str  # the absolute URL the feeds dir is served at
    language: str
    author: str  # feed-level author; Atom needs one when an entry has none
    hub: str = ""  # a WebSub hub to announce and ping, or ""

    @property
    def id(self) -> str:
        return self.url("")

    def url(self, filename: str) -> str:
        folder = f"{self.feeds_url}/{self.path}".rstrip("/")
        return f"{folder}/{filename}"

    def file(self, root: Path, filename: str) -> Path:
        return root / self.path / filename


# ---------------------------------------------------------------------------- clean input


def _moment(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise FeedError(f"feed entry {what} has no time zone; feeds need dates with an offset")
    return value.astimezone(UTC).replace(microsecond=0)


def _safe(value: object) -> object:
    if isinstance(value, str):
        return xml_safe(value)
    if isinstance(value, tuple):
        return tuple(xml_safe(item) for item in value if xml_safe(item).strip())
    return value


def clean_entry(entry: FeedEntry) -> FeedEntry:
    """Forbidden characters removed, dates in UTC, a summary to fall back on."""
    safe = replace(entry, **{f.name: _safe(getattr(entry, f.name)) for f in fields(entry)})
    return replace(
        safe,
        title=safe.title.strip(),
        summary_html=safe.summary_html if safe.summary_html.strip() else safe.content_html,
        published=_moment(entry.published, f"{safe.id!r} published"),
        updated=_moment(entry.updated, f"{safe.id!r} updated"),
    )


def clean_spec(spec: FeedSpec) -> FeedSpec:
    return replace(spec, **{f.name: _safe(getattr(spec, f.name)) for f in fields(spec)})


def feed_updated(entries: Sequence[FeedEntry]) -> datetime:
    """When the feed last changed: its most recently updated entry, never the build time."""
    return max((entry.updated for entry in entries), default=EMPTY_FEED_UPDATED)


# ---------------------------------------------------------------------------- RSS and Atom (feedgen)


class _WebSubRss(BaseExtension):
    """feedgen writes only the rel="self" atom:link into RSS; this adds the rel="hub" one."""

    hub = ""

    def extend_rss(self, feed):
        channel = feed[0]
        channel.append(channel.makeelement(f"{{{ATOM_NS}}}link", {"href": self.hub, "rel": "hub"}))
        return feed


def _generator(spec: FeedSpec, entries: Sequence[FeedEntry], self_url: str, self_type: str) -> FeedGenerator:
    """A FeedGenerator set up to avoid feedgen's traps (see docs/feeds.md)."""
    gen = FeedGenerator()
    gen.load_extension("dc", atom=False, rss=True)  # RSS <author> wants an email; dc:creator a name
    gen.id(spec.id)
    gen.title(spec.title)
    gen.description(spec.description or spec.title)
    gen.author({"name": spec.author or spec.title})
    # RSS <link> is the last link added: self first, the alternate last.
    gen.link(href=self_url, rel="self", type=self_type)
    if spec.hub:
        gen.link(href=spec.hub, rel="hub")
        gen.register_extension("websub", _WebSubRss, atom=False, rss=True)
        gen.websub.hub = spec.hub
    gen.link(href=spec.home_url, rel="alternate", type="text/html")
    gen.language(spec.language)
    gen.generator(GENERATOR, version=__version__)
    gen.updated(feed_updated(entries))  # never the default "now"
    for entry in entries:
        _add_entry(gen, entry)
    return gen


def _add_entry(gen: FeedGenerator, entry: FeedEntry) -> None:
    item = gen.add_entry(order="append")  # the default prepends, reversing the feed
    item.guid(entry.id, permalink=entry.is_permalink)
    item.title(entry.title)
    if safe_url(entry.link):
        item.link(href=safe_url(entry.link))  # alternate only: entry links lose their rel in Atom (feedgen #135)
    item.content(entry.content_html, type="html")  # never "CDATA": invalid Atom
    item.summary(entry.summary_html, type="html")
    item.published(entry.published)
    item.updated(entry.updated)
    for name in entry.authors:
        item.author({"name": name})
        item.dc.dc_creator(name)
    for category in entry.categories:
        item.category(term=category)


def render_rss(spec: FeedSpec, entries: Sequence[FeedEntry], self_url: str) -> bytes:
    return _generator(spec, entries, self_url, RSS_TYPE).rss_str(pretty=True)


def render_atom(spec: FeedSpec, entries: Sequence[FeedEntry], self_url: str) -> bytes:
    return _generator(spec, entries, self_url, ATOM_TYPE).atom_str(pretty=True)


# ---------------------------------------------------------------------------- JSON Feed 1.1

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def plain_text(markup: str) -> str:
    """HTML as one line of text, for JSON Feed's plain-text `summary`."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", markup))).strip()


def _json_item(entry: FeedEntry) -> dict:
    item = {
        "id": entry.id,
        "url": safe_url(entry.link),
        "title": entry.title,
        "content_html": entry.content_html,
        "summary": plain_text(entry.summary_html),
        "date_published": entry.published.isoformat(),
        "date_modified": entry.updated.isoformat(),
    }
    if not item["url"]:
        del item["url"]
    if entry.authors:
        item["authors"] = [{"name": name} for name in entry.authors]
    if entry.categories:
        item["tags"] = list(entry.categories)
    return item


def render_json(spec: FeedSpec, entries: Sequence[FeedEntry], self_url: str) -> bytes:
    document = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": spec.title,
        "home_page_url": spec.home_url,
        "feed_url": self_url,
        "description": spec.description,
        "language": spec.language,
        "authors": [{"name": spec.author or spec.title}],
    }
    if spec.hub:
        document["hubs"] = [{"type": "WebSub", "url": spec.hub}]
    document["items"] = [_json_item(entry) for entry in entries]
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------- the table of formats


@dataclass(frozen=True)
class FeedFormat:
    filename: str
    media_type: str  # also the Content-Type to serve it with
    render: Callable[[FeedSpec, Sequence[FeedEntry], str], bytes]  # (spec, entries, its own URL)


FORMATS = (
    FeedFormat("rss.xml", RSS_TYPE, render_rss),
    FeedFormat("atom.xml", ATOM_TYPE, render_atom),
    FeedFormat("feed.json", JSON_TYPE, render_json),
)


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


def article_entry(article: Article) -> FeedEntry:
    url = safe_url(article.url)
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
        table.append((spec, slug))
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


def build_feeds(store: Store, settings: Settings, *, client: httpx.Client | None = None) -> FeedReport:
    """Write the site feed and one feed per tag in every format; the store does the limiting."""
    tags = store.articles.tags()
    files: list[tuple[Path, str]] = []
    topics: list[str] = []  # pinged once at the end, so a dead hub costs one timeout, not one per feed
    for spec, tag_slug in article_feeds(settings, tags):
        articles = store.articles.newest(settings.feeds.limit, tag_slug=tag_slug)
        for fmt, status in _write_formats(spec, map(article_entry, articles), settings.feeds):
            files.append((spec.file(settings.feeds.dir, fmt.filename), status))
            if status != "unchanged":
                topics.append(spec.url(fmt.filename))
    files += [(path, "removed") for path in _remove_stale_tags(settings.feeds.dir, set(tags))]
    ping_hub(settings.feeds.hub, topics, client)
    return FeedReport(tuple(files))
