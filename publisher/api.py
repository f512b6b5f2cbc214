"""The JSON API at /api/v1/: other systems subscribe, publish and watch through `Publication`.

Every endpoint is one `Endpoint` in `ENDPOINTS`: its method and path, the permission its bearer
token needs (`None`: public), its handler and what `publisher.openapi` says about it, so the
routes and the OpenAPI document come from one table. A handler reads the request, calls one
`Publication` method in a worker thread, writes the audit log for a change, and answers JSON.
Errors are RFC 9457 problem details (`application/problem+json`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from publisher import posting
from publisher.console.issues import sends
from publisher.content import article_json
from publisher.errors import (
    AccessError,
    ArticleConflict,
    ConfigError,
    ContentError,
    DigestError,
    OperatorError,
    PublisherError,
    RateLimited,
    SubscriberError,
)
from publisher.model import Article, Issue, StoredSubscriber
from publisher.openapi import SCHEMAS
from publisher.operators import Actor, Permission
from publisher.publication import IssueStatus, Publication
from publisher.text import MAX_WHOLE, whole_number

if TYPE_CHECKING:
    from publisher.signup import SignUp

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
PROBLEM = "application/problem+json"
PROBLEM_TYPES = "https://publisher.invalid/problems/"  # + a slug: stable names a client can branch on
MAX_BODY = 1024 * 1024
PAGE_LIMIT = 100
NEUTRAL = "If the address can be subscribed, a confirmation mail is on its way to it."


# An absolute file-system path (not the path of a URL): an API client learns only its last part.
_FILE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s/:'\"]+/)+([^\s/:'\"]+)")


def without_paths(message: str) -> str:
    """`/etc/publisher/config.toml: no [newsletters.x]` → `config.toml: no [newsletters.x]`."""
    return _FILE_PATH.sub(r"\1", message)


class Problem(Exception):
    """An RFC 9457 problem: raised anywhere in a handler, answered as `application/problem+json`."""

    def __init__(
        self, status: int, slug: str, title: str, detail: str = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail or title)
        # no server paths (the config file's, a content file's) reach a client
        self.status, self.slug, self.title, self.detail = status, slug, title, without_paths(detail)
        self.headers = headers or {}

    def response(self, instance: str) -> JSONResponse:
        body = {"type": PROBLEM_TYPES + self.slug, "title": self.title, "status": self.status, "instance": instance}
        if self.detail:
            body["detail"] = self.detail
        return JSONResponse(
            body, status_code=self.status, media_type=PROBLEM, headers={"cache-control": "no-store", **self.headers}
        )


def problem_for(error: PublisherError) -> Problem:
    """What a `PublisherError` from `Publication` means to an API client."""
    if isinstance(error, RateLimited):
        seconds = str(int(error.retry_after.total_seconds()))
        return Problem(429, "rate-limited", "Too many requests", str(error), {"retry-after": seconds})
    if isinstance(error, AccessError):
        return Problem(403, "forbidden", "Not allowed", str(error))
    if isinstance(error, ArticleConflict):
        return Problem(409, "conflict", "The article exists", str(error))
    if isinstance(error, SubscriberError | ContentError | OperatorError | ConfigError):
        return Problem(422, "invalid", "The request cannot be carried out", str(error))
    if isinstance(error, DigestError):
        return Problem(409, "conflict", "The issue is not in a state for that", str(error))
    log.error("API: %s", error)
    return Problem(503, "unavailable", "Please try again in a few minutes")


def http_problem(status: int, instance: str) -> JSONResponse:
    """Starlette's own 404 and 405 under /api/, as problems (`web.on_http_error` calls this)."""
    if status == 405:
        return Problem(405, "method-not-allowed", "This address does not accept that method").response(instance)
    if status == 404:
        return Problem(404, "not-found", "There is nothing at this address").response(instance)
    if status == 500:
        return Problem(500, "internal", "Something went wrong", "please try again in a few minutes").response(instance)
    return Problem(status, "error", "The request failed").response(instance)


