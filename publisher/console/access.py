"""Owners manage who gets in: operators (add, change role or password, remove) and API tokens
(create — shown once —, revoke). `Publication` checks the permission and writes the audit log."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from publisher.console.auth import Console
from publisher.console.pages import redirect, render
from publisher.operators import Permission, Role, parse_role, parse_scope
from publisher.publication import Publication

HERE = "/admin/access"


def _publication(request: Request) -> Publication:
    found: Publication = request.app.state.publication
    return found


async def page(request: Request, console: Console, *, new_token: tuple[str, str] | None = None) -> Response:
    publication = _publication(request)
    people = await run_in_threadpool(publication.operators)
    tokens = await run_in_threadpool(publication.tokens)
    return render(
        request,
        "access",
        people=people,
        tokens=tokens,
        roles=[role.value for role in Role],
        scopes=[scope.value for scope in Permission],
        new_token=new_token,
        now=publication.now(),
    )


async def add_operator(request: Request, console: Console) -> Response:
    email, role = console.text("email", 320), parse_role(console.text("role", 16))
    password = console.text("password", 1100)
    operator, is_new = await run_in_threadpool(
        _publication(request).add_operator, email, role, password, actor=console.actor
    )
    return redirect(request, HERE, f"{'Added' if is_new else 'Updated'} {operator.email} ({operator.role}).")


async def remove_operator(request: Request, console: Console) -> Response:
    operator = await run_in_threadpool(
        _publication(request).remove_operator, console.text("email", 320), actor=console.actor
    )
    return redirect(request, HERE, f"Removed {operator.email}; their sessions have ended.")


async def create_token(request: Request, console: Console) -> Response:
    """The new token is shown once, on this response (never in a redirect, a cookie or a log)."""
    name, scope = console.text("name", 64), parse_scope(console.text("scope", 16))
    token, secret = await run_in_threadpool(_publication(request).create_token, name, scope, actor=console.actor)
    return await page(request, console, new_token=(token.name, secret))


async def revoke_token(request: Request, console: Console) -> Response:
    token = await run_in_threadpool(_publication(request).revoke_token, console.text("name", 64), actor=console.actor)
    return redirect(request, HERE, f"Revoked token {token.name}.")
