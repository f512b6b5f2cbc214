"""`publisher digest send|status|pause|resume|cancel-sending`: sending issues, on the digest group."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from publisher import dispatch
from publisher.cli.app import App, iso, plural, print_json, stopping_on_signals
from publisher.model import Issue
from publisher.publication import DeferredReason, SendOutcome


@contextmanager
def _progress_bar(quiet: bool) -> Iterator[Callable[[dispatch.Progress], None] | None]:
    """A bar on a terminal; the first step of a send announces its total."""
    from rich.console import Console  # only when sending: other commands start faster without it
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if quiet or not console.is_terminal:

        def notices(step: dispatch.Progress) -> None:
            if step.notice:  # "relay HOST:PORT refused the connection; retrying in N s", with --json too
                click.echo(step.notice, err=True)

        yield notices
        return
    columns = (
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("send", total=None, detail="")
        done = {"delivered": 0, "failed": 0, "deferred": 0}

        def advance(step: dispatch.Progress) -> None:
            if step.notice:
                bar.console.print(step.notice, markup=False, highlight=False)
            if step.total is not None:
                bar.update(task, total=step.total)
            for key in done:
                done[key] += getattr(step, key)
            bar.update(
                task,
                advance=step.delivered + step.failed + step.deferred,
                detail=f"{done['delivered']} delivered, {done['failed']} failed, {done['deferred']} deferred",
            )

        yield advance


def _show(outcome: SendOutcome, *, as_json: bool) -> None:
    if as_json:
        print_json(outcome.as_json())
        return
    issue, report = outcome.issue, outcome.report
    if issue is None:
        click.echo(f"{outcome.newsletter}: nothing sent ({outcome.reason})")
        return
    if outcome.dry_run_recipients is not None:
        built = isinstance(issue, Issue)
        what = f"{issue.state} issue {issue.number}" if built else f"issue {issue.number} (not built)"
        nothing = f"; {plural(outcome.dry_run_nothing, 'reader')} would get nothing for their topics"
        click.echo(
            f"dry run: {plural(outcome.dry_run_recipients, 'message')} for {issue.newsletter} {what} "
            f"written to {outcome.maildir} (nothing sent, nothing recorded)"
            + (nothing if outcome.dry_run_nothing else "")
        )
        return
    if report is None:
        return
    summary = outcome.as_json()
    status = "joined another run sending it" if summary["status"] == "joined" else summary["status"]
    click.echo(
        f"{issue.newsletter} issue {issue.number} ({status}): {plural(report.recipients, 'recipient')} — "
        f"{summary['delivered']:,} delivered, {summary['failed']:,} failed, {summary['deferred']:,} deferred"
        + (f", {summary['cancelled']:,} cancelled" if summary["cancelled"] else "")
        + (f", {summary['skipped']:,} skipped (nothing for their topics)" if summary.get("skipped") else "")
    )
    run = report.run
    if summary["status"] == "joined" or report.joined:
        click.echo(
            f"this run: {run.get('delivered', 0):,} delivered, {run.get('failed', 0):,} failed, "
            f"{run.get('deferred', 0):,} deferred; the other run sent the rest"
        )
    show_deferred(outcome.deferred_reason, issue.newsletter)
    left = report.get("pending") + report.get("sending")
    if left and report.issue_state == "sending" and not outcome.waves:
        why = f" ({report.relay_down})" if report.relay_down else ""
        click.echo(
            f"stopped{why}: {plural(left, 'reader')} not sent yet; `publisher digest send {issue.newsletter}` continues"
        )
    for wave in outcome.waves:
        zones = ", ".join(wave["zones"]) or "their zone"  # type: ignore[arg-type]
        click.echo(
            f"wave {wave['local']} in {zones} ({wave['due']} UTC): {plural(wave['left'], 'reader')} waiting"  # type: ignore[arg-type]
        )
    if outcome.waves:
        click.echo("the waves go at their time: `publisher run`, or `publisher publish` from cron, sends them")
    elif report.next_attempt_at and not report.finished:
        click.echo(
            f"retries continue from {report.next_attempt_at:%Y-%m-%d %H:%M %Z} "
            f"(`publisher run` or `publisher digest send {issue.newsletter}`; "
            f"`publisher digest send {issue.newsletter} --retry-now` retries now)"
        )


def show_deferred(reason: DeferredReason | None, name: str) -> None:
    """Why readers were deferred: the commonest reply, and where to see every address."""
    if reason is not None:
        click.echo(
            f"deferred: {plural(reason.count, 'reader')}: {reason.reply} "
            f"(every address: `publisher digest status {name} --failures`)"
        )


@click.command("send")
@click.argument("name")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Write every message of the issue that would go (a draft too) to dry-run/NEWSLETTER-NUMBER/ beside "
    "[delivery] maildir (never the outbox); record nothing.",
)
@click.option(
    "--now",
    "immediately",
    is_flag=True,
    help="Send an approved issue now, before its slot (none approved: build one for this instant and send it). "
    'With deliver = "local", every reader gets it now, whatever their time zone: no waves (an issue already '
    "between its waves sends the waves left now).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (status, issue, recipients, …).")
@click.option("--force", is_flag=True, help="Build an issue even with fewer than min_articles new articles.")
@click.option(
    "--retry-now",
    is_flag=True,
    help="Retry the deferred readers of the newest issue that went out now, instead of at their retry time.",
)
@click.pass_obj
def send_command(
    app: App, name: str, dry_run: bool, immediately: bool, as_json: bool, force: bool, retry_now: bool
) -> None:
    """Send NAME's issue: resume an unfinished one, else send the approved one whose slot has
    come (any approved one with --now), else build one and send it.

    A local-time newsletter (deliver = "local") sends each reader at the slot's time in their own
    zone, in waves; with --now everyone gets the issue at once instead.

    Delivered recipients are never sent again; deferred ones are retried with backoff (at once
    with --retry-now). Nothing is sent when there are fewer than min_articles new articles
    (status "skipped").
    """
    if retry_now and (dry_run or immediately or force):
        raise click.UsageError("--retry-now goes alone: it only retries deferred readers")
    app.warn_about_settings()
    pub = app.publication
    if dry_run:
        _show(pub.send(name, force=force, dry_run=True, immediately=immediately), as_json=as_json)
    else:
        with _progress_bar(as_json) as progress, stopping_on_signals() as stop:
            sent = pub.send(
                name,
                force=force,
                immediately=immediately,
                retry_now=retry_now,
                progress=progress,
                should_stop=stop.is_set,
            )
            _show(sent, as_json=as_json)


@click.command("status")
@click.argument("name")
@click.argument("number", type=int, required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the per-state counts.")
@click.option(
    "--failures",
    is_flag=True,
    help="List each failed or deferred address, and each bounce or complaint that came back later, "
    "with its last reply.",
)
@click.pass_obj
def status_command(app: App, name: str, number: int | None, as_json: bool, failures: bool) -> None:
    """Delivery counts per state for an issue (default: the newest that started sending)."""
    status = app.publication.status(name, number)
    issue, counts, next_at = status.issue, status.counts, status.next_attempt_at
    if failures:
        _failures(app, issue, as_json=as_json)
        return
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
    click.echo(f"{name} issue {issue.number} [{issue.state}]: {plural(sum(counts.values()), 'recipient')}")
    for state, count in counts.items():
        click.echo(f"  {state:<10} {count:>8,}")
    if next_at:
        click.echo(f"next attempt: {next_at:%Y-%m-%d %H:%M %Z}")


def _failures(app: App, issue: Issue, *, as_json: bool) -> None:
    rows = app.publication.failures(issue)
    found = [
        {
            "email": row["email"],
            "state": row["state"],
            "source": row["source"],
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
    counts = Counter(row["state"] for row in found)
    returned = ("bounced", "soft_bounce", "complained")
    later = "".join(f", {_returned(state, counts[state])} later" for state in returned if counts[state])
    click.echo(
        f"{issue.newsletter} issue {issue.number} [{issue.state}]: {counts['failed']:,} failed, "
        f"{counts['deferred']:,} deferred{later}"
    )
    width = max((len(_label(row["state"])) for row in found), default=0)
    for row in found:
        reply = reply_text(row["code"], row["status"], row["reply"])
        state = f"{_label(row['state']):<{width}}"
        if row["source"] == "smtp":
            when = f"; next attempt {row['next_attempt_at']}" if row["next_attempt_at"] else ""
            click.echo(f"  {state} {row['email']}  {reply}  (attempt {row['attempts']}{when})")
        else:
            click.echo(f"  {state} {row['email']}  {reply}  ({row['source']} received {row['at']})")


def _label(state: str) -> str:
    """A failure's state in words: `soft bounce`, not `soft_bounce`."""
    return state.replace("_", " ")


