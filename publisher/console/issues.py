"""Issues in the console: the preview of the next one (phone and desktop widths, text part, what
is held back and why), build / approve / cancel / dry-run, and sends that the issue page follows
while they run (pause, resume, send now)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from publisher.console.auth import Console, audited
from publisher.console.pages import PAGE_HEADERS, PREVIEW_CSP, redirect, render
from publisher.console.sending import Sends
from publisher.errors import DigestError
from publisher.model import Issue, IssueState
from publisher.publication import Publication
from publisher.text import whole_number

REFRESH_SECONDS = 2


def sends(request: Request) -> Sends:
    """The app's background sends (one registry per app, made on first use)."""
    state = request.app.state
    if not hasattr(state, "console_sends"):
        state.console_sends = Sends()
    found: Sends = state.console_sends
    return found


def _publication(request: Request) -> Publication:
    found: Publication = request.app.state.publication
    return found


def _name(request: Request) -> str:
    name = str(request.path_params["newsletter"])
    _publication(request).newsletter(name)  # an unknown newsletter is a clear error (400)
    return name


def _number(console: Console) -> int:
    found = whole_number(console.text("number", 12), low=1)
    if found is None:
        raise DigestError("say which issue: the form lacks its number")
    return found


async def index(request: Request, console: Console) -> Response:
    publication = _publication(request)
    board = await run_in_threadpool(publication.dashboard)
    return render(request, "issues", board=board)


async def newsletter_page(request: Request, console: Console) -> Response:
    name = _name(request)
    publication = _publication(request)
    shown = await run_in_threadpool(publication.preview_issue, name)
    every = await run_in_threadpool(publication.issues, name)
    return render(
        request,
        "newsletter",
        newsletter=publication.newsletter(name),
        preview=shown,
        issues=list(reversed(every)),
        running=sends(request).running(name),
    )


async def preview_frame(request: Request, console: Console) -> Response:
    """The preview's HTML as a reader's mail client gets it, framed by the newsletter page."""
    shown = await run_in_threadpool(_publication(request).preview_issue, _name(request))
    headers = {**PAGE_HEADERS, "x-frame-options": "SAMEORIGIN", "content-security-policy": PREVIEW_CSP}
    return HTMLResponse(shown.html or "<p>Nothing would be sent now.</p>", headers=headers)


async def issue_page(request: Request, console: Console) -> Response:
    name = _name(request)
    number = whole_number(str(request.path_params["number"]), low=1)
    if number is None:
        raise DigestError("no such issue: an issue number is a whole number")
    report = await run_in_threadpool(_publication(request).issue_report, name, number)
    running = sends(request).running(name)
    live = running or report.issue.state == IssueState.SENDING
    return render(
        request,
        "issue",
        report=report,
        newsletter=_publication(request).newsletter(name),
        running=running,
        refresh=REFRESH_SECONDS if live else 0,
        send_error=sends(request).last_error(name),
    )


# --- actions (editors and owners) -------------------------------------------------------------


def _issue_url(name: str, number: int) -> str:
    return f"/admin/issues/{name}/{number}"


async def build(request: Request, console: Console) -> Response:
    name = _name(request)
    built = await audited(request, console, "issue.build", {"newsletter": name}, _publication(request).build, name)
    if built.issue is None:
        return redirect(request, f"/admin/issues/{name}/", f"Nothing built: {built.reason}", error=True)
    verb = "was already built" if built.existed else "built"
    issue = built.issue
    after = (
        f" It is approved (require_approval is off): {await run_in_threadpool(_publication(request).when_sent, issue)}."
        if issue.state == IssueState.APPROVED
        else " It is a draft: approve it to send it."
        if issue.state == IssueState.DRAFT
        else ""
    )
    return redirect(request, _issue_url(name, issue.number), f"Issue {issue.number} {verb}.{after}")


async def approve(request: Request, console: Console) -> Response:
    name, number = _name(request), _number(console)
    detail = {"newsletter": name, "number": number}
    issue = await audited(request, console, "issue.approve", detail, _publication(request).approve, name, number)
    when = _publication(request).when_sent(issue)
    return redirect(request, _issue_url(name, number), f"Issue {number} approved: {when}.")


def _confirm(
    request: Request, console: Console, *, heading: str, message: str, label: str, danger: bool = False
) -> Response:
    """The step before a send or a cancel: the same form again, with `confirm=yes` (no JavaScript)."""
    name, number = _name(request), _number(console)
    return render(
        request,
        "confirm",
        heading=heading,
        message=message,
        label=label,
        danger=danger,
        url=request.url.path,
        number=number,
        back=_issue_url(name, number),
    )


def _confirmed(console: Console) -> bool:
    return console.text("confirm", 10) == "yes"


