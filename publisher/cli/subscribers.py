"""`publisher subscribers add|import|export|list|remove|confirm-pending|purge-pending|suppressed|unsuppress`.

The changes made here are written to the audit log as `cli:USER` (`publisher admin audit`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from publisher.cli.admin import shell_actor
from publisher.cli.app import App, iso, print_json
from publisher.errors import SubscriberError
from publisher.files import write_private
from publisher.list_import import ListImport
from publisher.model import SUBSCRIBER_STATUSES, StoredSubscriber
from publisher.store.reconfirmations import Standing
from publisher.subscribers import (
    subscriber_json,
    suppressed_hint,
)

# the values, in any case: `--status confirmed` or `--status CONFIRMED`
_STATUS_CHOICE = click.Choice([status.value for status in SUBSCRIBER_STATUSES], case_sensitive=False)


def audit(app: App, action: str, detail: dict) -> None:
    """Write a change made at the shell to the audit log, as `cli:USER`."""
    app.publication.audit(shell_actor(), action, detail)


@click.group("subscribers")
def subscribers_group() -> None:
    """Manage the subscriber list."""


@subscribers_group.command("add")
@click.argument("email")
@click.option("--name", default="", help="The subscriber's name, used in greetings and To: headers.")
@click.option(
    "--newsletter",
    "newsletters",
    multiple=True,
    help="A newsletter to subscribe to (repeatable; default: every configured newsletter).",
)
@click.option("--confirmed", is_flag=True, help="Mark as confirmed (consent obtained elsewhere).")
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="NAME",
    help="A [[topics]] name the reader wants (repeatable; default: every topic, i.e. everything).",
)
@click.option(
    "--timezone",
    default="",
    metavar="ZONE",
    help="The reader's IANA time zone (e.g. Australia/Sydney), for local-time newsletters.",
)
@click.pass_obj
def add_command(
    app: App,
    email: str,
    name: str,
    newsletters: tuple[str, ...],
    confirmed: bool,
    topics: tuple[str, ...],
    timezone: str,
) -> None:
    """Add one subscriber, or add newsletters (and set topics or time zone) for an existing one."""
    try:
        before = _shown(app.publication.subscriber(email))
    except SubscriberError:  # not there yet (or not an address: the add below says so)
        before = None
    stored, is_new = app.publication.add_subscriber(
        email, name=name, newsletters=newsletters, confirmed=confirmed, topics=topics, timezone=timezone
    )
    audit(
        app, "subscriber.add", {"email": stored.email, "newsletters": list(stored.newsletters), "confirmed": confirmed}
    )
    extras = [f"topics: {' '.join(stored.topics)}"] if stored.topics else []
    extras += [f"time zone: {stored.timezone}"] if stored.timezone else []
    done = "added" if is_new else "unchanged" if before == _shown(stored) else "updated"
    click.echo(
        f"{done} {stored.email} ({stored.status}; "
        f"{'; '.join([' '.join(stored.newsletters) or 'no newsletters', *extras])})"
    )


def _shown(person: StoredSubscriber) -> tuple:
    """What `subscribers add` can change of a subscriber."""
    return person.status, person.name, person.newsletters, person.topics, person.timezone


@subscribers_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--confirmed", is_flag=True, help="Mark imported addresses as confirmed (consent time: the export's).")
@click.option(
    "--newsletter",
    "newsletters",
    multiple=True,
    help="Subscribe everyone in the file to this newsletter (repeatable).",
)
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar="COLUMN=FIELD",
    help="Read COLUMN as FIELD (email, name, first_name, last_name, newsletters, tags, topics, timezone, "
    "optin_at, confirmed_at, ignore); tag:TAG=NEWSLETTER / tag:TAG=topic:TOPIC; or COLUMN:VALUE=NEWSLETTER / "
    "COLUMN:VALUE=topic:TOPIC for rows whose COLUMN holds VALUE among its comma-separated values (repeatable).",
)
@click.option("--dry-run", is_flag=True, help="Show the detected format, the mapping and the counts; write nothing.")
@click.pass_obj
def import_command(
    app: App, csv_file: Path, confirmed: bool, newsletters: tuple[str, ...], maps: tuple[str, ...], dry_run: bool
) -> None:
    """Import subscribers from a CSV file: `email,name,newsletters`, or a Mailchimp, Substack,
    Buttondown or listmonk export (recognised from its header row).

    Newsletter names are separated by spaces; an empty cell means every configured newsletter
    (unless --map tag or value rules place the row, or the file is our own export with a status
    column: then it means none).
    Rows the old service had unsubscribed or suppressed come in as unsubscribed or bounced.
    Bad rows are reported with their line number; good rows are kept. On a terminal, the counts
    so far are shown as the file is read.
    """
    progress = _ImportProgress(csv_file)
    try:
        plan, result = app.publication.import_subscribers(
            csv_file,
            confirmed=confirmed,
            newsletters=newsletters,
            maps=maps,
            dry_run=dry_run,
            on_error=progress.around(lambda error: click.echo(f"skipped {error}", err=True)),
            on_plan=lambda plan: click.echo("\n".join(f"{csv_file}: {line}" for line in plan.describe())),
            on_progress=progress.show,
        )
    finally:
        progress.clear()
    if not dry_run:
        audit(app, "subscribers.import", {"file": str(csv_file), "added": result.added, "updated": result.updated})
    statuses = ", ".join(f"{result.statuses[s]} {s}" for s in SUBSCRIBER_STATUSES if result.statuses[s] > 0)
    merged = f", {result.duplicates} duplicate rows merged" if result.duplicates else ""
    held = f", {result.suppressed} left unchanged (suppressed)" if result.suppressed else ""
    if dry_run:
        click.echo(
            f"dry run, nothing written: {result.rows} {'row' if result.rows == 1 else 'rows'} — "
            f"{statuses or 'none valid'}{held}, "
            f"{result.rejected} rejected{merged}"
        )
    else:
        click.echo(
            f"{csv_file}: {result.added} added, {result.updated} updated, {result.unchanged} unchanged{held}, "
            f"{result.rejected} rejected{merged}{f' ({statuses})' if statuses else ''}"
        )
    for email in result.suppressed_named:
        click.echo(f"skipped {suppressed_hint(email)}", err=True)
    if result.suppressed > len(result.suppressed_named):
        click.echo(f"… {result.suppressed} suppressed addresses in all were left unchanged", err=True)
    if result.without_newsletters:
        why = "no tag or value rule fits them" if plan.mapping.tag_rules else "their newsletters cell is empty"
        click.echo(f"{_addresses(result.without_newsletters)} matched no newsletter ({why})")
    if result.rejected and result.rejected == result.rows:
        raise SubscriberError(f"{csv_file}: no valid rows")
    if pending := result.statuses["pending"]:
        click.echo(
            f"{_addresses(pending)} {'would be' if dry_run else 'are' if pending > 1 else 'is'} pending confirmation: "
            f"`publisher subscribers confirm-pending --send` asks them"
        )


def _addresses(count: int, kind: str = "") -> str:
    """`1 address`, `2 pending addresses`."""
    return f"{count} {kind}{'address' if count == 1 else 'addresses'}"


class _ImportProgress:
    """The counts so far on one terminal line of stderr, redrawn at most twice a second; nothing
    when stderr is not a terminal (a script's log gets the summary only)."""

    def __init__(self, csv_file: Path) -> None:
        self.csv_file, self.shown_at, self.drawn = csv_file, 0.0, False
        self.terminal = sys.stderr.isatty()

    def show(self, done: ListImport) -> None:
        if not self.terminal or time.monotonic() - self.shown_at < 0.5:
            return
        self.shown_at, self.drawn = time.monotonic(), True
        click.echo(
            f"\r{self.csv_file}: {done.rows:,} rows read, {done.added:,} added, {done.updated:,} updated, "
            f"{done.rejected:,} rejected …\x1b[K",
            nl=False,
            err=True,
        )

    def clear(self) -> None:
        if self.drawn:
            click.echo("\r\x1b[K", nl=False, err=True)
            self.drawn = False

    def around(self, report: Callable[[str], None]) -> Callable[[str], None]:
        """`report`, on a line of its own (the counts are drawn again after it)."""

        def reported(error: str) -> None:
            self.clear()
            report(error)

        return reported


@subscribers_group.command("export")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
@click.option("--status", type=_STATUS_CHOICE, help="Only subscribers with this status (any case).")
@click.pass_obj
def export_command(app: App, output: Path | None, status: str | None) -> None:
    """Export subscribers as CSV (the import format, plus status, consent time and source)."""
    text = app.publication.export_subscribers(status=status)
    if output:
        try:
            write_private(output, text.encode())  # addresses and names: owner-only
        except OSError as error:
            raise SubscriberError(f"{output}: cannot write: {error.strerror}") from None
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@subscribers_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--status", type=_STATUS_CHOICE, help="Only subscribers with this status (any case).")
@click.option("--newsletter", help="Only subscribers of this newsletter.")
@click.pass_obj
def list_command(app: App, as_json: bool, status: str | None, newsletter: str | None) -> None:
    """List subscribers."""
    people = app.publication.subscribers(status=status, newsletter=newsletter)
    if as_json:
        print_json([subscriber_json(person) for person in people])
        return
    for person in people:
        name = f" ({person.name})" if person.name else ""
        topics = f"  topics: {' '.join(person.topics)}" if person.topics else ""
        zone = f"  time zone: {person.timezone}" if person.timezone else ""
        click.echo(f"{person.status:<12} {person.email}{name}  {' '.join(person.newsletters)}{topics}{zone}")
    click.echo(f"{len(people)} subscribers")


@subscribers_group.command("remove")
@click.argument("email")
@click.pass_obj
def remove_command(app: App, email: str) -> None:
    """Unsubscribe an address from every newsletter and forget its name."""
    address = app.publication.remove_subscriber(email)
    audit(app, "subscriber.unsubscribe", {"email": address})
    click.echo(f"removed {address}")


@subscribers_group.command("confirm-pending")
@click.option("--newsletter", help="Only pending subscribers of this newsletter.")
@click.option("--send", is_flag=True, help="Send the confirmation mails (without it: only show who would get one).")
@click.option(
    "--again",
    is_flag=True,
    help="Also ask once more those asked longer ago than [web] confirm_expiry who have not confirmed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def confirm_pending_command(app: App, newsletter: str | None, send: bool, again: bool, as_json: bool) -> None:
    """Ask pending subscribers (e.g. imported without --confirmed) to confirm, once each.

    Each address gets one confirmation mail through [delivery] (its rate_limit applies); the
    state is kept per address, so a second run sends nothing new and a run stopped half-way
    is finished by the next. With --again, those whose link expired unanswered get one more
    mail. Without --send, only counts and lists who would get one.
    """
    if newsletter:
        app.settings.newsletter(newsletter)
    if not send:
        waiting = app.publication.pending_to_ask(newsletter, again=again)
        standing = app.publication.pending_standing(newsletter)
        if as_json:
            print_json({"send": False, "would_ask": len(waiting), "addresses": waiting, **_standing_json(standing)})
            return
        for email in waiting:
            click.echo(email)
        click.echo(f"{_addresses(len(waiting), 'pending ')} would be asked to confirm (add --send to send)")
        _echo_standing(standing, again)
        return
    app.warn_about_settings()
    report = app.publication.confirm_pending(newsletter, again=again)
    audit(
        app,
        "subscribers.confirm_pending",
        {"newsletter": newsletter or "", "again": again, "sent": report.sent, "failed": report.failed},
    )
    if as_json:
        print_json(
            {
                "send": True,
                "queued": report.queued,
                "asked_again": report.asked_again,
                "sent": report.sent,
                "failed": report.failed,
                "deferred": report.deferred,
                "failures": [
                    {"email": f.email, "code": f.code, "detail": f.detail, "suppressed": f.suppressed}
                    for f in report.failures
                ],
                "ledger": report.ledger,
                **(_standing_json(report.standing) if report.standing else {}),
            }
        )
        return
    for failure in report.failures:
        answer = " ".join(str(part) for part in (failure.code, failure.detail) if part) or "no answer"
        suppressed = f"; {failure.email} is now suppressed (bounced)" if failure.suppressed else ""
        click.echo(f"confirmation mail to {failure.email} failed: {answer}{suppressed}", err=True)
    click.echo(
        f"confirmation mails: {report.sent} sent, {report.failed} failed, {report.deferred} deferred"
        f" ({report.ledger.get('sent', 0)} sent in all, one per address asked)"
    )
    if report.open:
        click.echo(f"{report.open} still to send: run `publisher subscribers confirm-pending --send` again later")
    if report.standing:
        _echo_standing(report.standing, again)


@subscribers_group.command("purge-pending")
@click.option("--yes", "confirmed", is_flag=True, help="Delete them (without it: only list who would be deleted).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def purge_pending_command(app: App, confirmed: bool, as_json: bool) -> None:
    """Delete the pending addresses that were asked to confirm and never did.

    Only addresses whose confirmation mail from `confirm-pending --send` went out longer ago than
    [web] confirm_expiry (their link no longer works, and none was sent since) are deleted, with
    their subscriptions. Addresses never asked are left alone. Without --yes, only lists them.
    """
    found = app.publication.purge_unanswered(delete=confirmed)
    if confirmed:
        audit(app, "subscribers.purge_pending", {"deleted": len(found)})
    if as_json:
        print_json({"deleted": confirmed, "count": len(found), "addresses": found})
        return
    if not found:
        click.echo("no pending address has let its confirmation link run out: nothing to delete")
        return
    if not confirmed:
        for email in found:
            click.echo(email)
    count = _addresses(len(found), "pending ")
    if confirmed:
        click.echo(f"deleted {count} that {'was' if len(found) == 1 else 'were'} asked to confirm and never did")
    else:
        click.echo(
            f"{count} {'was' if len(found) == 1 else 'were'} asked to confirm and never did (the link has run out): "
            "add --yes to delete them"
        )


def _standing_json(standing: Standing) -> dict[str, int]:
    return {
        "never_asked": standing.never_asked,
        "asked_waiting": standing.waiting,
        "asked_expired": standing.expired,
        "confirmed_since_asked": standing.confirmed,
        "asked_failed": standing.failed,
        "no_newsletter": standing.no_newsletter,
    }


def _echo_standing(standing: Standing, again: bool) -> None:
    """Where the pending addresses stand: asked and waiting, confirmed since asked, never asked."""
    expired = (
        f" ({standing.expired} asked longer ago than [web] confirm_expiry"
        f"{'' if again else ': --again asks them once more, purge-pending --yes deletes them'})"
        if standing.expired
        else ""
    )
    click.echo(f"asked, waiting for an answer: {standing.waiting}{expired}")
    click.echo(f"confirmed since asked: {standing.confirmed}")
    click.echo(f"never asked: {standing.never_asked}")
    if standing.failed:
        click.echo(f"could not be asked (the mail was refused or bounced): {standing.failed}")
    if standing.no_newsletter:
        click.echo(
            f"not asked, on no newsletter: {standing.no_newsletter} "
            "(`publisher subscribers add EMAIL --newsletter NAME` gives one a newsletter)"
        )


@subscribers_group.command("suppressed")
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


@subscribers_group.command("unsuppress")
@click.argument("email")
@click.option("--reason", required=True, help="Why (kept with the lift, and in the audit log).")
@click.pass_obj
def unsuppress_command(app: App, email: str, reason: str) -> None:
    """Lift a suppression: the address goes back to the status it had before (pending stays
    pending, unsubscribed stays unsubscribed)."""
    lifted = app.publication.unsuppress(email, reason)
    audit(app, "subscriber.unsuppress", {"email": lifted.email, "reason": reason, "status": lifted.status})
    newsletters = " ".join(lifted.newsletters) or "no newsletters"
    if lifted.status == "confirmed":
        click.echo(f"{lifted.email} is confirmed again and will get the next issue ({newsletters})")
    elif lifted.status == "pending":
        click.echo(
            f"{lifted.email} is pending again; it will be asked to confirm by "
            f"`publisher subscribers confirm-pending --send` ({newsletters})"
        )
    else:
        click.echo(
            f"{lifted.email} is no longer suppressed but stays {lifted.status}: "
            "it gets nothing until it subscribes again"
        )


def register(group: click.Group) -> None:
    group.add_command(subscribers_group)
