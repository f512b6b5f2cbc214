"""Who is using the console: login, the session cookie, CSRF on every form, roles on every page.

The session cookie holds a random id (its SHA-256 is what the store keeps), is HttpOnly,
SameSite=Strict, Secure (and `__Host-` named) whenever the site is served over https, and is
replaced at every login, so a session id planted before login never becomes a logged-in one.
Every form carries the session's CSRF token; the login form carries one bound to a pre-login
cookie. Pages need `read`, actions `write`, operators and the audit log `admin`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from publisher import operators, tokens
from publisher.console.pages import error, redirect, render, safe_back, secure
from publisher.errors import AccessError, PublisherError, RateLimited, TokenError
from publisher.operators import Actor, Operator, Permission
from publisher.text import whole_number

log = logging.getLogger(__name__)

LOGIN_CSRF_AGE = timedelta(hours=2)
MAX_FORM = 64 * 1024
TOO_LARGE = "This form is too large."


@dataclass
class Console:
    """The signed-in operator of one request, what they may do, and the form they posted."""

    operator: Operator
    actor: Actor
    csrf: str
    session_id: str
    form: FormData | None = None

    def can(self, permission: str) -> bool:
        return self.actor.can(Permission(permission))

    def text(self, key: str, limit: int = 1000) -> str:
        value = self.form.get(key) if self.form is not None else None
        return value[:limit].strip() if isinstance(value, str) else ""

    def texts(self, key: str) -> list[str]:
        values = self.form.getlist(key)[:100] if self.form is not None else []
        return [value[:200] for value in values if isinstance(value, str)]


T = TypeVar("T")
Handler = Callable[[Request, Console], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def session_cookie(request: Request) -> str:
    """`__Host-` cookies must be Secure with Path=/: the browser then refuses them from http or a subdomain."""
    return "__Host-publisher-console" if secure(request) else "publisher-console"


def login_cookie(request: Request) -> str:
    return "__Host-publisher-console-login" if secure(request) else "publisher-console-login"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=secure(request), httponly=True, samesite="strict"
    )


async def read_form(request: Request, limit: int = MAX_FORM, too_large: str = TOO_LARGE) -> FormData:
    """The posted form, at most `limit` bytes however it is sent (a file upload gets a larger limit)."""
    length = request.headers.get("content-length")
    if length is not None and whole_number(length, high=limit) is None:
        raise HTTPException(413, too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, too_large)
    request._body = bytes(body)  # Starlette parses the form from the body already read
    return await request.form(max_files=1, max_fields=200, max_part_size=limit)


async def current(request: Request) -> Console | None:
    """The console session of this request, if its cookie names a live one."""
    session_id = request.cookies.get(session_cookie(request), "")
    if not session_id or len(session_id) > 100:
        return None
    found = await run_in_threadpool(request.app.state.publication.session, session_id)
    if found is None:
        return None
    operator, csrf = found
    return Console(operator, operators.operator_actor(operator), csrf, session_id)


def csrf_ok(console: Console) -> bool:
    sent = console.text("csrf", 200)
    return bool(sent) and hmac.compare_digest(sent.encode(), console.csrf.encode())


def guarded(
    permission: Permission, handler: Handler, *, form_limit: int = MAX_FORM, too_large: str = TOO_LARGE
) -> Endpoint:
    """An endpoint that needs a signed-in operator with `permission`; a POST also needs the CSRF token.

    Without a session a page redirects to the login page and an action is refused (403). A
    PublisherError from an action comes back as a notice on the page the form was on.
    """

    async def endpoint(request: Request) -> Response:
        console = await current(request)
        if console is None:
            if request.method in ("GET", "HEAD"):
                return redirect(request, "/admin/login?next=" + quote(request.url.path, safe="/"))
            return error(request, 403, "Your session has ended: log in again.")
        request.scope["console"] = console
        if not console.actor.can(permission):
            await _refused(request, console, permission)
            return error(request, 403, f"Your role ({console.operator.role}) may not do this.")
        if request.method == "POST":
            try:
                console.form = await read_form(request, form_limit, too_large)
            except HTTPException as refused:  # too large: said on a console page, with its navigation
                return error(request, refused.status_code, str(refused.detail))
            if not csrf_ok(console):
                return error(request, 403, "This form has expired or did not come from the console: try again.")
        try:
            return await handler(request, console)
        except AccessError as refused:
            return error(request, 403, str(refused))
        except PublisherError as failed:
            if request.method == "POST":
                return redirect(
                    request, safe_back(console.text("back", 500), request.url.path), str(failed), error=True
                )
            return error(request, 400, str(failed))
        finally:
            if console.form is not None:
                await console.form.close()  # an uploaded file's spool

    return endpoint


async def _refused(request: Request, console: Console, permission: Permission) -> None:
    if request.method == "POST":
        detail = {"path": request.url.path, "needs": permission.value}
        await run_in_threadpool(request.app.state.publication.audit, console.actor, "refused", detail)


async def audited(
    request: Request,
    console: Console,
    action: str,
    detail: dict,
    call: Callable[..., T],
    *args: Any,
    **kw: Any,
) -> T:
    """Run one `Publication` method for the operator, then write it to the audit log."""
    result = await run_in_threadpool(call, *args, **kw)
    await run_in_threadpool(request.app.state.publication.audit, console.actor, action, detail)
    return result


# --- login and logout ------------------------------------------------------------------------


def _login_page(request: Request, nonce: str, status_code: int = 200, message: str = "", email: str = "") -> Response:
    keys = request.app.state.settings.secret_keys
    response = render(
        request,
        "login",
        status_code,
        csrf=tokens.csrf_token(keys, f"console-login:{nonce}"),
        next=safe_back(request.query_params.get("next", ""), "/admin/"),
        message=message,
        email=email,
    )
    set_cookie(response, request, login_cookie(request), nonce, int(LOGIN_CSRF_AGE.total_seconds()))
    return response


async def login_form(request: Request) -> Response:
    if await current(request) is not None:
        return redirect(request, "/admin/")
    nonce = request.cookies.get(login_cookie(request), "")
    return _login_page(request, nonce if 20 <= len(nonce) <= 100 else operators.mint_session()[0])


async def login(request: Request) -> Response:
    state = request.app.state
    form = await read_form(request)
    nonce = request.cookies.get(login_cookie(request), "")
    email = str(form.get("email") or "")[:320]
    password = str(form.get("password") or "")[: operators.MAX_PASSWORD + 1]
    try:
        if not nonce:
            raise TokenError("missing login cookie")
        tokens.check_csrf(
            state.settings.secret_keys, str(form.get("csrf") or ""), f"console-login:{nonce}", LOGIN_CSRF_AGE
        )
    except TokenError:
        return _login_page(request, operators.mint_session()[0], 403, "This form has expired: please try again.", email)
    ip = request.client.host if request.client else "unknown"
    try:
        operator = await run_in_threadpool(state.publication.login, email, password, ip=ip)
    except RateLimited as limited:
        return _login_page(request, nonce, 429, str(limited), email)
    except AccessError as refused:
        return _login_page(request, nonce, 403, str(refused), email)
    session_id, _ = await run_in_threadpool(state.publication.start_session, operator)
    old = request.cookies.get(session_cookie(request), "")
    if old and (previous := await current(request)) is not None:
        await run_in_threadpool(state.publication.end_session, old, previous.operator)
    response = redirect(request, safe_back(str(form.get("next") or ""), "/admin/"))
    set_cookie(response, request, session_cookie(request), session_id, int(operators.SESSION_LIFETIME.total_seconds()))
    response.delete_cookie(login_cookie(request), path="/", secure=secure(request), httponly=True, samesite="strict")
    return response


async def _logout(request: Request, console: Console) -> Response:
    await run_in_threadpool(request.app.state.publication.end_session, console.session_id, console.operator)
    response = redirect(request, "/admin/login", "You are logged out.")
    response.delete_cookie(session_cookie(request), path="/", secure=secure(request), httponly=True, samesite="strict")
    return response


async def _logout_everywhere(request: Request, console: Console) -> Response:
    await run_in_threadpool(request.app.state.publication.logout_everywhere, console.operator)
    response = redirect(request, "/admin/login", "You are logged out on every browser.")
    response.delete_cookie(session_cookie(request), path="/", secure=secure(request), httponly=True, samesite="strict")
    return response


logout = guarded(Permission.READ, _logout)
logout_everywhere = guarded(Permission.READ, _logout_everywhere)
