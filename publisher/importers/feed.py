"""RSS and Atom feeds, from a file or a URL (with conditional GET), through feedparser."""

from __future__ import annotations

import calendar
import hashlib
import html
import re
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin
from xml.sax import SAXException

import feedparser
import nh3

from publisher import __version__, redact
from publisher.config import DEFAULT_MAX_BYTES
from publisher.errors import ContentError
from publisher.model import Draft, SourceState
from publisher.store import Store
from publisher.text import MAX_HTML_DEPTH, SAFE_SCHEMES, quoted, safe_links, safe_url, slugify, too_deep

if TYPE_CHECKING:
    import httpx

USER_AGENT = f"publisher/{__version__} (+feed import)"


def _moment(parsed: time.struct_time | None, fallback: datetime) -> datetime:
    if not parsed:
        return fallback
    return datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)


def _plain_title(entry: feedparser.FeedParserDict) -> str:
    """The title as text: an HTML-typed title (Atom type="html", most RSS) loses its tags and entities."""
    title = entry.get("title") or ""
    if entry.get("title_detail", {}).get("type", "text/plain") in ("text/html", "application/xhtml+xml"):
        title = html.unescape(nh3.clean(title, tags=set()))
    return " ".join(title.split())


def clean_html(markup: str) -> str:
    """Sanitised HTML whose links and images are http, https or mailto only (feedparser's own
    sanitiser leaves `href=""` where it removed a javascript: link: those go too)."""
    return safe_links(nh3.clean(markup, url_schemes=set(SAFE_SCHEMES))).strip()


def _media_image(entry: feedparser.FeedParserDict, title: str) -> str:
    """The entry's image from its media tags or enclosures, as an `<img>` for the top of its
    content ("" when it has none, or its content already holds an image). Only https images."""
    candidates = [*entry.get("media_content", []), *entry.get("media_thumbnail", [])]
    candidates += [
        {"url": link.get("href", ""), "medium": "image"}
        for link in entry.get("links", [])
        if link.get("rel") == "enclosure" and str(link.get("type", "")).startswith("image/")
    ]
    for media in candidates:
        url = str(media.get("url", ""))
        is_image = media.get("medium") == "image" or str(media.get("type", "")).startswith("image/")
        if not url.startswith("https://") or not (is_image or ("medium" not in media and "type" not in media)):
            continue
        size = "".join(
            f' {name}="{media[name]}"'
            for name in ("width", "height")
            if re.fullmatch(r"[0-9]{1,5}", str(media.get(name)))
        )
        return f'<p><img src="{html.escape(url, quote=True)}" alt="{html.escape(title, quote=True)}"{size}></p>'
    return ""


def _key(identity: str) -> str:
    """Ids longer than the store's column are keyed by their hash."""
    key = f"feed:{identity}"
    return key if len(key) <= 500 else f"feed:sha256:{hashlib.sha256(identity.encode()).hexdigest()}"


def _check_depth(entry: feedparser.FeedParserDict, position: int, where: str) -> None:
    """Refuse an entry whose HTML nests absurdly deep before a sanitiser spends minutes on it."""
    fields = [entry.get("title") or "", entry.get("summary") or ""]
    fields += [part.get("value", "") for part in entry.get("content") or []]
    if any(too_deep(value) for value in fields):
        raise ContentError(
            f"{where}: entry {position + 1}: its HTML nests deeper than {MAX_HTML_DEPTH} levels; not imported"
        )


def _entry_draft(
    entry: feedparser.FeedParserDict, position: int, *, where: str, now: datetime, source: str, base: str
) -> Draft:
    _check_depth(entry, position, where)
    title = _plain_title(entry)
    if not title:
        raise ContentError(f"{where}: entry {position + 1} has no title")
    raw_link = urljoin(base, entry["link"]) if entry.get("link") else ""
    link = safe_url(raw_link)  # a javascript: or data: link is dropped: the article gets our permalink
    identity = entry.get("id") or raw_link
    if not identity:
        raise ContentError(f"{where}: entry {quoted(title)} has neither an id nor a link")
    summary = clean_html(entry.get("summary") or "")
    contents = entry.get("content") or []
    content = clean_html(contents[0].get("value", "")) if contents else ""
    # dict.get: feedparser's own .get("updated_parsed") falls back to published, with a DeprecationWarning
    updated = dict.get(entry, "updated_parsed")
    image = "" if "<img" in content + summary else _media_image(entry, title)
    teaser, body = summary or content, content or summary
    published = _moment(entry.get("published_parsed") or updated, now - timedelta(minutes=position))
    return Draft(
        key=_key(identity),
        slug=slugify(title) or slugify(identity),
        title=title,
        summary_html=image + teaser if teaser == body else teaser,  # a whole article stays "whole"
        content_html=image + body,
        truncated=not content,
        published=published,
        updated=_moment(updated, published),
        url=link,
        guid=identity if ":" in identity and len(identity) <= 500 else "",
        authors=tuple(a.get("name", "") for a in entry.get("authors", []) if a.get("name")),
        tags=tuple(t.get("term", "") for t in entry.get("tags", []) if t.get("term")),
        source=source,
    )


