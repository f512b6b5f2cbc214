"""The public web app: subscribe, confirm, unsubscribe, preferences, the archive and the feeds.

`create_app(settings, store)` builds a Starlette app; `serve(settings, store)` runs it with
uvicorn (`make_server` gives the server for embedding, e.g. in `publisher run`). Each endpoint
reads the request, calls one function of `Publication` (the sign-up flows of `publisher.signup`) in a worker thread, and
renders a page from `templates/web/`, in `site.language` (`publisher.i18n`). No cookies, no sessions, no
JavaScript.
"""

from __future__ import annotations

import functools
import logging
import re
import socket
import threading
import zoneinfo
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from publisher import api, console, i18n, metrics, signup, tokens, webhooks
from publisher.config import Settings, check_web_secrets
from publisher.errors import PublisherError, RateLimited, SubscriberError, TokenError
from publisher.feedformats import FORMATS
from publisher.feeds import FEEDS_URL_PATH
from publisher.model import StoredSubscriber
from publisher.publication import Publication
from publisher.resources import static_dir
from publisher.siteweb import NotModified, SitePages, page
from publisher.templates import environment
from publisher.text import whole_number
from publisher.webfiles import Files

log = logging.getLogger(__name__)

FEED_LINKS = tuple(
    {"href": f"{FEEDS_URL_PATH}/{fmt.filename}", "type": fmt.media_type, "label": fmt.label} for fmt in FORMATS
)
_COMMON_CSP = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
PAGE_CSP = f"{_COMMON_CSP}; style-src 'self'; img-src 'self' data:; script-src 'self'"  # timezone.js
# Archived issues are the email's HTML: inline styles and remote images are part of it.
ARCHIVE_CSP = f"{_COMMON_CSP}; style-src 'self' 'unsafe-inline'; img-src 'self' https: data:"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",  # page URLs carry tokens: never hand them to another site
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}
# Paths whose last part is a bearer token (unsubscribe and preferences ones never expire).
_TOKEN_PATH = re.compile(r"^/(confirm|unsubscribe|preferences)/[^/?\s]+")
CSRF_AGE = timedelta(days=1)
HOLDER_STALE = timedelta(minutes=2)  # the scheduler refreshes its record every 30 seconds
MAX_FORM = 64 * 1024
FEED_CACHE = "public, max-age=300"
ARCHIVE_CACHE = "public, max-age=3600"
INVALID_EMAIL = "is not a valid email address"  # publisher.subscribers.normalise_email's words
TITLES = {
    400: "This link does not work",
    403: "This form has expired",
    404: "Page not found",
    405: "Method not allowed",
    413: "Too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Something went wrong",
}


class SecurityHeaders:
    """Adds the security headers (and a CSP fitting the path) to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = ARCHIVE_CSP if scope["path"].startswith("/archive/") else PAGE_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in {**SECURITY_HEADERS, "content-security-policy": csp}.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


# A query parameter whose name says it is secret: its value never reaches a log.
_SECRET_QUERY = re.compile(r"([?&][^=&#]*(?:token|password|secret|csrf|key|auth)[^=&#]*=)[^&#]*", re.IGNORECASE)


def route_of(path: str) -> str:
    """A path fit for a log: a token in it becomes the route's `{token}`, and the value of a query
    parameter named like a secret (`access_token=`, `csrf=`, `password=` …) becomes `***`."""
    return _SECRET_QUERY.sub(r"\1***", _TOKEN_PATH.sub(r"/\1/{token}", path))


class HideTokens(logging.Filter):
    """Writes `/unsubscribe/{token}` instead of the token into uvicorn's access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            record.args = (*record.args[:2], route_of(record.args[2]), *record.args[3:])
        return True


# --- pages ----------------------------------------------------------------------------------


