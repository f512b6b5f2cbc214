"""Subscribers in the console: search, add, import a CSV (mapping preview first), export, change
newsletters, unsubscribe, unsuppress, and one subscriber's history."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from publisher.console import pending
from publisher.console.auth import Console, audited
from publisher.console.pages import PAGE_HEADERS, page_number, redirect, render
from publisher.console.uploads import Uploads
from publisher.errors import SubscriberError
from publisher.model import SUBSCRIBER_STATUSES
from publisher.publication import Publication

PAGE = 50
MAX_UPLOAD = 20 * 1024 * 1024
TOO_LARGE = (
    f"The file is larger than {MAX_UPLOAD // (1024 * 1024)} MB: split it, or import it on the server "
    "with `publisher subscribers import FILE`."
)
UPLOAD_AGE = 3600  # seconds an uploaded file waits for its confirmation
UPLOADS_KEPT = 3  # an operator's newest previews kept; older ones must be uploaded again
UPLOADS_BYTES = 100 * 1024 * 1024  # all kept uploads together
MAX_ERRORS = 20


def _publication(request: Request) -> Publication:
    found: Publication = request.app.state.publication
    return found


def _url(email: str) -> str:
    return "/admin/subscribers/" + quote(email, safe="@")


async def index(request: Request, console: Console) -> Response:
    query = request.query_params
    text, status, newsletter = query.get("q", "")[:200], query.get("status", ""), query.get("newsletter", "")
    page = page_number(request)
    publication = _publication(request)
    found, total = await run_in_threadpool(
        publication.find_subscribers,
        text,
        status=status if status in SUBSCRIBER_STATUSES else None,
        newsletter=newsletter if newsletter in publication.settings.newsletters else None,
        limit=PAGE,
        offset=(max(page, 1) - 1) * PAGE,
    )
    return render(
        request,
        "subscribers",
        found=found,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE)),
        q=text,
        status=status,
        newsletter=newsletter,
        statuses=SUBSCRIBER_STATUSES,
        newsletters=publication.settings.newsletters,
    )


async def detail(request: Request, console: Console) -> Response:
    publication = _publication(request)
    shown = await run_in_threadpool(publication.subscriber_history, request.path_params["email"])
    return render(request, "subscriber", history=shown, newsletters=publication.settings.newsletters)


async def add(request: Request, console: Console) -> Response:
    publication = _publication(request)
    email = console.text("email", 320)
    confirmed, consent = bool(console.text("confirmed")), console.text("consent", 2000)
    if confirmed and not consent:  # the API's `consent-required` rule: a confirmed address needs its consent
        raise SubscriberError(
            "consent required: a confirmed subscriber needs the consent text (what they agreed to, and where); "
            "or leave Confirmed unticked to add them as pending"
        )
    detail = {"email": email, "newsletters": console.texts("newsletter"), "confirmed": confirmed}
    stored, is_new = await audited(
        request,
        console,
        "subscriber.add",
        detail,
        publication.add_subscriber,
        email,
        name=console.text("name", 200),
        newsletters=console.texts("newsletter"),
        confirmed=confirmed,
        consent_text=consent,
        source="console",
    )
    return redirect(
        request, _url(stored.email), f"{'Added' if is_new else 'Updated'} {stored.email} ({stored.status})."
    )


async def set_newsletters(request: Request, console: Console) -> Response:
    email, names = request.path_params["email"], console.texts("newsletter")
    detail = {"email": email, "newsletters": names}
    stored = await audited(
        request, console, "subscriber.newsletters", detail, _publication(request).set_newsletters, email, names
    )
    return redirect(
        request, _url(stored.email), f"{stored.email}: {', '.join(stored.newsletters) or 'no newsletters'}."
    )


async def unsubscribe(request: Request, console: Console) -> Response:
    email = request.path_params["email"]
    address = await audited(
        request, console, "subscriber.unsubscribe", {"email": email}, _publication(request).remove_subscriber, email
    )
    return redirect(request, _url(address), f"{address} is unsubscribed from every newsletter.")


async def unsuppress(request: Request, console: Console) -> Response:
    email, reason = request.path_params["email"], console.text("reason", 500)
    if not reason:
        raise SubscriberError("say why the address may receive mail again (the reason is logged)")
    lifted = await audited(
        request,
        console,
        "subscriber.unsuppress",
        {"email": email, "reason": reason},
        _publication(request).unsuppress,
        email,
        reason,
    )
    return redirect(
        request,
        _url(lifted.email),
        f"{lifted.email} is no longer suppressed: {lifted.status} ({', '.join(lifted.newsletters) or 'none'}).",
    )


async def export(request: Request, console: Console) -> Response:
    status = request.query_params.get("status", "")
    chosen = status if status in SUBSCRIBER_STATUSES else None
    body = await audited(
        request,
        console,
        "subscribers.export",
        {"status": chosen},
        _publication(request).export_subscribers,
        status=chosen,
    )
    headers = {**PAGE_HEADERS, "content-disposition": 'attachment; filename="subscribers.csv"'}
    return Response(body, media_type="text/csv; charset=utf-8", headers=headers)


# --- CSV import: upload, look at the mapping, confirm --------------------------------------------


def uploads(request: Request) -> Uploads:
    """This app's kept uploads (deleted when the app shuts down: `publisher.console.close`)."""
    state = request.app.state
    if getattr(state, "console_uploads", None) is None:
        state.console_uploads = Uploads(max_age=UPLOAD_AGE, per_operator=UPLOADS_KEPT, max_bytes=UPLOADS_BYTES)
    found: Uploads = state.console_uploads
    return found


