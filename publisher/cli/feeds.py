"""`publisher feeds`."""

from __future__ import annotations

import click

from publisher.cli.app import App
from publisher.feeds import STATUSES


@click.command("feeds")
@click.pass_obj
def feeds_command(app: App) -> None:
    """Build the RSS, Atom and JSON feeds (the site's and one per tag) into [feeds] dir.

    A feed whose articles have not changed is left untouched, so its modification time and HTTP
    caches stay valid; a changed one is replaced atomically and announced to [feeds] hub if set.
    """
    settings = app.settings
    report = app.publication.build_feeds()
    root = settings.feeds.dir
    for path, status in report.files:
        click.echo(f"{status:<9} {path.relative_to(root)}")
    counts = ", ".join(f"{report.count(status)} {status}" for status in STATUSES)
    click.echo(f"{counts} in {root}")


def register(group: click.Group) -> None:
    group.add_command(feeds_command)
