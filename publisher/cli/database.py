"""`publisher db status` and `publisher db copy`."""

from __future__ import annotations

import click

from publisher.cli.app import App
from publisher.store import Store
from publisher.store.copy import copy_database


@click.group("db")
def db_group() -> None:
    """Look after the database."""


@db_group.command("status")
@click.pass_obj
def status_command(app: App) -> None:
    """Show the database, its schema version and what it holds."""
    store = app.store
    click.echo(f"database   {store.safe_url}")
    click.echo(f"schema     version {store.migrate()}")
    click.echo(f"articles   {store.articles.count()}")
    click.echo(f"subscribers {store.subscribers.count()} ({store.subscribers.count('confirmed')} confirmed)")


@db_group.command("copy")
@click.argument("target_url")
@click.pass_obj
def copy_command(app: App, target_url: str) -> None:
    """Copy everything into another, empty database (e.g. from SQLite to PostgreSQL).

    Stop `publisher run` first. Afterwards, point [database] url (or PUBLISHER_DATABASE_URL)
    at TARGET_URL. The timetable's jobs are re-created there on the next start.
    """
    target = Store.open(target_url)
    try:
        copied = copy_database(app.store, target, progress=lambda table, n: click.echo(f"{table:<16} {n} rows"))
    finally:
        target.close()
    click.echo(f"copied {sum(copied.values())} rows into {target.safe_url}")


def register(group: click.Group) -> None:
    group.add_command(db_group)