def render(
    request: Request, name: str, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> HTMLResponse:
    state = request.app.state
    html = state.pages.get_template(f"web/{name}.html").render(
        site=state.settings.site, feeds=FEED_LINKS, private="token" in request.path_params, **context
    )
    # The security headers are set here too: a 500 page leaves through the outermost middleware.
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "cache-control": "no-store",
            **SECURITY_HEADERS,
            "content-security-policy": PAGE_CSP,
            **(headers or {}),
        },
    )


def say(request: Request, message: str) -> str:
    """A message of ours (a page title, an error) in `site.language`; one without a translation
    (e.g. about a tampered form) stays as it is."""
    return i18n.translations(request.app.state.settings.site.language).gettext(message)


def error_page(request: Request, status_code: int, message: str, headers: dict | None = None) -> Response:
    try:
        return render(
            request,
            "error",
            status_code,
            headers,
            status=status_code,
            heading=say(request, TITLES.get(status_code, "Something went wrong")),
            message=say(request, message),
        )
    except Exception:
        log.exception("cannot render the error page")
        return PlainTextResponse(message, status_code=status_code, headers=headers)


async def read_form(request: Request) -> FormData:
    """A small form: no files, at most 100 fields, at most MAX_FORM bytes however it is sent."""
    length = request.headers.get("content-length")
    if length is not None and whole_number(length, high=MAX_FORM) is None:
        raise HTTPException(413, "This form is too large.")
    body = bytearray()
    async for chunk in request.stream():  # a chunked body has no Content-Length to trust
        body += chunk
        if len(body) > MAX_FORM:
            raise HTTPException(413, "This form is too large.")
    request._body = bytes(body)  # Starlette parses the form from the body already read
    return await request.form(max_files=0, max_fields=100)


def _text(form: FormData, key: str, limit: int = 1000) -> str:
    value = form.get(key)
    return value[:limit] if isinstance(value, str) else ""


def _texts(form: FormData, key: str) -> list[str]:
    return [value[:200] for value in form.getlist(key)[:100] if isinstance(value, str)]


def _newsletters(settings: Settings) -> list[dict]:
    return [{"name": name, "title": nl.title} for name, nl in settings.newsletters.items()]


@functools.cache
def _zones() -> tuple[str, ...]:
    """The IANA time zones a reader may pick on the preferences page: the tz database's own list
    for people to choose from (`zone.tab`: current names, one or more per country, no old
    aliases like Africa/Asmera), else every zone with a region."""
    for folder in zoneinfo.TZPATH:
        try:
            table = (Path(folder) / "zone.tab").read_text(encoding="utf-8")
        except OSError:
            continue
        listed = {line.split("\t")[2] for line in table.splitlines() if line and not line.startswith("#")}
        return tuple(sorted(listed & zoneinfo.available_timezones()))
    return tuple(sorted(zone for zone in zoneinfo.available_timezones() if "/" in zone and not zone.startswith("Etc/")))


def _zones_for(current: str) -> tuple[str, ...]:
    """The zones to offer a reader: the usual list, plus the one they have (e.g. "UTC") so that
    it shows as chosen and saving the page keeps it."""
    zones = _zones()
    return zones if not current or current in zones else tuple(sorted((*zones, current)))


async def subscribe_form(request: Request) -> Response:
    settings = request.app.state.settings
    form = {"email": "", "name": "", "newsletters": [], "topics": [], "timezone": ""}
    return _subscribe_page(request, settings, form, "")


def _subscribe_page(request: Request, settings: Settings, form: dict, error: str) -> Response:
    return render(
        request,
        "subscribe",
        400 if error else 200,
        form=form,
        error=error,
        newsletters=_newsletters(settings),
        topics=settings.topics,
        consent=signup.consent_sentence(settings, form["newsletters"] or settings.newsletters),
    )


