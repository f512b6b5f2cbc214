"""Feed formats, pure: RSS 2.0, Atom 1.0 and JSON Feed 1.1 bytes from neutral entries.

A `FeedSpec` says what one feed is (where it lives, its title and links); a `FeedEntry` is one
item in any format; `FORMATS` is the table of formats. The same entries give the same bytes (a
feed's `updated` is its newest entry's, never "now"), and characters XML forbids are removed
first, so one bad article never breaks a feed. Writing files is `publisher.feeds`' business.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from feedgen.ext.base import BaseExtension
from feedgen.feed import FeedGenerator

from publisher import __version__
from publisher.errors import FeedError
from publisher.text import safe_url, xml_safe

GENERATOR = "publisher"
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
        folder = f"{self.feeds_url}/{quote(self.path)}".rstrip("/")  # a tag's folder may be in any script
        return f"{folder}/{filename}"

    def file(self, root: Path, filename: str) -> Path:
        return root / self.path / filename


# ---------------------------------------------------------------------------- clean input


def _moment(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise FeedError(f"feed entry {what} has no time zone; feeds need dates with an offset")
    return value.astimezone(UTC).replace(microsecond=0)


def _safe_items(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(xml_safe(item) for item in values if xml_safe(item).strip())


def clean_entry(entry: FeedEntry) -> FeedEntry:
    """Forbidden characters removed, dates in UTC, a summary to fall back on."""
    entry_id, summary, content = xml_safe(entry.id), xml_safe(entry.summary_html), xml_safe(entry.content_html)
    return replace(
        entry,
        id=entry_id,
        title=xml_safe(entry.title).strip(),
        link=xml_safe(entry.link),
        summary_html=summary if summary.strip() else content,
        content_html=content,
        published=_moment(entry.published, f"{entry_id!r} published"),
        updated=_moment(entry.updated, f"{entry_id!r} updated"),
        authors=_safe_items(entry.authors),
        categories=_safe_items(entry.categories),
    )


def clean_spec(spec: FeedSpec) -> FeedSpec:
    """Every field is text: forbidden characters removed from each."""
    return replace(spec, **{f.name: xml_safe(getattr(spec, f.name)) for f in fields(spec)})


def feed_updated(entries: Sequence[FeedEntry]) -> datetime:
    """When the feed last changed: its most recently updated entry, never the build time."""
    return max((entry.updated for entry in entries), default=EMPTY_FEED_UPDATED)


# ---------------------------------------------------------------------------- RSS and Atom (feedgen)


class _WebSubRss(BaseExtension):
    """feedgen writes only the rel="self" atom:link into RSS; this adds the rel="hub" one."""

    hub = ""

    def extend_rss(self, feed: Any) -> Any:  # an lxml element; feedgen has no types
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
    item: dict[str, object] = {
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
    media_type: str  # the type feed discovery links name
    label: str  # what a reader calls it
    render: Callable[[FeedSpec, Sequence[FeedEntry], str], bytes]  # (spec, entries, its own URL)

    @property
    def content_type(self) -> str:
        """The Content-Type to serve it with (XML formats say their charset)."""
        return self.media_type if self.media_type == JSON_TYPE else f"{self.media_type}; charset=utf-8"


# The one table of formats: feed building, the web app, the archive and page discovery read it.
FORMATS = (
    FeedFormat("rss.xml", RSS_TYPE, "RSS", render_rss),
    FeedFormat("atom.xml", ATOM_TYPE, "Atom", render_atom),
    FeedFormat("feed.json", JSON_TYPE, "JSON Feed", render_json),
)
FORMAT_BY_FILENAME = {fmt.filename: fmt for fmt in FORMATS}