def _returned(state: str, count: int) -> str:
    """`1 bounced`, `2 complained`, `1 soft bounce`, `3 soft bounces`."""
    return plural(count, _label(state)) if state == "soft_bounce" else f"{count:,} {state}"


_STATUS_IN_TEXT = "(?<![0-9.]){}(?![0-9.])"


def reply_text(code: int | None, status: str | None, text: str | None) -> str:
    """`550 5.1.1 User unknown`: the enhanced status once, even when the server's text (or a
    DSN's diagnostic, `550-5.1.1 …`) already holds it."""
    text = (text or "").strip()
    if status and re.search(_STATUS_IN_TEXT.format(re.escape(status)), text):
        status = ""
    if code is not None and re.match(rf"{code}[ -]", text):
        code = None
    return " ".join(str(part) for part in (code, status, text) if part) or "no reply"


@click.command("pause")
@click.argument("name")
@click.pass_obj
def pause_command(app: App, name: str) -> None:
    """Stop sending NAME's current issue (messages on the wire finish and are recorded)."""
    issue = app.publication.pause(name)
    click.echo(f"{name} issue {issue.number} paused; `publisher digest resume {name}` continues it")


@click.command("resume")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the send summary as JSON.")
@click.pass_obj
def resume_command(app: App, name: str, as_json: bool) -> None:
    """Continue sending NAME's paused issue where it stopped."""
    with _progress_bar(as_json) as progress, stopping_on_signals() as stop:
        _show(app.publication.resume(name, progress=progress, should_stop=stop.is_set), as_json=as_json)


@click.command("cancel-sending")
@click.argument("name")
@click.pass_obj
def cancel_sending_command(app: App, name: str) -> None:
    """Cancel NAME's issue that is sending or paused: nobody not yet sent will get it."""
    issue, rows = app.publication.cancel_sending(name)
    click.echo(f"{name} issue {issue.number} cancelled; {plural(rows, 'recipient')} will not get it")


def register(group: click.Group) -> None:
    """Add the sending commands to `publisher digest` (the group `publisher.cli.digest` registers)."""
    from publisher.cli.digest import digest_group

    for command in (send_command, status_command, pause_command, resume_command, cancel_sending_command):
        digest_group.add_command(command)