async def subscribe(request: Request) -> Response:
    state = request.app.state
    settings = state.settings
    posted = await read_form(request)
    form: dict[str, Any] = {
        "email": _text(posted, "email", 320),
        "name": _text(posted, "name", 200),
        "newsletters": _texts(posted, "newsletter"),
        "topics": _texts(posted, "topic"),
        "timezone": _text(posted, "timezone", 64),
    }
    try:
        wanted = signup.read_signup(
            settings, form["email"], form["name"], form["newsletters"], form["topics"], form["timezone"]
        )
    except SubscriberError as error:
        return _subscribe_page(request, settings, form, _form_error(request, form["email"], error))
    ip = request.client.host if request.client else "unknown"
    outcome = await run_in_threadpool(state.publication.subscribe, wanted, ip=ip, honeypot=_text(posted, "website"))
    log.info("subscribe request: %s", outcome)
    expiry = signup.human_duration(settings.web.confirm_expiry, settings.site.language)
    return render(request, "subscribed", email=wanted.email, expiry=expiry)


def _form_error(request: Request, email: str, error: SubscriberError) -> str:
    """What to tell the visitor, in `site.language`: a bad address in a sentence of its own (the
    validator's English detail is kept only on English pages)."""
    if INVALID_EMAIL in str(error):
        translated = say(request, "%(email)s is not a valid email address") % {"email": email.strip()}
        return str(error) if i18n.code(request.app.state.settings.site.language) == "en" else translated
    return _visitor_error(request, str(error))


def _visitor_error(request: Request, message: str) -> str:
    """A form error in `site.language`. One our catalogue cannot translate (it names what a
    tampered form posted, say an unknown newsletter) becomes a sentence the visitor can read."""
    translated = say(request, message)
    if translated != message or i18n.code(request.app.state.settings.site.language) == "en":
        return translated
    return say(request, UNREADABLE_FORM)


UNREADABLE_FORM = "This form could not be read: please go back, reload the page and try again."


async def confirm_page(request: Request) -> Response:
    state, token = request.app.state, request.path_params["token"]
    wanted = await run_in_threadpool(state.publication.read_confirmation, token)
    return render(
        request,
        "confirm",
        action=f"/confirm/{token}",
        email=wanted.subscriber.email,
        titles=_titles(state.settings, wanted.newsletters),
        consent=signup.consent_sentence(state.settings, wanted.newsletters),
    )


async def confirm(request: Request) -> Response:
    state, token = request.app.state, request.path_params["token"]
    done = await run_in_threadpool(state.publication.confirm, token)
    return render(
        request,
        "confirmed",
        email=done.subscriber.email,
        welcome=state.settings.web.welcome,
        titles=_titles(state.settings, done.newsletters),
    )


def _titles(settings: Settings, names: Iterable[str]) -> list[str]:
    return [settings.newsletters[name].title for name in names if name in settings.newsletters]


async def unsubscribe_page(request: Request) -> Response:
    """GET changes nothing: link scanners and previews follow links."""
    state, token = request.app.state, request.path_params["token"]
    found = await run_in_threadpool(state.publication.read_unsubscribe, token)
    person = found.subscriber
    preferences = person and tokens.preferences_url("", state.settings.secret_keys, person.id)
    return render(
        request,
        "unsubscribe",
        action=f"/unsubscribe/{token}",
        title=found.title,
        email=person.email if person else "",
        preferences_url=preferences,
    )


async def unsubscribe(request: Request) -> Response:
    """RFC 8058 one-click (body `List-Unsubscribe=One-Click`, any encoding) and the page's button.

    The body is not needed: the token says who and what. Answers 200, never a redirect.
    """
    state, token = request.app.state, request.path_params["token"]
    found = await run_in_threadpool(state.publication.unsubscribe, token)
    person = found.subscriber
    can_return = person is not None and person.status != "bounced" and found.newsletter in state.settings.newsletters
    return render(
        request,
        "unsubscribed",
        title=found.title,
        email=person.email if person else "",
        resubscribe_action=f"/unsubscribe/{token}/resubscribe" if can_return else "",
        csrf=tokens.csrf_token(state.settings.secret_keys, f"resubscribe:{token}"),
    )


