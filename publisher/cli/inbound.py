"""`publisher inbound import|serve|poll|list|show` (`subscribers suppressed|unsuppress` are in `cli/subscribers.py`)."""

from __future__ import annotations

import re
import signal
import threading
from collections import Counter
from email.parser import HeaderParser
from email.policy import default as default_policy
from pathlib import Path

import click

from publisher.cli.app import App, iso, log_format_option, plural, print_json
from publisher.inbound.parse import Kind
from publisher.store.inbound import OUTCOMES

MAX_ID = 2**31 - 1  # the largest id the store's integer column holds
# Control characters other than tab and line feed, and the bidi controls that reorder what a
# terminal shows (U+202E makes "gpj.exe" read "exe.jpg"), shown rather than sent to the terminal.
_CONTROL = re.compile("\r(?!\n)|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SHOWN_HEADERS = ("Date", "From", "To", "Subject", "Message-ID", "Auto-Submitted", "Content-Type")
_LISTED = ("id", "received_at", "source", "kind", "format", "recipient", "sender", "subject", "verified", "action")


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
    failed = f"; {report.failed} could not be recorded (see the warnings above)" if report.failed else ""
    click.echo(f"{plural(report.total + report.failed, 'message')}: {counts}; {done(report.outcomes)}{failed}")


def done(outcomes: Counter) -> str:
    """What was done, always naming suppressed, unsubscribed and kept; the rest when it happened."""
    always = ("suppressed", "unsubscribed", "kept for an operator", "already recorded")
    return ", ".join(
        f"{outcomes[outcome]} {'soft bounce' if outcomes[outcome] == 1 else 'soft bounces'} scored"
        if outcome == "scored"
        else f"{outcomes[outcome]} {outcome}"
        for outcome in OUTCOMES
        if outcome in always or outcomes[outcome]
    )


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
    click.echo(f"{plural(report.processed, 'message')}: {counts}")


@inbound_group.command("list")
@click.option("--kind", type=click.Choice([str(kind) for kind in Kind]), help="Only messages of this kind.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_obj
def list_command(app: App, kind: str | None, limit: int, as_json: bool) -> None:
    """List recorded messages, newest first: kind, who sent it, its subject and what was done."""
    rows = app.publication.inbound_messages(kind, limit)
    if as_json:
        print_json([{key: iso(row[key]) if key == "received_at" else row[key] for key in _LISTED} for row in rows])
        return
    for row in rows:
        fields = (row["kind"], row["sender"] or "-", quoted(row["subject"]), row["action"])
        received = iso(row["received_at"].replace(microsecond=0))
        click.echo(visible(f"{row['id']:>6}  {received}  {'  '.join(fields)}"))
    click.echo(f"{plural(len(rows), 'message')}" + (" (use `inbound show ID` to read one)" if rows else ""))


@inbound_group.command("show")
@click.argument("message_id", metavar="ID", type=click.IntRange(1, MAX_ID))
@click.pass_obj
def show_command(app: App, message_id: int) -> None:
    """Show one recorded message: its headers, what it was taken to mean, what was done, and the
    raw text (control characters shown as symbols, never sent to the terminal)."""
    row = app.publication.inbound_message(message_id)
    identity = "none"
    if row["subscriber_id"] is not None:
        verified = "token verified" if row["verified"] else "not verified"
        identity = f"subscriber {row['subscriber_id']}, issue {row['issue_id'] or '-'} ({verified})"
    lines = [
        f"message {row['id']}, received {iso(row['received_at'])} by {row['source']}",
        *(f"  {name}: {value}" for name, value in headers(row["raw"])),
        f"taken as:   {row['kind']}" + (f" ({row['format']})" if row["format"] else ""),
        f"names:      {row['recipient'] or '-'}; {identity}",
        f"status:     {row['status'] or '-'}  {row['diagnostic']}".rstrip(),
        f"done:       {row['action']}",
    ]
    click.echo(visible("\n".join(lines)))
    click.echo("")
    click.echo(visible(row["raw"]) if row["raw"] else "(the raw text is kept with another recipient's record)")


def headers(raw: str) -> list[tuple[str, str]]:
    """The headers worth a glance, decoded; one too malformed to decode is shown as written."""
    decoded = HeaderParser(policy=default_policy).parsestr(raw, headersonly=True)
    written = HeaderParser().parsestr(raw, headersonly=True)
    found = []
    for name in _SHOWN_HEADERS:
        try:
            value = decoded.get(name)
        except (ValueError, IndexError, TypeError, AttributeError):
            value = written.get(name)
        if value:
            found.append((name, " ".join(str(value).split())))
    return found


def visible(text: str) -> str:
    """`text` with tab and line feed as they are and every other control character as its symbol
    (U+2400 block: ␀ ␛ …, ␡ for DEL, \\x85 for C1, <U+202E> for a bidi control), so nothing
    reaches the terminal as a command or reorders what it shows."""
    return _CONTROL.sub(_symbol, text.replace("\r\n", "\n"))


def _symbol(match: re.Match) -> str:
    code = ord(match[0])
    if code < 0x20:
        return chr(0x2400 + code)
    if code > 0xFF:
        return f"<U+{code:04X}>"
    return "\u2421" if code == 0x7F else f"\\x{code:02x}"


def quoted(text: str) -> str:
    return f'"{text}"' if text else "-"


def register(group: click.Group) -> None:
    group.add_command(inbound_group)
