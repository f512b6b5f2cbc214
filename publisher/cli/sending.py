"""`publisher digest send|status|pause|resume|cancel-sending`: sending issues, on the digest group."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from publisher import dispatch
from publisher.archive import write_archive
from publisher.cli.app import App, iso, print_json
from publisher.digest import Skipped
from publisher.errors import DigestError
from publisher.issues import build_issue, plan_issue
from publisher.message import compile_message
from publisher.model import Issue
from publisher.store.deliveries import Leased
from publisher.transports import MaildirTransport

_UNFINISHED = ("sending", "paused")


def _issue(app: App, name: str, number: int | None, states: tuple[str, ...] | None = None) -> Issue:
    app.settings.newsletter(name)
    issue = app.store.issues.get(name, number) if number else app.store.issues.latest(name, states=states)
    if issue is None:
        wanted = f"issue {number}" if number else f"issue that is {' or '.join(states or ('built',))}"
        raise DigestError(f"{name} has no {wanted}")
    return issue


def _to_send(app: App, name: str, force: bool, *, store_new: bool = True) -> tuple[Issue | None, str, str]:
    """(issue, status, reason): the unfinished issue to resume, else the approved one waiting,
    else a new one for this minute (only planned, not stored, unless `store_new`); no issue
    (status "skipped") when there is nothing to send."""
    if unfinished := app.store.issues.latest(name, states=_UNFINISHED):
        if unfinished.state == "paused":
            raise DigestError(f"{name} issue {unfinished.number} is paused: `publisher digest resume {name}`")
        return unfinished, "resumed", ""
    if waiting := app.store.issues.list(name, states=("approved",)):
        return waiting[0], "sent", ""  # the oldest first, as the timetable sends them
    now = app.now()
    make = build_issue if store_new else plan_issue
    built = make(app.store, app.settings, name, now.replace(second=0, microsecond=0), now, force=force)
    if isinstance(built, Skipped):
        return None, "skipped", built.reason
    if built.state == "draft":
        raise DigestError(f"{name} issue {built.number} is a draft: `publisher digest approve {name}` first")
    if built.state in ("sent", "cancelled"):  # this minute's slot was already used
        return None, "skipped", f"issue {built.number} for this slot is already {built.state}"
    return built, "sent", ""


@contextmanager
def _progress_bar(total: int, quiet: bool) -> Iterator[Callable[[dispatch.Progress], None] | None]:
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("send", total=total, detail="")
        done = {"delivered": 0, "failed": 0, "deferred": 0}

        def advance(step: dispatch.Progress) -> None:
            for key in done:
                done[key] += getattr(step, key)
            bar.update(
                task,
                advance=step.delivered + step.failed + step.deferred,
                detail=f"{done['delivered']} delivered, {done['failed']} failed, {done['deferred']} deferred",
            )

        yield advance


def _audience_size(app: App, issue: Issue) -> int:
    counts = app.store.deliveries.counts(issue.id)
    return sum(counts[state] for state in ("pending", "sending", "deferred")) or sum(counts.values())


def _deliver(app: App, issue: Issue, status: str, *, as_json: bool) -> None:
    dispatch.start_issue(app.store, issue, app.now())
    write_archive(app.store, app.settings, issue.newsletter)  # the "view in browser" page
    with _progress_bar(_audience_size(app, issue), as_json) as progress:
        result = dispatch.deliver_issue(app.store, app.settings, issue, app.now(), progress=progress)
    summary = dispatch.summary(result, issue, status)
    if as_json:
        print_json(summary)
        return
    click.echo(
        f"{issue.newsletter} issue {issue.number} ({status}): {result.recipients:,} recipients — "
        f"{summary['delivered']:,} delivered, {summary['failed']:,} failed, {summary['deferred']:,} deferred"
        + (f", {summary['cancelled']:,} cancelled" if summary["cancelled"] else "")
    )
    if result.next_attempt_at and not result.finished:
        click.echo(
            f"retries continue from {result.next_attempt_at:%Y-%m-%d %H:%M %Z} "
            f"(`publisher run` or `publisher digest send {issue.newsletter}`)"
        )


def _dry_run(app: App, issue: Issue, status: str, *, as_json: bool) -> None:
    """Write every current recipient's message to the maildir; the ledger and the issue stay untouched."""
    settings, newsletter = app.settings, app.settings.newsletter(issue.newsletter)
    rendered = dispatch.rendered_issue(app.store, settings, issue)
    compiled = compile_message(rendered, settings=settings, newsletter=newsletter, issue_number=issue.number)
    compose = dispatch.composer(compiled, settings, newsletter, issue)
    audience = app.store.subscribers.all(status="confirmed", newsletter=issue.newsletter)
    transport = MaildirTransport(settings.delivery.maildir)
    now = app.now()
    for person in audience:
        transport.send(compose(Leased(person.id, person.email, person.name, 1, now, ""), now))
    transport.close()
    summary = {
        "status": status,
        "issue": issue.number,
        "newsletter": issue.newsletter,
        "articles": len(issue.article_ids),
        "recipients": len(audience),
        "delivered": len(audience),
        "failed": 0,
        "deferred": 0,
        "dry_run": True,
        "maildir": str(settings.delivery.maildir),
    }
    if as_json:
        print_json(summary)
    else:
        click.echo(
            f"dry run: {len(audience):,} messages for {issue.newsletter} issue {issue.number} written to "
            f"{settings.delivery.maildir} (nothing sent, nothing recorded)"
        )