async def resubscribe(request: Request) -> Response:
    state, token = request.app.state, request.path_params["token"]
    posted = await read_form(request)
    await run_in_threadpool(state.publication.read_unsubscribe, token)  # 400 first
    if denied := _csrf_denied(request, posted, f"resubscribe:{token}"):
        return denied
    try:
        found = await run_in_threadpool(state.publication.resubscribe, token)
    except SubscriberError as error:
        return error_page(request, 400, str(error))
    return render(request, "resubscribed", title=found.title, email=found.subscriber.email)


def _csrf_denied(request: Request, posted: FormData, scope: str) -> Response | None:
    try:
        tokens.check_csrf(request.app.state.settings.secret_keys, _text(posted, "csrf"), scope, CSRF_AGE)
    except TokenError as error:
        return error_page(request, 403, str(error))
    return None


async def preferences_page(request: Request) -> Response:
    state, token = request.app.state, request.path_params["token"]
    person = await run_in_threadpool(state.publication.read_preferences, token)
    return _preferences(request, person, token)


def _preferences(
    request: Request, person: StoredSubscriber, token: str, *, saved: bool = False, error: str = ""
) -> Response:
    settings = request.app.state.settings
    return render(
        request,
        "preferences",
        400 if error else 200,
        subscriber=person,
        saved=saved,
        error=error,
        action=f"/preferences/{token}",
        newsletters=_newsletters(settings),
        topics=settings.topics,
        zones=_zones_for(person.timezone),
        csrf=tokens.csrf_token(settings.secret_keys, f"preferences:{token}"),
    )


async def save_preferences(request: Request) -> Response:
    state, token = request.app.state, request.path_params["token"]
    posted = await read_form(request)
    await run_in_threadpool(state.publication.read_preferences, token)  # 400 first
    if denied := _csrf_denied(request, posted, f"preferences:{token}"):
        return denied
    try:
        person = await run_in_threadpool(
            state.publication.save_preferences,
            token,
            name=_text(posted, "name", 200),
            newsletters=_texts(posted, "newsletter"),
            topics=_texts(posted, "topic"),
            timezone=_text(posted, "timezone", 64) if "timezone" in posted else None,
        )
    except SubscriberError as error:
        person = await run_in_threadpool(state.publication.read_preferences, token)
        return _preferences(request, person, token, error=_visitor_error(request, str(error)))
    return _preferences(request, person, token, saved=True)


async def archive_root(request: Request) -> Response:
    return RedirectResponse("/archive/", status_code=307)  # a path, never a host from the request


async def healthz(request: Request) -> Response:
    """200 while the database answers (503 when not), with who runs the timetable and when each
    kind of work last succeeded; never an error message (this page is public)."""
    health = await run_in_threadpool(request.app.state.publication.health)
    holder = health.scheduler
    body = {
        "status": "ok" if health.database else "unavailable",
        "database": "ok" if health.database else "unreachable",
        "scheduler": holder
        and {
            "holder": holder.holder,
            "since": holder.since.isoformat(),
            "seen_at": holder.seen_at.isoformat(),
            "stale": request.app.state.publication.now() - holder.seen_at > HOLDER_STALE,
        },
        "last_success": {
            f"{run.kind}:{run.name}" if run.name else run.kind: run.last_ok_at.isoformat()
            for run in health.runs
            if run.last_ok_at is not None
        },
    }
    return JSONResponse(body, status_code=200 if health.database else 503, headers={"cache-control": "no-store"})


