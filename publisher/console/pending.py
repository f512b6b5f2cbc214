"""Asking pending subscribers to confirm, from the console: what a CSV import without "confirmed"
leaves behind. The same ledger as `publisher subscribers confirm-pending --send` (one mail per
address, ever; a stopped run is finished by the next), run in a background thread."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from publisher.console.auth import Console
from publisher.console.issues import sends
from publisher.console.pages import redirect, render
from publisher.publication import Publication

URL = "/admin/subscribers/confirm-pending"
WORK = "confirm pending"  # among the console's sends; a space: never a newsletter's name
REFRESH_SECONDS = 2


def _publication(request: Request) -> Publication:
    found: Publication = request.app.state.publication
    return found


def _mails(count: int) -> str:
    return f"{count} confirmation mail{'' if count == 1 else 's'}"


async def waiting(publication: Publication) -> int:
    """How many pending addresses have never been asked (what the action would ask)."""
    return len(await run_in_threadpool(publication.pending_to_ask))


async def page(request: Request, console: Console) -> Response:
    running = sends(request).running(WORK)
    return render(
        request,
        "pending",
        waiting=await waiting(_publication(request)),
        running=running,
        refresh=REFRESH_SECONDS if running else 0,
        send_error=sends(request).last_error(WORK),
    )


async def send(request: Request, console: Console) -> Response:
    """Ask first (a page of its own), then queue and send the mails in the background, audited once."""
    publication = _publication(request)
    if sends(request).running(WORK):
        return redirect(request, URL, "Confirmation mails are being sent already.", error=True)
    count = await waiting(publication)
    if count == 0:
        return redirect(request, URL, "No pending address is waiting to be asked.", error=True)
    if console.text("confirm", 10) != "yes":
        return render(
            request,
            "confirm",
            heading=f"Send {_mails(count)}?",
            message=f"{count} pending address{'' if count == 1 else 'es'} that ha{'s' if count == 1 else 've'} "
            "never been asked get one mail each, with a link to confirm. Nobody is asked twice; a mail "
            "cannot be taken back.",
            label=f"Yes, send {_mails(count)}",
            url=URL,
            danger=False,
            number=None,
            back=URL,
        )
    if not sends(request).start(WORK, publication.confirm_pending):
        return redirect(request, URL, "Confirmation mails are being sent already.", error=True)
    await run_in_threadpool(publication.audit, console.actor, "subscribers.confirm_pending", {"pending": count})
    return redirect(request, URL, f"Sending {_mails(count)}.")
