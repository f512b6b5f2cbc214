"""`publisher site build`: the public site as static files."""

from __future__ import annotations

from pathlib import Path

import click

from publisher.cli.app import App


@click.group("site")
def site_group() -> None:
    """The public site: home, article, tag and archive pages, sitemap and feeds."""


@site_group.command("build")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the site into (default: [site] export_dir).",
)
@click.pass_obj
def build_command(app: App, out: Path | None) -> None:
    """Write the whole public site as files any web server or CDN can serve.

    Pages (`/x/` as `x/index.html`), feeds, newsletter archives, sitemap.xml, robots.txt,
    404.html and the static assets, with the same bytes `publisher serve` answers. Only files
    whose bytes changed are written; files an earlier build wrote that are gone are removed.
    """
    result = app.publication.export_site(out)
    export = result.export
    if export is None:  # export_site always exports; kept for type checkers
        return
    click.echo(
        f"{export.out}: {len(export.written)} written, {export.unchanged} unchanged, {len(export.removed)} removed "
        f"({export.files} files; {result.feeds_changed} feed and archive files rebuilt)"
    )


def register(group: click.Group) -> None:
    group.add_command(site_group)
