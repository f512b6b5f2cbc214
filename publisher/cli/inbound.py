"""`publisher inbound import|serve|poll` (`subscribers suppressed|unsuppress` are in `cli/subscribers.py`)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from publisher.cli.app import App, log_format_option


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


def register(group: click.Group) -> None:
    group.add_command(inbound_group)