def parse_feed(data: bytes, *, where: str, now: datetime, source: str = "", url: str = "") -> list[Draft]:
    """Entries as drafts; relative links are resolved against the feed's URL, then its own link."""
    try:
        parsed = feedparser.parse(data, response_headers={"content-location": url} if url else None)
    except (ValueError, LookupError) as error:  # feedparser on a mangled encoding declaration, NULs …
        raise ContentError(f"{where}:1: not a valid RSS or Atom feed: {str(error)[:200]}") from None
    bozo = parsed.get("bozo_exception")
    if isinstance(bozo, SAXException) or not parsed.get("version"):
        line = bozo.getLineNumber() if hasattr(bozo, "getLineNumber") else 1
        reason = getattr(bozo, "getMessage", lambda: "not an RSS or Atom feed")()
        raise ContentError(f"{where}:{line}: not a valid RSS or Atom feed: {reason}")
    base = url or parsed.feed.get("link", "")
    return [
        _entry_draft(entry, position, where=where, now=now, source=source or where, base=base)
        for position, entry in enumerate(parsed.entries)
    ]


MAX_REDIRECTS = 5
FETCH_TIMEOUT = 120.0  # seconds for the whole download, however slowly the server dribbles
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _too_large(url: str, max_bytes: int) -> ContentError:
    return ContentError(f"{url}: the feed is larger than {max_bytes} bytes ([[sources]] max_bytes); not imported")


def _read_body(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    """The body, decompressed by us in bounded steps: a small gzip bomb stops at `max_bytes`."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in (*_DECODERS, "identity", ""):
        raise ContentError(f"{url}: the server sent an encoding we did not ask for ({encoding})")
    decoder = zlib.decompressobj(_DECODERS[encoding]) if encoding in _DECODERS else None
    body = bytearray()
    for chunk in response.iter_raw():
        if response.num_bytes_downloaded > max_bytes:
            raise _too_large(url, max_bytes)
        pending = chunk
        while pending:
            if decoder is None:
                body += pending
                break
            try:
                body += decoder.decompress(pending, max_bytes + 1 - len(body))
            except zlib.error:
                raise ContentError(f"{url}: the {encoding} body is corrupt") from None
            pending = decoder.unconsumed_tail
            if len(body) > max_bytes:
                break
        if len(body) > max_bytes:
            raise _too_large(url, max_bytes)
    return bytes(body)


@contextmanager
def _follow(client: httpx.Client, url: str) -> Iterator[httpx.Response]:
    """The streamed response at the end of the redirects. httpx's own following reads each
    redirect's body whole (and unbounded); here a redirect's body is never read."""
    request = client.build_request("GET", url)
    for _ in range(MAX_REDIRECTS + 1):
        response = client.send(request, stream=True)
        if response.next_request is None:
            break
        response.close()
        request = response.next_request
    else:
        raise ContentError(f"{redact.userinfo(url)}: more than {MAX_REDIRECTS} redirects")
    try:
        yield response
    finally:
        response.close()


def fetch_feed(
    url: str, *, store: Store, now: datetime, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[Draft], SourceState | None]:
    """The feed's entries and its new validators; ([], None) when it has not changed since last time.

    The validators are not saved here: the caller saves them with the articles, in one transaction,
    so a failed import fetches the feed again next time instead of getting a 304."""
    import httpx  # only when fetching: with its command-line extras it adds a tenth of a second to every start

    from publisher.importers import deadline

    shown = redact.userinfo(url)  # what messages name: no credentials
    etag, last_modified = store.articles.source_state(url)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": ", ".join(_DECODERS)}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    # the deadline starts now and covers connecting, headers, redirects and the body
    client = httpx.Client(headers=headers, timeout=30, transport=deadline.transport(FETCH_TIMEOUT))
    try:
        with client, _follow(client, url) as response:
            if response.status_code == 304:
                return [], None
            if response.status_code >= 400:
                raise ContentError(f"{shown}: the server answered {response.status_code} {response.reason_phrase}")
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise _too_large(shown, max_bytes)
            data = _read_body(response, shown, max_bytes)
    except httpx.TimeoutException as error:
        if isinstance(error.__cause__, deadline.DeadlinePassed):
            raise ContentError(f"{shown}: the download took longer than {FETCH_TIMEOUT:g} seconds") from None
        raise ContentError(f"{shown}: cannot fetch: {redact.userinfo(str(error))}") from None
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise ContentError(f"{shown}: cannot fetch: {redact.userinfo(str(error))}") from None
    drafts = parse_feed(data, where=shown, now=now, source=url, url=str(response.url))
    state = SourceState(url, response.headers.get("ETag", ""), response.headers.get("Last-Modified", ""))
    return drafts, state


def read_feed(
    source: str, *, store: Store, now: datetime, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[Draft], SourceState | None]:
    """A feed from a URL (with its validators) or a file (without)."""
    if source.startswith(("http://", "https://")):
        return fetch_feed(source, store=store, now=now, max_bytes=max_bytes)
    try:
        data = Path(source).read_bytes()
    except OSError as error:
        raise ContentError(f"{source}: cannot read: {error.strerror}") from None
    return parse_feed(data, where=source, now=now, source=Path(source).name), None
