"""`publisher demo`: the whole pipeline on the bundled sample, then optionally the web app."""

from __future__ import annotations

from pathlib import Path

import click

from publisher.cli.app import App
from publisher.demo import run_demo


@click.command("demo")
@click.option(
    "--dir",
    "folder",
    default="demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo publication is written (re-created on every run).",
)
@click.option("--serve", is_flag=True, help="Keep serving the web app afterwards, until Ctrl-C.")
@click.option("--port", default=8080, show_default=True, help="The web app's port with --serve.")
@click.pass_obj
def demo_command(app: App, folder: Path, serve: bool, port: int) -> None:
    """Run the whole pipeline on the bundled sample publication, with nothing to configure.

    Imports the sample articles, builds the feeds, adds three sample subscribers, previews the
    weekly digest, sends its first issue into a local maildir outbox (no mail leaves the
    machine) and writes the web archive. Then it prints where everything is.
    """
    report = run_demo(folder, app.now(), port=port)
    settings = report.settings
    click.echo(f"publisher demo in {report.folder}/")
    for step in report.steps:
        click.echo(f"  {step}")
    outbox = settings.delivery.maildir / "new"
    click.echo("\nWhere to look:")
    click.echo(f"  feeds      {settings.feeds.dir}/rss.xml  atom.xml  feed.json  tags/")
    click.echo(f"  preview    {settings.base_dir / 'preview'}/  (.html, .txt and .eml of the digest)")
    click.echo(f"  archive    {settings.archive.dir / 'weekly'}/index.html")
    click.echo(f"  outbox     {outbox}/  ({len(list(outbox.glob('*')))} messages, one per subscriber)")
    click.echo(f"  database   {settings.database.url}")
    command = f"publisher --config {report.folder / 'config.toml'}"
    for line in next_steps(command, settings.site.url, report.folder):
        click.echo(line)
    if serve:
        from publisher.cli.app import App as DemoApp
        from publisher.cli.service import run_service

        run_service(DemoApp(str(report.folder / "config.toml")), web=True, scheduler=False)


def next_steps(command: str, site_url: str, folder: Path) -> list[str]:
    """What to try after the demo: the public site (served, or written as files), the timetable."""
    return [
        "\nNext:",
        f"  {command} serve        # the public site on {site_url}/: home, articles, tags, archive, "
        "subscribe page, feeds",
        f"  {command} site build --out {folder / 'public'}",
        "      # the same site as static files (index.html per page, sitemap.xml, feeds/) to open or upload",
        f"  {command} schedule     # the timetable",
        f"  {command} run          # timetable and web app together",
    ]


def register(group: click.Group) -> None:
    group.add_command(demo_command)
