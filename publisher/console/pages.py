"""Rendering console pages: the template, the headers every page carries, one-time notices."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from publisher import tokens
from publisher.errors import PublisherError, TokenError
from publisher.text import MAX_WHOLE, whole_number

# Console pages load only our CSS, and frame only our own preview of an issue.
CONSOLE_CSP = (
    "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "style-src 'self'; img-src 'self' data:; frame-src 'self'"
)
# An email preview, framed by the issue page: its own inline styles and remote images, nothing active.
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox allow-popups"
)
PAGE_HEADERS = {
    "cache-control": "no-store",
    "x-robots-tag": "noindex, nofollow",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}
FLASH_COOKIE = "publisher-console-notice"
FLASH_PURPOSE = "publisher.console-notice"


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render templates/admin/NAME.html with the site, the signed-in operator and any notice."""
    state = request.app.state
    notice = read_notice(request)
    html = state.pages.get_template(f"admin/{name}.html").render(
        site=state.settings.site,
        console=request.scope.get("console"),
        notice=notice,
        path=request.url.path,
        **context,
    )
    response = HTMLResponse(
        html, status_code, headers={**PAGE_HEADERS, "content-security-policy": CONSOLE_CSP, "vary": "cookie"}
    )
    if notice is not None:
        response.delete_cookie(FLASH_COOKIE, path="/admin/", secure=secure(request), httponly=True, samesite="strict")
    return response


def read_notice(request: Request) -> tuple[str, str] | None:
    """The one-time notice (kind, text) a previous action left for this page."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = tokens.verify(request.app.state.settings.secret_keys, FLASH_PURPOSE, raw)
    except TokenError:
        return None
    if not isinstance(value, list) or len(value) != 2:
        return None
    return str(value[0]), str(value[1])


def redirect(request: Request, to: str, notice: str = "", *, error: bool = False) -> Response:
    """303 to a console page (a path, never a host from the request), leaving a notice for it."""
    response = RedirectResponse(safe_back(to), status_code=303, headers=dict(PAGE_HEADERS))
    if notice:
        value = tokens.sign(request.app.state.settings.secret_keys, FLASH_PURPOSE, ["error" if error else "ok", notice])
        response.set_cookie(
            FLASH_COOKIE,
            value,
            max_age=60,
            path="/admin/",
            secure=secure(request),
            httponly=True,
            samesite="strict",
        )
    return response


def safe_back(target: str, default: str = "/admin/") -> str:
    """`target` when it is a console path; anything else (another host, //evil, a scheme) is the default."""
    if target.startswith("/admin/") and not target.startswith("//") and "\\" not in target and "\n" not in target:
        return target
    return default


def secure(request: Request) -> bool:
    """Cookies are Secure when the site is served over https (as `site.url` says) or this request was."""
    return request.app.state.settings.site.url.startswith("https://") or request.url.scheme == "https"


def error(request: Request, status_code: int, message: str) -> HTMLResponse:
    titles = {400: "That did not work", 403: "Not allowed", 404: "Not found", 429: "Too many attempts"}
    return render(
        request, "error", status_code, heading=titles.get(status_code, "Something went wrong"), message=message
    )


def query_number(request: Request, key: str, *, low: int = 0) -> int | None:
    """A whole-number query parameter; None when absent. Anything else ("²", a 30-digit number)
    is a PublisherError, which the console shows as a 400 page."""
    raw = request.query_params.get(key, "")
    if not raw:
        return None
    found = whole_number(raw, low=low)
    if found is None:
        raise PublisherError(f"{key}: use a whole number from {low} to {MAX_WHOLE}")
    return found


def page_number(request: Request) -> int:
    return query_number(request, "page", low=1) or 1
