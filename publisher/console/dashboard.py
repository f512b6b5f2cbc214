"""The dashboard and the audit log."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from publisher.console.auth import Console
from publisher.console.pages import query_number, render

AUDIT_PAGE = 100


async def dashboard(request: Request, console: Console) -> Response:
    board = await run_in_threadpool(request.app.state.publication.dashboard)
    return render(request, "dashboard", board=board)


async def audit_log(request: Request, console: Console) -> Response:
    who = request.query_params.get("actor", "")[:400]
    entries = await run_in_threadpool(
        request.app.state.publication.audit_log,
        console.actor,
        limit=AUDIT_PAGE,
        before=query_number(request, "before"),
        who=who,
    )
    older = entries[-1].id if len(entries) == AUDIT_PAGE else None
    return render(request, "audit", entries=entries, older=older, who=who)
