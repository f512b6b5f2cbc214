"""`publisher subscribers add|import|export|list|remove`."""

from __future__ import annotations

from pathlib import Path

import click

from publisher.cli.app import App, print_json
from publisher.errors import SubscriberError
from publisher.files import write_private
from publisher.model import SUBSCRIBER_STATUSES
from publisher.subscribers import (
    subscriber_json,
)


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
@click.pass_obj
def add_command(app: App, email: str, name: str, newsletters: tuple[str, ...], confirmed: bool) -> None:
    """Add one subscriber, or add newsletters to an existing one."""
    stored, is_new = app.publication.add_subscriber(email, name=name, newsletters=newsletters, confirmed=confirmed)
    click.echo(
        f"{'added' if is_new else 'updated'} {stored.email} ({stored.status}; "
        f"{' '.join(stored.newsletters) or 'no newsletters'})"
    )


@subscribers_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--confirmed", is_flag=True, help="Mark imported addresses as confirmed.")
@click.pass_obj
def import_command(app: App, csv_file: Path, confirmed: bool) -> None:
    """Import subscribers from a CSV file with a header row `email,name,newsletters`.

    Newsletter names are separated by spaces; an empty cell means every configured newsletter.
    Bad rows are reported with their line number; good rows are kept.
    """
    result = app.publication.import_subscribers(csv_file, confirmed=confirmed)
    for error in result.rejected:
        click.echo(f"skipped {error}", err=True)
    click.echo(f"{csv_file}: {result.added} added, {result.updated} updated, {len(result.rejected)} rejected")


@subscribers_group.command("export")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
@click.option("--status", type=click.Choice(SUBSCRIBER_STATUSES), help="Only subscribers with this status.")
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
@click.option("--status", type=click.Choice(SUBSCRIBER_STATUSES), help="Only subscribers with this status.")
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
        click.echo(f"{person.status:<12} {person.email}{name}  {' '.join(person.newsletters)}")
    click.echo(f"{len(people)} subscribers")


@subscribers_group.command("remove")
@click.argument("email")
@click.pass_obj
def remove_command(app: App, email: str) -> None:
    """Unsubscribe an address from every newsletter and forget its name."""
    click.echo(f"removed {app.publication.remove_subscriber(email)}")


def register(group: click.Group) -> None:
    group.add_command(subscribers_group)
