"""`publisher announce FILE.md --newsletter NAME`: a one-off message to a newsletter's readers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from publisher.cli.app import MOMENT, App, plural, print_json
from publisher.cli.sending import _progress_bar, show_deferred
from publisher.publication import AnnounceOutcome


def _show(outcome: AnnounceOutcome, *, as_json: bool) -> None:
    if as_json:
        print_json(outcome.as_json())
        return
    issue, name = outcome.issue, outcome.newsletter
    what = f"{name} announcement (issue {issue.number}) “{issue.subject}”"
    if outcome.dry_run_recipients is not None:
        click.echo(
            f"dry run: {plural(outcome.dry_run_recipients, 'message')} of the {what} written to {outcome.maildir} "
            f"(nothing sent, nothing recorded)"
        )
        return
    if outcome.report is None:
        click.echo(f"{what}: {outcome.status}: {outcome.reason}")
        return
    summary = outcome.as_json()
    click.echo(
        f"{what} ({outcome.status}): {plural(outcome.report.recipients, 'recipient')} — "
        f"{summary['delivered']:,} delivered, {summary['failed']:,} failed, {summary['deferred']:,} deferred"
    )
    show_deferred(outcome.deferred_reason, name)


@click.command("announce")
@click.argument("path", metavar="FILE.md", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--newsletter", "name", required=True, help="The newsletter whose confirmed readers get it.")
@click.option("--at", "at", type=MOMENT, help="Send it at this time (ISO-8601 with offset); `publisher run` sends it.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Write every message to dry-run/NEWSLETTER-NUMBER/ beside [delivery] maildir; record nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (status, issue, recipients, …).")
@click.pass_obj
def announce_command(app: App, path: Path, name: str, at: datetime | None, dry_run: bool, as_json: bool) -> None:
    """Send FILE.md (front matter `subject`, optional `preheader`, then Markdown) to a newsletter's
    confirmed readers, in its design, exactly once each: now, or at --at.

    Re-running with the same file resumes an interrupted send or says it was sent; it never
    sends twice. The message is archived on the web and in the issues feed like an issue.
    """
    app.warn_about_settings()
    pub = app.publication
    if dry_run:
        _show(pub.announce(path, name, at=at, dry_run=True), as_json=as_json)
        return
    with _progress_bar(as_json) as progress:
        _show(pub.announce(path, name, at=at, progress=progress), as_json=as_json)


def register(group: click.Group) -> None:
    group.add_command(announce_command)