# --- requests -------------------------------------------------------------------------------


def publication(request: Request) -> Publication:
    found: Publication = request.app.state.publication
    return found


async def authenticate(request: Request, permission: Permission) -> Actor:
    """The token's actor, holding `permission`: 401 without a known, unrevoked token, 403 without the permission."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    challenge = {"www-authenticate": 'Bearer realm="publisher"'}
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401, "unauthorized", "A bearer token is required", "send Authorization: Bearer <token>", challenge
        )
    try:
        actor = await run_in_threadpool(publication(request).token_actor, token.strip())
    except AccessError as error:
        raise Problem(401, "unauthorized", "The token is not accepted", str(error), challenge) from None
    if not actor.can(permission):
        raise Problem(403, "forbidden", "Not allowed", f"this token's scope does not include {permission}")
    return actor


async def read_json(request: Request, limit: int = MAX_BODY) -> dict[str, Any]:
    """The body as a JSON object, at most `limit` bytes however it is sent."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise Problem(415, "unsupported-media-type", "Send JSON", "Content-Type must be application/json")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, "too-large", "The body is too large", f"at most {limit} bytes")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise Problem(400, "bad-json", "The body is not JSON") from None
    if not isinstance(value, dict):
        raise Problem(400, "bad-json", "The body must be a JSON object")
    return value


def known_fields(body: dict[str, Any], schema: str, where: str = "") -> dict[str, Any]:
    """`body`, when every key is one `openapi.SCHEMAS[schema]` lists: a misspelt field is a 422, not ignored."""
    allowed = SCHEMAS[schema]["properties"]
    unknown = sorted(key for key in body if key not in allowed)
    if unknown:
        raise Problem(
            422,
            "unknown-field",
            "The body has fields this endpoint does not take",
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(where + repr(k) for k in unknown)}; "
            f"{where.rstrip('.') or 'the body'} takes {', '.join(allowed)}",
        )
    return body


