"""`publisher init`, `publisher import` and `publisher articles`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from publisher.cli.app import MOMENT, App, plural, print_json
from publisher.clock import system_clock
from publisher.content import FORMATS, article_json
from publisher.scaffold import scaffold


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init_command(directory: str, force: bool) -> None:
    """Create a new publication folder: config.toml, templates, content and a sample article."""
    for path in scaffold(Path(directory), now=system_clock(), force=force):
        click.echo(f"created {path}")
    click.echo(f"next: cd {directory} && publisher import && publisher articles")


@click.command("import")
@click.argument("sources", nargs=-1)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="How to read the sources; auto picks by URL, folder, extension or content.",
)
@click.option(
    "--as-of", "as_of", type=MOMENT, help="When a textpage capture was taken (default: now). Dates its new articles."
)
@click.pass_obj
def import_command(app: App, sources: tuple[str, ...], fmt: str, as_of: datetime | None) -> None:
    """Import articles from files, folders or feed URLs (default: the [[sources]] in config).

    Importing is idempotent: the same input twice changes nothing, and a changed article is
    updated in place, keeping its guid and publication date. The feeds are rebuilt when
    anything changed.
    """
    result = app.publication.import_sources(sources, fmt=fmt, as_of=as_of)
    for report in result.reports:
        click.echo(
            f"{report.source}: {len(report.added)} added, {len(report.updated)} updated, {report.unchanged} unchanged"
        )
    click.echo(f"{plural(result.articles, 'article')} in the store; {result.feeds_changed} feed files rebuilt")


@click.command("articles")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, newest first.")
@click.option("--limit", type=click.IntRange(min=1), help="Show only the newest N.")
@click.option(
    "--retag", is_flag=True, help="First apply [[sources]] tags and [[tag_rules]] to every stored article again."
)
@click.pass_obj
def articles_command(app: App, as_json: bool, limit: int | None, retag: bool) -> None:
    """List the stored articles, newest first (with --retag, after tagging them again)."""
    if retag:
        changed = app.publication.retag()
        click.echo(f"retagged {plural(len(changed), 'article')}", err=as_json)
    found = app.publication.articles(limit)
    if as_json:
        print_json([article_json(article, app.settings.site.url) for article in found])
        return
    for article in found:
        marker = "…" if article.truncated else " "
        tags = f"  [{', '.join(article.tags)}]" if article.tags else ""
        click.echo(f"{article.published:%Y-%m-%d %H:%M} {marker} {article.title}{tags}")
    click.echo(plural(len(found), "article"))


def register(group: click.Group) -> None:
    for command in (init_command, import_command, articles_command):
        group.add_command(command)
