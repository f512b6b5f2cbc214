"""`publisher db status` and `publisher db copy`."""

from __future__ import annotations

import click

from publisher.cli.app import App


@click.group("db")
def db_group() -> None:
    """Look after the database."""


@db_group.command("status")
@click.pass_obj
def status_command(app: App) -> None:
    """Show the database, its schema version and what it holds."""
    status = app.publication.database_status()
    click.echo(f"database   {status.url}")
    click.echo(f"schema     version {status.schema_version}")
    click.echo(f"articles   {status.articles}")
    click.echo(f"subscribers {status.subscribers} ({status.confirmed} confirmed)")


@db_group.command("copy")
@click.argument("target_url")
@click.pass_obj
def copy_command(app: App, target_url: str) -> None:
    """Copy everything into another, empty database (e.g. from SQLite to PostgreSQL).

    Stop `publisher run` first. Afterwards, point [database] url (or PUBLISHER_DATABASE_URL)
    at TARGET_URL. The timetable's jobs are re-created there on the next start.
    """
    where, copied = app.publication.copy_database(
        target_url, progress=lambda table, n: click.echo(f"{table:<16} {n} rows")
    )
    click.echo(f"copied {sum(copied.values())} rows into {where}")


def register(group: click.Group) -> None:
    group.add_command(db_group)
