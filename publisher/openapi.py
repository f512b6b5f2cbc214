"""The OpenAPI 3.1 document of the JSON API, made from `api.ENDPOINTS` (so it lists every route)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from publisher import __version__
from publisher.config import Settings

if TYPE_CHECKING:
    from publisher.api import Endpoint

_STR = {"type": "string"}
_STRINGS = {"type": "array", "items": _STR}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_INT = {"type": "integer"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Any": {"type": "object"},
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "properties": {"type": _STR, "title": _STR, "status": _INT, "detail": _STR, "instance": _STR},
        "required": ["type", "title", "status"],
    },
    "Subscriber": {
        "type": "object",
        "properties": {
            "id": _INT,
            "email": {"type": "string", "format": "email"},
            "name": _STR,
            "status": {"enum": ["pending", "confirmed", "unsubscribed", "bounced"]},
            "newsletters": _STRINGS,
            "topics": _STRINGS,
            "source": _STR,
            "consent_at": _NULLABLE_TIME,
            "consent_text": _STR,
            "created_at": _NULLABLE_TIME,
        },
        "required": ["id", "email", "status", "newsletters"],
    },
    "SubscriberPage": {
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": _ref("Subscriber")},
            "next_cursor": {"type": ["string", "null"], "description": "pass as ?cursor= for the next page"},
        },
        "required": ["data", "next_cursor"],
    },
    "Consent": {
        "type": "object",
        "properties": {"text": _STR, "at": _TIME},
        "required": ["text", "at"],
        "additionalProperties": False,
    },
    "NewSubscriber": {
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "name": _STR,
            "newsletters": _STRINGS,
            "topics": _STRINGS,
            "confirmed": {"type": "boolean", "default": False, "description": "true needs `consent`"},
            "consent": _ref("Consent"),
        },
        "required": ["email"],
        "additionalProperties": False,
    },
    "SubscriberChange": {
        "type": "object",
        "properties": {"name": _STR, "newsletters": _STRINGS, "topics": _STRINGS},
        "additionalProperties": False,
    },
    "SignUp": {
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "name": _STR,
            "newsletters": _STRINGS,
            "topics": _STRINGS,
            "website": {"type": "string", "description": "the form's honeypot: leave it out or empty"},
        },
        "required": ["email"],
        "additionalProperties": False,
    },
    "Accepted": {"type": "object", "properties": {"status": {"const": "accepted"}, "detail": _STR}},
    "Article": {
        "type": "object",
        "description": "as `publisher articles --json` shows it",
        "properties": {
            "guid": _STR,
            "slug": _STR,
            "title": _STR,
            "url": _STR,
            "published": _TIME,
            "updated": _TIME,
            "tags": _STRINGS,
            "authors": _STRINGS,
            "summary_html": _STR,
            "content_html": _STR,
            "truncated": {"type": "boolean"},
            "source": _STR,
        },
        "required": ["guid", "slug", "title", "url", "published", "updated", "tags", "content_html"],
    },
    "ArticlePage": {
        "type": "object",
        "properties": {"data": {"type": "array", "items": _ref("Article")}, "total": _INT},
    },
    "NewArticle": {
        "type": "object",
        "description": "exactly one of markdown and html; `<!--more-->` in markdown marks the teaser",
        "properties": {
            "title": _STR,
            "markdown": _STR,
            "html": _STR,
            "published": _TIME,
            "tags": _STRINGS,
            "slug": _STR,
        },
        "required": ["title"],
        "additionalProperties": False,
    },
    "Issue": {
        "type": "object",
        "properties": {
            "newsletter": _STR,
            "number": _INT,
            "kind": {"enum": ["digest", "announcement"]},
            "state": {"enum": ["draft", "approved", "sending", "paused", "sent", "cancelled"]},
            "slot": _TIME,
            "subject": _STR,
            "articles": _INT,
            "sent_at": _NULLABLE_TIME,
        },
    },
    "IssueList": {"type": "object", "properties": {"data": {"type": "array", "items": _ref("Issue")}}},
    "IssueStatus": {
        "allOf": [
            _ref("Issue"),
            {
                "type": "object",
                "properties": {
                    "recipients": _INT,
                    "counts": {"type": "object", "additionalProperties": _INT},
                    "next_attempt_at": _NULLABLE_TIME,
                },
            },
        ]
    },
}

_QUERY = {
    "cursor": ("the `next_cursor` of the previous page", _STR),
    "limit": ("at most this many (1-100, default 50)", _INT),
    "offset": ("skip this many", _INT),
    "status": ("only this status", _STR),
    "newsletter": ("only subscribers of this newsletter", _STR),
    "q": ("only articles whose title, slug or tags contain this", _STR),
}
_ERRORS = {
    400: "The request is malformed",
    401: "No token, or a token that is unknown or revoked",
    403: "The token's scope does not allow this",
    404: "Not found",
    409: "Conflict with the current state",
    415: "Not JSON",
    422: "The request cannot be carried out (`unknown-field`: the body has a field the schema does not list)",
    429: "Too many requests",
}


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if endpoint.response:
        content = {"application/json": {"schema": _ref(endpoint.response)}}
        responses[str(endpoint.status)] = {"description": "OK", "content": content}
    else:
        responses[str(endpoint.status)] = {"description": "OK"}
    codes = set(endpoint.errors) | ({401, 403} if endpoint.permission else set())
    codes |= {404} if "{" in endpoint.path else set()
    codes |= {400, 415} if endpoint.request else set()
    for code in sorted(codes):
        problem = {"application/problem+json": {"schema": _ref("Problem")}}
        responses[str(code)] = {"description": _ERRORS[code], "content": problem}
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "responses": responses,
        "security": [{"bearer": []}] if endpoint.permission else [],
    }
    if endpoint.permission:
        operation["description"] = f"Needs a token with the `{endpoint.permission}` scope (or more)."
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": _INT if name == "number" else _STR}
        for name in re.findall(r"{(\w+)}", endpoint.path)
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "description": _QUERY[name][0], "schema": _QUERY[name][1]}
        for name in endpoint.query
    ]
    if parameters:
        operation["parameters"] = parameters
    if endpoint.request:
        body = {"application/json": {"schema": _ref(endpoint.request)}}
        operation["requestBody"] = {"required": True, "content": body}
    return operation


def document(endpoints: tuple[Endpoint, ...], settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `endpoints`, served from the site's own `/api/v1`."""
    from publisher.api import PREFIX

    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{settings.site.title} — publisher API",
            "version": __version__,
            "description": "Subscribers, articles and issues of this publication. Errors are RFC 9457 problems.",
        },
        "servers": [{"url": settings.site.url + PREFIX}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