async def metrics_page(request: Request) -> Response:
    """Prometheus's text format, for the bearer of `[metrics] token_env`'s token (404 without one:
    with no token configured, /metrics is served only on `[metrics] listen`)."""
    token = request.app.state.settings.metrics.token
    if not token:
        raise HTTPException(404)
    if not metrics.token_matches(request.headers.get("authorization", ""), token):
        return PlainTextResponse(
            "a metrics token is required\n", status_code=401, headers={"www-authenticate": 'Bearer realm="metrics"'}
        )
    return await metrics_response(request.app.state.metrics)


async def metrics_response(registry: metrics.Registry) -> Response:
    body = await run_in_threadpool(registry.exposition)
    return Response(body, media_type=metrics.CONTENT_TYPE, headers={"cache-control": "no-store"})


# --- errors ---------------------------------------------------------------------------------


async def on_http_error(request: Request, error: HTTPException) -> Response:
    if request.url.path.startswith(api.PREFIX + "/"):
        return api.http_problem(error.status_code, request.url.path)
    if error.status_code == 404 and request.method in ("GET", "HEAD"):
        return await page(request)  # the site's own 404 page
    messages = {404: "There is nothing at this address.", 405: "This address does not accept that request."}
    return error_page(
        request, error.status_code, messages.get(error.status_code, str(error.detail)), dict(error.headers or {})
    )


async def on_token_error(request: Request, error: TokenError) -> Response:
    return error_page(request, 400, str(error))


async def on_rate_limited(request: Request, error: RateLimited) -> Response:
    seconds = str(int(error.retry_after.total_seconds()))
    return error_page(request, 429, str(error), {"retry-after": seconds})


async def on_publisher_error(request: Request, error: PublisherError) -> Response:
    log.error("%s %s: %s", request.method, route_of(request.url.path), error)
    return error_page(request, 503, "Please try again in a few minutes.")


async def on_crash(request: Request, error: Exception) -> Response:
    if request.url.path.startswith(api.PREFIX + "/"):
        return api.http_problem(500, request.url.path)
    return error_page(request, 500, "Please try again in a few minutes.")


# --- the app --------------------------------------------------------------------------------