def upload_name(filename: str) -> str:
    """The uploaded file's base name, made safe to keep as a file name and to show (`people.csv`)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in base).strip("._")[:100]
    return cleaned or "upload.csv"


def _shown(message: str, path: Path) -> str:
    """An import error as the operator knows the file: by its own name, not the server's copy."""
    return message.replace(str(path), path.name)


async def import_form(request: Request, console: Console) -> Response:
    return render(request, "import", newsletters=_publication(request).settings.newsletters, plan=None)


def _options(console: Console) -> dict:
    return {
        "confirmed": bool(console.text("confirmed")),
        "newsletters": console.texts("newsletter"),
        "maps": [m for m in console.text("maps", 2000).splitlines() if m.strip()],
    }


async def import_preview(request: Request, console: Console) -> Response:
    """Keep the uploaded file, and show how it would be read (a dry run) before anything is written."""
    upload = console.form.get("file") if console.form is not None else None
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise SubscriberError("choose a CSV file to import")
    data = await upload.read()
    upload_id, path = await run_in_threadpool(
        uploads(request).keep, console.operator.id, upload_name(upload.filename), data
    )
    options = _options(console)
    errors: list[str] = []
    try:
        plan, counts = await run_in_threadpool(
            _publication(request).import_subscribers,
            path,
            dry_run=True,
            on_error=lambda message: errors.append(_shown(message, path)) if len(errors) < MAX_ERRORS else None,
            **options,
        )
    except SubscriberError as error:
        raise SubscriberError(_shown(str(error), path)) from None
    return render(
        request,
        "import",
        newsletters=_publication(request).settings.newsletters,
        plan=plan,
        counts=counts,
        errors=errors,
        upload_id=upload_id,
        filename=upload.filename,
        options=options,
    )


async def import_confirm(request: Request, console: Console) -> Response:
    path = await run_in_threadpool(uploads(request).find, console.operator.id, console.text("upload", 64))
    options = _options(console)
    try:
        _, counts = await audited(
            request,
            console,
            "subscribers.import",
            {"file": console.text("filename", 200), **options},
            _publication(request).import_subscribers,
            path,
            **options,
        )
    except SubscriberError as error:
        raise SubscriberError(_shown(str(error), path)) from None
    finally:
        await run_in_threadpool(uploads(request).discard, path)
    held = f", {counts.suppressed} left unchanged because they are suppressed" if counts.suppressed else ""
    done = (
        f"Imported {counts.rows} rows: {counts.added} added, {counts.updated} updated, "
        f"{counts.unchanged} unchanged{held}, {counts.rejected} rejected."
    )
    if asking := await pending.waiting(_publication(request)):  # offer to ask them: the next page's button
        return redirect(request, pending.URL, f"{done} {asking} pending addresses have not been asked to confirm.")
    return redirect(request, "/admin/subscribers/", done)