@click.command("send")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Write every message to [delivery] maildir; record nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (status, issue, recipients, …).")
@click.option("--force", is_flag=True, help="Build an issue even with fewer than min_articles new articles.")
@click.pass_obj
def send_command(app: App, name: str, dry_run: bool, as_json: bool, force: bool) -> None:
    """Send NAME's issue now: resume an unfinished one, else send the approved one, else build one.

    Delivered recipients are never sent again; deferred ones are retried with backoff. Nothing is
    sent when there are fewer than min_articles new articles (status "skipped").
    """
    app.warn_about_settings()
    issue, status, reason = _to_send(app, name, force, store_new=not dry_run)
    if issue is None:
        if as_json:
            print_json(
                {
                    "status": status,
                    "issue": None,
                    "newsletter": name,
                    "articles": 0,
                    "recipients": 0,
                    "delivered": 0,
                    "failed": 0,
                    "deferred": 0,
                    "reason": reason,
                }
            )
        else:
            click.echo(f"{name}: nothing sent ({reason})")
        return
    if dry_run:
        _dry_run(app, issue, status, as_json=as_json)
    else:
        _deliver(app, issue, status, as_json=as_json)


@click.command("status")
@click.argument("name")
@click.argument("number", type=int, required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the per-state counts.")
@click.option("--failures", is_flag=True, help="List each failed or deferred address with the server's last reply.")
@click.pass_obj
def status_command(app: App, name: str, number: int | None, as_json: bool, failures: bool) -> None:
    """Delivery counts per state for an issue (default: the newest that started sending)."""
    issue = _issue(app, name, number, ("sending", "paused", "sent", "cancelled"))
    if failures:
        _failures(app, issue, as_json=as_json)
        return
    counts = app.store.deliveries.counts(issue.id)
    next_at = app.store.deliveries.next_attempt(issue.id)
    if as_json:
        print_json(
            {
                "newsletter": name,
                "issue": issue.number,
                "state": issue.state,
                "counts": counts,
                "recipients": sum(counts.values()),
                "next_attempt_at": iso(next_at),
            }
        )
        return
    click.echo(f"{name} issue {issue.number} [{issue.state}]: {sum(counts.values()):,} recipients")
    for state, count in counts.items():
        click.echo(f"  {state:<10} {count:>8,}")
    if next_at:
        click.echo(f"next attempt: {next_at:%Y-%m-%d %H:%M %Z}")


def _failures(app: App, issue: Issue, *, as_json: bool) -> None:
    rows = app.store.deliveries.failures(issue.id)
    found = [
        {
            "email": row["email"],
            "state": row["state"],
            "attempts": row["attempts"],
            "code": row["last_code"],
            "status": row["last_status"],
            "reply": row["last_error"],
            "at": iso(row["updated_at"]),
            "next_attempt_at": iso(row["next_attempt_at"]) if row["state"] == "deferred" else None,
        }
        for row in rows
    ]
    if as_json:
        print_json({"newsletter": issue.newsletter, "issue": issue.number, "state": issue.state, "failures": found})
        return
    failed = sum(row["state"] == "failed" for row in found)
    click.echo(
        f"{issue.newsletter} issue {issue.number} [{issue.state}]: {failed:,} failed, {len(found) - failed:,} deferred"
    )
    for row in found:
        reply = " ".join(str(part) for part in (row["code"], row["status"], row["reply"]) if part) or "no reply"
        when = f"; next attempt {row['next_attempt_at']}" if row["next_attempt_at"] else ""
        click.echo(f"  {row['state']:<9} {row['email']}  {reply}  (attempt {row['attempts']}{when})")


@click.command("pause")
@click.argument("name")
@click.pass_obj
def pause_command(app: App, name: str) -> None:
    """Stop sending NAME's current issue (messages on the wire finish and are recorded)."""
    issue = dispatch.pause(app.store, _issue(app, name, None, ("sending",)), app.now())
    click.echo(f"{name} issue {issue.number} paused; `publisher digest resume {name}` continues it")


@click.command("resume")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the send summary as JSON.")
@click.pass_obj
def resume_command(app: App, name: str, as_json: bool) -> None:
    """Continue sending NAME's paused issue where it stopped."""
    issue = dispatch.resume(app.store, _issue(app, name, None, ("paused",)), app.now())
    _deliver(app, issue, "resumed", as_json=as_json)


@click.command("cancel-sending")
@click.argument("name")
@click.pass_obj
def cancel_sending_command(app: App, name: str) -> None:
    """Cancel NAME's issue that is sending or paused: nobody not yet sent will get it."""
    issue, rows = dispatch.cancel(app.store, _issue(app, name, None, _UNFINISHED), app.now())
    click.echo(f"{name} issue {issue.number} cancelled; {rows:,} recipients will not get it")


def register(group: click.Group) -> None:
    """Add the sending commands to `publisher digest` (the group `publisher.cli.digest` registers)."""
    from publisher.cli.digest import digest_group

    for command in (send_command, status_command, pause_command, resume_command, cancel_sending_command):
        digest_group.add_command(command)
