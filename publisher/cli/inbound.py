"""`publisher inbound import|serve|poll` and `publisher subscribers suppressed|unsuppress`."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from publisher.cli.app import App, iso, log_format_option, print_json


@click.group("inbound")
def inbound_group() -> None:
    """Read mail that comes back: bounces, complaints, auto-replies, mailto unsubscribes."""


@inbound_group.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--verbose", "-v", is_flag=True, help="Print one line per message.")
@click.pass_obj
def import_command(app: App, paths: tuple[Path, ...], verbose: bool) -> None:
    """Read .eml files, mbox files or maildirs and act on each message (once, however often read)."""
    report = app.publication.import_inbound(list(paths))
    if verbose:
        for line in report.lines:
            click.echo(line)
    counts = ", ".join(f"{count} {kind}" for kind, count in sorted(report.kinds.items())) or "nothing new"
    click.echo(f"{report.total} messages: {counts}; {report.duplicates} already recorded")


@inbound_group.command("serve")
@log_format_option
@click.pass_obj
def serve_command(app: App, log_format: str) -> None:
    """Run the SMTP/LMTP receiver on `[inbound] listen` until stopped (SIGTERM or Ctrl-C)."""
    from publisher.cli.service import configure_logging

    configure_logging(fmt=log_format)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    app.publication.serve_inbound(stop)


@inbound_group.command("poll")
@click.pass_obj
def poll_command(app: App) -> None:
    """Read the `[inbound.imap]` mailbox once and move what was read to its processed folder."""
    report = app.publication.poll_inbound()
    counts = ", ".join(f"{count} {kind}" for kind, count in sorted(report.kinds.items())) or "nothing new"
    click.echo(f"{report.processed} messages: {counts}")


@click.command("suppressed")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_obj
def suppressed_command(app: App, as_json: bool) -> None:
    """List suppressed addresses: why, since when, and the evidence."""
    found = app.publication.suppressed()
    if as_json:
        print_json([{"email": s.email, "reason": s.reason, "at": iso(s.at), "evidence": s.evidence} for s in found])
        return
    for item in found:
        click.echo(f"{item.email}  {item.reason}  {iso(item.at)}  {item.evidence}")
    click.echo(f"{len(found)} suppressed")


@click.command("unsuppress")
@click.argument("email")
@click.option("--reason", required=True, help="Why (kept in the suppression's record).")
@click.pass_obj
def unsuppress_command(app: App, email: str, reason: str) -> None:
    """Lift a suppression: the address is confirmed again, with its newsletters."""
    address, names = app.publication.unsuppress(email, reason)
    click.echo(f"unsuppressed {address} ({' '.join(names) or 'no newsletters'})")


def register(group: click.Group) -> None:
    group.add_command(inbound_group)
    subscribers = group.commands["subscribers"]
    if isinstance(subscribers, click.Group):
        subscribers.add_command(suppressed_command)
        subscribers.add_command(unsuppress_command)