async def no_fields(request: Request) -> None:
    """An action that takes no body: nothing, or `{}`, is fine; fields are a 422, as they would be unread."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > 1024:
            break
    if body.strip() and body.strip() != b"{}":
        raise Problem(
            422, "unknown-field", "The body has fields this endpoint does not take", "this endpoint takes no body"
        )


def text(body: dict[str, Any], key: str, *, default: str | None = None, limit: int = 100_000) -> str | None:
    value = body.get(key, default)
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise Problem(422, "invalid", "The request cannot be carried out", f"{key}: a string of at most {limit} chars")
    return value


def strings(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise Problem(422, "invalid", "The request cannot be carried out", f"{key}: a list of strings")
    return value


def moment(body: dict[str, Any], key: str) -> datetime | None:
    value = text(body, key, limit=64)
    if value is None:
        return None
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        raise Problem(422, "invalid", "The request cannot be carried out", f"{key}: not an ISO-8601 time") from None
    if found.tzinfo is None:
        raise Problem(422, "invalid", "The request cannot be carried out", f"{key}: give a time zone offset")
    if not 1970 <= found.year <= 9000:  # year 9999 overflows as soon as anything adds to it
        raise Problem(422, "invalid", "The request cannot be carried out", f"{key}: a year from 1970 to 9000")
    return found


def number(request: Request, key: str, default: int, *, low: int = 0, high: int = MAX_WHOLE) -> int:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    value = whole_number(raw, low=low, high=high)
    if value is None:
        raise Problem(400, "bad-parameter", "A query parameter is wrong", f"{key}: a whole number {low}-{high}")
    return value


# --- what the API answers with ----------------------------------------------------------------


def subscriber_json(person: StoredSubscriber) -> dict[str, Any]:
    return {
        "id": person.id,
        "email": person.email,
        "name": person.name,
        "status": str(person.status),
        "newsletters": list(person.newsletters),
        "topics": list(person.topics),
        "source": person.source,
        "consent_at": person.consent_at.isoformat() if person.consent_at else None,
        "consent_text": person.consent_text,
        "created_at": person.created_at.isoformat() if person.created_at else None,
    }


def issue_json(issue: Issue) -> dict[str, Any]:
    return {
        "newsletter": issue.newsletter,
        "number": issue.number,
        "kind": str(issue.kind),
        "state": str(issue.state),
        "slot": issue.slot.isoformat(),
        "subject": issue.subject,
        "articles": len(issue.article_ids),
        "sent_at": issue.sent_at.isoformat() if issue.sent_at else None,
    }


def status_json(status: IssueStatus) -> dict[str, Any]:
    return {
        **issue_json(status.issue),
        "recipients": status.recipients,
        "counts": status.counts,
        "next_attempt_at": status.next_attempt_at.isoformat() if status.next_attempt_at else None,
    }


def _article(request: Request, article: Article) -> dict[str, Any]:
    return article_json(article, publication(request).settings.site.url)


# --- endpoints --------------------------------------------------------------------------------

Handler = Callable[[Request, Actor], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    permission: Permission | None
    handler: Callable[..., Awaitable[Response]]
    summary: str
    status: int = 200
    request: str = ""  # the name of the request body's schema in `openapi.SCHEMAS`
    response: str = ""  # the name of the response's schema
    query: tuple[str, ...] = ()
    errors: tuple[int, ...] = field(default=())

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


async def _audited(request: Request, actor: Actor, action: str, detail: dict[str, Any]) -> None:
    await run_in_threadpool(publication(request).audit, actor, action, {**detail, "via": "api"})


async def list_subscribers(request: Request, actor: Actor) -> Response:
    limit = number(request, "limit", 50, low=1, high=PAGE_LIMIT)
    after = number(request, "cursor", 0)
    people = await run_in_threadpool(
        publication(request).subscriber_page,
        after=after,
        limit=limit,
        status=request.query_params.get("status") or None,
        newsletter=request.query_params.get("newsletter") or None,
    )
    following = str(people[-1].id) if len(people) == limit else None
    return JSONResponse({"data": [subscriber_json(p) for p in people], "next_cursor": following})


async def _subscriber(request: Request) -> StoredSubscriber:
    try:
        return await run_in_threadpool(publication(request).subscriber, request.path_params["email"])
    except SubscriberError as error:
        raise Problem(404, "not-found", "No such subscriber", str(error)) from None


async def get_subscriber(request: Request, actor: Actor) -> Response:
    return JSONResponse(subscriber_json(await _subscriber(request)))


async def create_subscriber(request: Request, actor: Actor) -> Response:
    body = known_fields(await read_json(request, 64 * 1024), "NewSubscriber")
    if isinstance(body.get("consent"), dict):
        known_fields(body["consent"], "Consent", "consent.")
    email = text(body, "email", default="", limit=320) or ""
    confirmed = body.get("confirmed", False)
    consent = body.get("consent")
    if not isinstance(confirmed, bool):
        raise Problem(422, "invalid", "The request cannot be carried out", "confirmed: true or false")
    if confirmed and not (isinstance(consent, dict) and text(consent, "text", limit=2000) and consent.get("at")):
        raise Problem(
            422,
            "consent-required",
            "A confirmed subscriber needs a consent record",
            'give consent: {"text": what they agreed to, "at": when (ISO-8601)}, or leave confirmed out '
            "for double opt-in",
        )
    record = (moment(consent, "at"), str(consent["text"])) if confirmed and isinstance(consent, dict) else None
    person = await run_in_threadpool(
        lambda: publication(request).create_subscriber(
            email,
            name=text(body, "name", default="", limit=200) or "",
            newsletters=strings(body, "newsletters") or (),
            topics=strings(body, "topics") or (),
            consent=(record[0], record[1]) if record and record[0] else None,
            source=f"api:{actor.name}",
        )
    )
    await _audited(request, actor, "subscriber.add", {"email": person.email, "confirmed": confirmed})
    return JSONResponse(
        subscriber_json(person), status_code=201, headers={"location": f"{PREFIX}/subscribers/{person.email}"}
    )


async def update_subscriber(request: Request, actor: Actor) -> Response:
    body = known_fields(await read_json(request, 64 * 1024), "SubscriberChange")
    found = await _subscriber(request)
    person = await run_in_threadpool(
        lambda: publication(request).update_subscriber(
            found.email,
            name=text(body, "name", limit=200),
            newsletters=strings(body, "newsletters"),
            topics=strings(body, "topics"),
        )
    )
    await _audited(request, actor, "subscriber.update", {"email": person.email, "fields": sorted(body)})
    return JSONResponse(subscriber_json(person))


async def delete_subscriber(request: Request, actor: Actor) -> Response:
    found = await _subscriber(request)
    await run_in_threadpool(publication(request).remove_subscriber, found.email)
    await _audited(request, actor, "subscriber.remove", {"email": found.email})
    return Response(status_code=204)


async def list_articles(request: Request, actor: Actor) -> Response:
    limit = number(request, "limit", 50, low=1, high=PAGE_LIMIT)
    offset = number(request, "offset", 0)
    found, total = await run_in_threadpool(
        lambda: publication(request).find_articles(request.query_params.get("q", ""), limit=limit, offset=offset)
    )
    return JSONResponse({"data": [_article(request, a) for a in found], "total": total})


async def get_article(request: Request, actor: Actor) -> Response:
    try:
        article, _issues = await run_in_threadpool(publication(request).article, request.path_params["slug"])
    except ContentError as error:
        raise Problem(404, "not-found", "No such article", str(error)) from None
    return JSONResponse(_article(request, article))


async def post_article(request: Request, actor: Actor) -> Response:
    body = known_fields(await read_json(request), "NewArticle")
    tags = strings(body, "tags") or []
    posted = posting.Posted(
        title=text(body, "title", default="", limit=1000) or "",
        markdown=text(body, "markdown", limit=MAX_BODY),
        html=text(body, "html", limit=MAX_BODY),
        published=moment(body, "published"),
        tags=tuple(tags),
        slug=text(body, "slug", default="", limit=255) or "",
    )
    article, is_new = await run_in_threadpool(publication(request).post_article, posted)
    await _audited(request, actor, "article.post", {"slug": article.slug, "new": is_new})
    return JSONResponse(
        _article(request, article),
        status_code=201 if is_new else 200,
        headers={"location": f"{PREFIX}/articles/{article.slug}"},
    )


def _newsletter(request: Request) -> str:
    name = str(request.path_params["newsletter"])
    if name not in publication(request).settings.newsletters:
        raise Problem(404, "not-found", "No such newsletter", f"there is no newsletter {name!r}")
    return name


async def _issue_status(request: Request) -> IssueStatus:
    name = _newsletter(request)
    number = whole_number(str(request.path_params["number"]), low=1)
    if number is None:
        raise Problem(400, "bad-parameter", "A path parameter is wrong", f"number: a whole number 1-{MAX_WHOLE}")
    try:
        return await run_in_threadpool(publication(request).issue_status, name, number)
    except DigestError as error:
        raise Problem(404, "not-found", "No such issue", str(error)) from None


async def list_issues(request: Request, actor: Actor) -> Response:
    found = await run_in_threadpool(publication(request).issues, _newsletter(request))
    return JSONResponse({"data": [issue_json(issue) for issue in found]})


async def get_issue(request: Request, actor: Actor) -> Response:
    return JSONResponse(status_json(await _issue_status(request)))


async def approve_issue(request: Request, actor: Actor) -> Response:
    await no_fields(request)
    status = await _issue_status(request)
    issue = status.issue
    await run_in_threadpool(publication(request).approve, issue.newsletter, issue.number)
    await _audited(request, actor, "issue.approve", {"newsletter": issue.newsletter, "number": issue.number})
    return JSONResponse(status_json(await _issue_status(request)))


async def send_issue(request: Request, actor: Actor) -> Response:
    """Start sending at once (the issue's slot need not have come); answers 202 while it runs."""
    await no_fields(request)
    status = await _issue_status(request)
    pub = publication(request)
    issue = await run_in_threadpool(pub.send_issue, status.issue.newsletter, status.issue.number)
    if sends(request).running(issue.newsletter):
        raise Problem(409, "conflict", "A send of this newsletter is running already")
    await _audited(request, actor, "issue.send", {"newsletter": issue.newsletter, "number": issue.number})
    started = sends(request).start(issue.newsletter, lambda: pub.deliver(issue))
    if not started:
        raise Problem(409, "conflict", "A send of this newsletter is running already")
    location = f"{PREFIX}/newsletters/{issue.newsletter}/issues/{issue.number}"
    return JSONResponse(status_json(status), status_code=202, headers={"location": location})


# --- the public sign-up endpoint --------------------------------------------------------------


def _cors(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin", "")
    if origin and origin in publication(request).settings.api.cors_origins:
        return {"access-control-allow-origin": origin, "vary": "Origin"}
    return {"vary": "Origin"}


async def subscribe_preflight(request: Request, actor: Actor | None) -> Response:
    headers = _cors(request)
    if "access-control-allow-origin" in headers:
        headers.update(
            {
                "access-control-allow-methods": "POST",
                "access-control-allow-headers": "content-type",
                "access-control-max-age": "3600",
            }
        )
    return Response(status_code=204, headers=headers)


async def subscribe(request: Request, actor: Actor | None) -> Response:
    """Another site's sign-up form: the same checks, limits and mail as `POST /subscribe`; the same
    answer whether the address is new, known, confirmed or limited."""
    from publisher import signup

    pub = publication(request)
    try:
        body = known_fields(await read_json(request, 16 * 1024), "SignUp")
    except Problem as refused:
        refused.headers.update(_cors(request))  # the calling page may read why
        return refused.response(request.url.path)
    try:
        wanted = signup.read_signup(
            pub.settings,
            text(body, "email", default="", limit=320) or "",
            text(body, "name", default="", limit=200) or "",
            strings(body, "newsletters") or (),
            strings(body, "topics") or (),
            all_by_default=True,  # as the consent sentence of a form without choices says
            list_known=False,  # anyone may call this: it does not list the configured newsletters
        )
    except SubscriberError as error:
        problem = Problem(422, "invalid", "The request cannot be carried out", str(error), _cors(request))
        return problem.response(request.url.path)
    ip = request.client.host if request.client else "unknown"
    try:
        await run_in_threadpool(pub.count_subscribe_request, ip)
    except RateLimited as error:
        problem = problem_for(error)
        problem.headers.update(_cors(request))
        return problem.response(request.url.path)
    # The rest (the store, the confirmation mail) runs after the answer has gone, whatever the
    # address: a known one and a new one answer in the same time.
    later = BackgroundTask(_subscribe_after, pub, wanted, ip, text(body, "website", default="") or "")
    return JSONResponse(
        {"status": "accepted", "detail": NEUTRAL}, status_code=202, headers=_cors(request), background=later
    )


def _subscribe_after(pub: Publication, wanted: SignUp, ip: str, honeypot: str) -> None:
    try:
        outcome = pub.subscribe(wanted, ip=ip, honeypot=honeypot, counted=True)
    except PublisherError as error:
        log.error("API subscribe request failed after the answer: %s", error)
        return
    log.info("API subscribe request: %s", outcome)


async def openapi_document(request: Request, actor: Actor | None) -> Response:
    from publisher.openapi import document

    return JSONResponse(document(ENDPOINTS, publication(request).settings), headers={"cache-control": "no-store"})


READ, WRITE = Permission.READ, Permission.WRITE
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/openapi.json", None, openapi_document, "This document", response="Any"),
    Endpoint(
        "GET",
        "/subscribers",
        READ,
        list_subscribers,
        "Subscribers in id order, a page at a time",
        response="SubscriberPage",
        query=("cursor", "limit", "status", "newsletter"),
    ),
    Endpoint(
        "POST",
        "/subscribers",
        WRITE,
        create_subscriber,
        "Add a subscriber: pending with one confirmation mail, or confirmed with a consent record",
        status=201,
        request="NewSubscriber",
        response="Subscriber",
        errors=(409, 422),
    ),
    Endpoint("GET", "/subscribers/{email}", READ, get_subscriber, "One subscriber", response="Subscriber"),
    Endpoint(
        "PATCH",
        "/subscribers/{email}",
        WRITE,
        update_subscriber,
        "Change a subscriber's name, newsletters or topics",
        request="SubscriberChange",
        response="Subscriber",
        errors=(422,),
    ),
    Endpoint("DELETE", "/subscribers/{email}", WRITE, delete_subscriber, "Unsubscribe from everything", status=204),
    Endpoint(
        "POST",
        "/subscribe",
        None,
        subscribe,
        "Another site's sign-up form (double opt-in; the same answer for every address)",
        status=202,
        request="SignUp",
        response="Accepted",
        errors=(422, 429),
    ),
    Endpoint("OPTIONS", "/subscribe", None, subscribe_preflight, "CORS preflight for the sign-up form", status=204),
    Endpoint(
        "GET",
        "/articles",
        READ,
        list_articles,
        "Articles, newest first",
        response="ArticlePage",
        query=("q", "limit", "offset"),
    ),
    Endpoint(
        "POST",
        "/articles",
        WRITE,
        post_article,
        "Publish an article (the same slug updates it): in the feeds at once and in the next issue",
        status=201,
        request="NewArticle",
        response="Article",
        errors=(422,),
    ),
    Endpoint("GET", "/articles/{slug}", READ, get_article, "One article", response="Article"),
    Endpoint(
        "GET", "/newsletters/{newsletter}/issues", READ, list_issues, "A newsletter's issues", response="IssueList"
    ),
    Endpoint(
        "GET",
        "/newsletters/{newsletter}/issues/{number}",
        READ,
        get_issue,
        "An issue and its delivery counts",
        response="IssueStatus",
    ),
    Endpoint(
        "POST",
        "/newsletters/{newsletter}/issues/{number}/approve",
        WRITE,
        approve_issue,
        "Approve a draft: it goes at its slot",
        response="IssueStatus",
        errors=(409, 422),
    ),
    Endpoint(
        "POST",
        "/newsletters/{newsletter}/issues/{number}/send",
        WRITE,
        send_issue,
        "Send an approved issue now; follow it with GET on the issue",
        status=202,
        response="IssueStatus",
        errors=(409, 422),
    ),
)


def _route(endpoint: Endpoint) -> Route:
    async def handle(request: Request) -> Response:
        try:
            actor = None if endpoint.permission is None else await authenticate(request, endpoint.permission)
            response: Response = await endpoint.handler(request, actor)
            return response
        except Problem as problem:
            return problem.response(request.url.path)
        except PublisherError as error:
            return problem_for(error).response(request.url.path)

    handle.__name__ = endpoint.operation_id
    return Route(endpoint.path, handle, methods=[endpoint.method])


def routes() -> list[Route]:
    """The API's routes, mounted at `PREFIX` by `web.routes`."""
    return [_route(endpoint) for endpoint in ENDPOINTS]
