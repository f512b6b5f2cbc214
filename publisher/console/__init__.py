"""The operators' console at `/admin/`: server-rendered pages over `Publication`, no JavaScript.

`routes()` is mounted by `publisher.web` under `/admin`. Every page needs a signed-in operator
(`auth.guarded`) and every action is written to the audit log (`auth.audited`).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from publisher.console import access, articles, auth, dashboard, issues, pending, subscribers
from publisher.console.pages import error
from publisher.operators import Permission

READ, WRITE, ADMIN = Permission.READ, Permission.WRITE, Permission.ADMIN
NEWSLETTER = "/issues/{newsletter}"


def routes() -> list[BaseRoute]:
    g = auth.guarded
    return [
        Route("/", g(READ, dashboard.dashboard), methods=["GET"]),
        Route("/login", auth.login_form, methods=["GET"]),
        Route("/login", auth.login, methods=["POST"]),
        Route("/logout", auth.logout, methods=["POST"]),
        Route("/logout-everywhere", auth.logout_everywhere, methods=["POST"]),
        Route("/audit", g(ADMIN, dashboard.audit_log), methods=["GET"]),
        Route("/access", g(ADMIN, access.page), methods=["GET"]),
        Route("/access/operators/add", g(ADMIN, access.add_operator), methods=["POST"]),
        Route("/access/operators/remove", g(ADMIN, access.remove_operator), methods=["POST"]),
        Route("/access/tokens/create", g(ADMIN, access.create_token), methods=["POST"]),
        Route("/access/tokens/revoke", g(ADMIN, access.revoke_token), methods=["POST"]),
        Route("/issues/", g(READ, issues.index), methods=["GET"]),
        Route(NEWSLETTER + "/", g(READ, issues.newsletter_page), methods=["GET"]),
        Route(NEWSLETTER + "/preview.html", g(READ, issues.preview_frame), methods=["GET"]),
        Route(NEWSLETTER + "/{number:int}", g(READ, issues.issue_page), methods=["GET"]),
        Route(NEWSLETTER + "/build", g(WRITE, issues.build), methods=["POST"]),
        Route(NEWSLETTER + "/approve", g(WRITE, issues.approve), methods=["POST"]),
        Route(NEWSLETTER + "/cancel", g(WRITE, issues.cancel), methods=["POST"]),
        Route(NEWSLETTER + "/pause", g(WRITE, issues.pause), methods=["POST"]),
        Route(NEWSLETTER + "/resume", g(WRITE, issues.resume), methods=["POST"]),
        Route(NEWSLETTER + "/send", g(WRITE, issues.send_now), methods=["POST"]),
        Route(NEWSLETTER + "/dry-run", g(WRITE, issues.dry_run), methods=["POST"]),
        Route("/subscribers/", g(READ, subscribers.index), methods=["GET"]),
        Route("/subscribers/add", g(WRITE, subscribers.add), methods=["POST"]),
        Route("/subscribers/export.csv", g(WRITE, subscribers.export), methods=["GET"]),
        Route("/subscribers/import", g(WRITE, subscribers.import_form), methods=["GET"]),
        Route(
            "/subscribers/import",
            g(WRITE, subscribers.import_preview, form_limit=subscribers.MAX_UPLOAD, too_large=subscribers.TOO_LARGE),
            methods=["POST"],
        ),
        Route("/subscribers/import/confirm", g(WRITE, subscribers.import_confirm), methods=["POST"]),
        Route("/subscribers/confirm-pending", g(WRITE, pending.page), methods=["GET"]),
        Route("/subscribers/confirm-pending", g(WRITE, pending.send), methods=["POST"]),
        Route("/subscribers/{email}", g(READ, subscribers.detail), methods=["GET"]),
        Route("/subscribers/{email}/newsletters", g(WRITE, subscribers.set_newsletters), methods=["POST"]),
        Route("/subscribers/{email}/unsubscribe", g(WRITE, subscribers.unsubscribe), methods=["POST"]),
        Route("/subscribers/{email}/unsuppress", g(WRITE, subscribers.unsuppress), methods=["POST"]),
        Route("/articles/", g(READ, articles.index), methods=["GET"]),
        Route("/articles/import", g(WRITE, articles.import_sources), methods=["POST"]),
        Route("/articles/{slug}", g(READ, articles.detail), methods=["GET"]),
        Route("/{path:path}", g(READ, _not_found), methods=["GET"]),
    ]


def close(app: Starlette) -> None:
    """What the console keeps for the web app's life, deleted when it shuts down (uploaded CSV files)."""
    kept = getattr(app.state, "console_uploads", None)
    if kept is not None:
        kept.close()


async def _not_found(request: Request, console: auth.Console) -> Response:
    return error(request, 404, "There is no console page at this address.")