def routes(settings: Settings) -> list:
    static = static_dir(settings.templates.dir)
    return [
        Route("/subscribe", subscribe_form, methods=["GET"]),
        Route("/subscribe", subscribe, methods=["POST"]),
        Route("/confirm/{token}", confirm_page, methods=["GET"]),
        Route("/confirm/{token}", confirm, methods=["POST"]),
        Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
        Route("/unsubscribe/{token}/resubscribe", resubscribe, methods=["POST"]),
        Route("/preferences/{token}", preferences_page, methods=["GET"]),
        Route("/preferences/{token}", save_preferences, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
        Route("/archive", archive_root, methods=["GET"]),
        Route("/webhooks/{provider}", webhooks.endpoint(settings), methods=["POST"]),
        Route("/archive/", page, methods=["GET"]),  # every newsletter and its issues (publisher.site)
        Mount("/admin", routes=console.routes()),  # the operators' console (publisher.console)
        Mount(api.PREFIX, routes=api.routes()),  # the JSON API (publisher.api)
        Mount("/feeds", Files(settings.feeds.dir, FEED_CACHE)),
        Mount("/archive", Files(settings.archive.dir, ARCHIVE_CACHE)),
        Mount("/static", Files(static, ARCHIVE_CACHE)),
        Route("/{path:path}", page, methods=["GET"]),  # the public site's pages, and its 404
    ]


def create_app(publication: Publication) -> Starlette:
    """The whole public site over `publication` (its transport sends the sign-up mails)."""
    settings = publication.settings
    check_web_secrets(settings)  # CLI commands run without the web app's secrets; the web app does not

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(console.close, app)  # the uploaded CSV files waiting for confirmation
        await run_in_threadpool(publication.mailer.close)

    # Starlette types each handler as taking any Exception; ours take the class they are registered for.
    handlers: dict[Any, Callable[..., Any]] = {
        HTTPException: on_http_error,
        TokenError: on_token_error,
        RateLimited: on_rate_limited,
        PublisherError: on_publisher_error,
        500: on_crash,
    }
    counted = metrics.Registry.create(publication.metrics)
    app = Starlette(
        routes=routes(settings),
        middleware=[
            Middleware(metrics.HttpMetrics, metrics=counted),
            Middleware(SecurityHeaders),
            Middleware(NotModified),
            Middleware(GZipMiddleware, minimum_size=500, compresslevel=6),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # its redirects name the Host header's host
    app.state.settings = settings
    app.state.publication = publication
    app.state.metrics = counted
    app.state.pages = environment(settings)
    app.state.site_pages = SitePages(publication, app.state.pages)
    return app


def check_address(host: str, port: int, setting: str = "[web] port, or --port") -> None:
    """Fail at once, in one line, when the address cannot be listened on (in use, not ours);
    `setting` is where the operator changes it."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        raise PublisherError(f"cannot listen on {host}:{port}: {error.strerror or error} (set {setting})") from None


def make_server(
    publication: Publication,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str = "info",
    access_log: bool = True,
    log_format: str = "text",
) -> uvicorn.Server:
    """A uvicorn server for the app (call `.run()`, or run it in a thread and set `.should_exit`).

    With `log_format="json"` uvicorn keeps its own handlers out and its lines reach the root
    logger's JSON handler (`logs.configure`)."""
    settings = publication.settings
    host = host or settings.web.host
    port = settings.web.port if port is None else port
    config = uvicorn.Config(
        create_app(publication),
        host=host,
        port=port,
        proxy_headers=True,  # X-Forwarded-For counts only from [web] trusted_proxies
        forwarded_allow_ips=list(settings.web.trusted_proxies),
        server_header=False,
        log_level=log_level,
        access_log=access_log,
        **_log_config(log_format),
    )
    access = logging.getLogger("uvicorn.access")  # configured by uvicorn.Config just above
    if not any(isinstance(f, HideTokens) for f in access.filters):
        access.addFilter(HideTokens())
    return uvicorn.Server(config)


def _log_config(log_format: str) -> dict[str, Any]:
    return {"log_config": None} if log_format == "json" else {}


def make_metrics_server(server: uvicorn.Server, *, log_format: str = "text") -> uvicorn.Server | None:
    """With `[metrics] listen`, a second server there that answers only `GET /metrics`, without a
    token (bind it to an address only the monitoring system reaches). It shares the web app's
    registry, so the HTTP request counts are the web app's."""
    app = cast(Starlette, server.config.app)  # make_server's app
    settings: Settings = app.state.settings
    if not settings.metrics.listen:
        return None
    registry: metrics.Registry = app.state.metrics

    async def endpoint(request: Request) -> Response:
        return await metrics_response(registry)

    host, port = settings.metrics.address
    only_metrics = Starlette(routes=[Route("/metrics", endpoint, methods=["GET"])])
    # Logging is the process's, set up by the web server's Config: a log_config, log_level or
    # access_log=False here would reconfigure uvicorn's loggers and silence the site's own lines.
    config = uvicorn.Config(only_metrics, host=host, port=port, server_header=False, log_config=None)
    return uvicorn.Server(config)


class ServerThread:
    """A uvicorn server in a daemon thread, until `stop()`."""

    def __init__(self, server: uvicorn.Server, name: str) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.run, name=name, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(
    publication: Publication, *, host: str | None = None, port: int | None = None, log_format: str = "text"
) -> None:
    """Serve the site until interrupted (`publisher serve`), and `[metrics] listen` beside it."""
    server = make_server(publication, host=host, port=port, log_format=log_format)
    check_address(server.config.host, server.config.port)
    extra = make_metrics_server(server, log_format=log_format)
    if extra is None:
        server.run()
        return
    check_address(extra.config.host, extra.config.port, "[metrics] listen")
    beside = ServerThread(extra, "metrics")
    try:
        server.run()
    finally:
        beside.stop()