async def cancel(request: Request, console: Console) -> Response:
    name, number = _name(request), _number(console)
    publication = _publication(request)
    issue = await run_in_threadpool(publication.issue, name, number)
    if not _confirmed(console):
        running = issue.state in (IssueState.SENDING, IssueState.PAUSED)
        return _confirm(
            request,
            console,
            heading=f"Cancel issue {number}?",
            message=(
                f"Issue {number} ({issue.subject}) is {issue.state}: the recipients who have not got it yet never will."
                if running
                else f"Issue {number} ({issue.subject}) is {issue.state}: it will not be sent; its articles wait "
                "for the next issue."
            ),
            label=f"Yes, cancel issue {number}",
            danger=True,
        )
    detail = {"newsletter": name, "number": number}
    if issue.state in (IssueState.SENDING, IssueState.PAUSED):
        _, left = await audited(request, console, "issue.cancel", detail, publication.cancel_sending, name)
        return redirect(request, _issue_url(name, number), f"Issue {number} cancelled: {left} recipients won't get it.")
    await audited(request, console, "issue.cancel", detail, publication.cancel, name, number)
    return redirect(
        request, _issue_url(name, number), f"Issue {number} cancelled; its articles wait for the next issue."
    )


async def pause(request: Request, console: Console) -> Response:
    name, number = _name(request), _number(console)
    await audited(
        request, console, "issue.pause", {"newsletter": name, "number": number}, _publication(request).pause, name
    )
    return redirect(request, _issue_url(name, number), f"Issue {number} paused: messages on the wire finish.")


async def resume(request: Request, console: Console) -> Response:
    name, number = _name(request), _number(console)
    publication = _publication(request)
    await run_in_threadpool(publication.issue, name, None, (IssueState.PAUSED,))  # a clear error if none is
    if not sends(request).start(name, lambda: publication.resume(name)):
        return redirect(request, _issue_url(name, number), "A send of this newsletter is running already.", error=True)
    await run_in_threadpool(publication.audit, console.actor, "issue.resume", {"newsletter": name, "number": number})
    return redirect(request, _issue_url(name, number), f"Issue {number} is sending again.")


async def send_now(request: Request, console: Console) -> Response:
    """Send the approved issue `number` now (or resume the unfinished one), in the background."""
    name, number = _name(request), _number(console)
    publication = _publication(request)
    issue, _, reason = await run_in_threadpool(publication.next_to_send, name, immediately=True, dry_run=True)
    if issue is None:
        return redirect(request, _issue_url(name, number), f"Nothing to send: {reason}", error=True)
    if not isinstance(issue, Issue):
        return redirect(request, _issue_url(name, number), "No issue is approved: approve one first.", error=True)
    if issue.number != number or issue.state == IssueState.DRAFT:
        return redirect(
            request,
            _issue_url(name, number),
            f"Issue {issue.number} goes first; approve and send it before issue {number}."
            if issue.number != number
            else f"Issue {number} is a draft: approve it first.",
            error=True,
        )
    if not _confirmed(console):
        _, readers = await run_in_threadpool(
            lambda: publication.find_subscribers(status="confirmed", newsletter=name, limit=1)
        )
        return _confirm(
            request,
            console,
            heading=f"Send issue {number} now?",
            message=f"Issue {number} ({issue.subject}) goes to {readers} subscriber{'' if readers == 1 else 's'} "
            "at once, without waiting for its slot. A sent mail cannot be taken back.",
            label=f"Yes, send issue {number} now",
        )
    if not sends(request).start(name, lambda: publication.send(name, immediately=True)):
        return redirect(request, _issue_url(name, number), "A send of this newsletter is running already.", error=True)
    await run_in_threadpool(publication.audit, console.actor, "issue.send", {"newsletter": name, "number": number})
    return redirect(request, _issue_url(name, number), f"Sending issue {number}: the counts below follow it.")


async def dry_run(request: Request, console: Console) -> Response:
    name = _name(request)
    publication = _publication(request)
    outcome = await audited(
        request, console, "issue.dry_run", {"newsletter": name}, lambda: publication.send(name, dry_run=True)
    )
    if outcome.issue is None:
        return redirect(request, f"/admin/issues/{name}/", f"Nothing would be sent: {outcome.reason}", error=True)
    box = f"dry-run/{name}-{outcome.issue.number}/"
    written = outcome.dry_run_recipients or 0
    return redirect(
        request,
        f"/admin/issues/{name}/",
        f"Dry run of issue {outcome.issue.number}: {written} message{'' if written == 1 else 's'} (one per "
        f"recipient) written to {box} beside [delivery] maildir, a Maildir at {outcome.maildir}; nothing was "
        "sent, approved or recorded, and the articles stay for the real issue.",
    )
