"""The public site in the web app: pages rendered once per snapshot, served with ETag, Last-Modified, 304.

`SitePages` keeps the rendered pages of the current snapshot in memory. It asks the store at most
once every `refresh` seconds whether what is published changed (an import, an issue going out, a
scheduled article coming due); if so, the next request renders from a fresh snapshot. `page`
is the catch-all endpoint after the app's own routes; a path with no page gets the site's 404.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from email.utils import format_datetime

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from publisher.clock import system_clock
from publisher.publication import Publication
from publisher.site import Page, Site
from publisher.webfiles import not_modified

PAGE_CACHE = "public, max-age=60"
REFRESH = 1.0  # seconds between two looks at the store's fingerprint
MAX_PAGES = 4096  # rendered pages kept; the oldest go first (a crawler never fills the memory)
# Article content may show images from anywhere (a feed entry's, say); nothing else is loosened.
SITE_CSP = (
    "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "style-src 'self'; img-src 'self' https: data:"
)


@dataclass(frozen=True)
class Served:
    """A rendered page with its validators."""

    body: bytes
    media_type: str
    etag: str
    last_modified: str

    def response(self, request_headers: Headers, status_code: int = 200) -> Response:
        headers = {"etag": self.etag, "last-modified": self.last_modified, "cache-control": PAGE_CACHE}
        if status_code == 200 and not_modified(Headers(headers), request_headers):
            return Response(status_code=304, headers=headers)
        if status_code != 200:
            headers = {"cache-control": "no-store"}
        headers["content-security-policy"] = SITE_CSP
        return Response(self.body, status_code=status_code, media_type=self.media_type, headers=headers)


def served(page: Page, last_modified: str) -> Served:
    tag = hashlib.blake2b(page.body, digest_size=12).hexdigest()
    return Served(page.body, page.media_type, f'W/"{tag}"', last_modified)


class SitePages:
    """The rendered pages of the publication's current snapshot (thread-safe)."""

    def __init__(self, publication: Publication, env: jinja2.Environment, refresh: float = REFRESH) -> None:
        self.publication = publication
        self.env = env
        self.refresh = refresh
        self._lock = threading.Lock()
        self._site: Site | None = None
        self._fingerprint: object = None
        self._checked = float("-inf")
        self._pages: dict[str, Served] = {}
        self._last_modified = ""

    def fresh(self, path: str) -> Served | None:
        """The cached page when the cache is known to be current (no I/O); None otherwise."""
        if time.monotonic() - self._checked < self.refresh:
            return self._pages.get(path)
        return None

    def _current(self) -> Site:
        now = time.monotonic()
        if self._site is not None and now - self._checked < self.refresh:
            return self._site
        fingerprint = self.publication.site_fingerprint()
        if self._site is None or fingerprint != self._fingerprint:
            self._site = self.publication.site(self.env)
            self._fingerprint = fingerprint
            self._pages = {}
            self._last_modified = format_datetime(system_clock().replace(microsecond=0), usegmt=True)
        self._checked = now
        return self._site

    def get(self, path: str) -> Served | None:
        """The page at `path` (rendered now if it is not cached), or None (not cached: any path may be asked)."""
        with self._lock:
            site = self._current()
            if path in self._pages:
                return self._pages[path]
            page = site.render(path)
            if page is None:
                return None
            if len(self._pages) >= MAX_PAGES:
                del self._pages[next(iter(self._pages))]
            self._pages[path] = served(page, self._last_modified)
            return self._pages[path]

    def not_found(self) -> Served:
        with self._lock:
            if "404" not in self._pages:  # never a path: every path starts with "/"
                self._pages["404"] = served(self._current().not_found(), self._last_modified)
            return self._pages["404"]


class NotModified:
    """Answers a conditional GET for a cached, current page with 304 at once, before routing and
    compression: the cheap answer feed readers and browsers get most of the time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            pages: SitePages = scope["app"].state.site_pages
            found = pages.fresh(scope["path"])
            if found is not None:
                answer = found.response(Headers(scope=scope))
                if answer.status_code == 304:
                    await answer(scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def page(request: Request) -> Response:
    """Any path the app's own routes did not take: a site page, or the site's 404."""
    pages: SitePages = request.app.state.site_pages
    path = request.url.path
    found = pages.fresh(path) or await run_in_threadpool(pages.get, path)
    if found is None:
        missing = await run_in_threadpool(pages.not_found)
        return missing.response(request.headers, 404)
    return found.response(request.headers)
