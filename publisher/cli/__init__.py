"""The `publisher` command: thin commands over the library.

Each command parses its arguments, calls one library function and prints the result. A
`PublisherError` becomes a one-line message on stderr and exit code 1; usage errors exit 2.
"""

from __future__ import annotations

import click

from publisher import __version__
from publisher.cli import (
    admin,
    announce,
    content,
    database,
    demo,
    digest,
    feeds,
    inbound,
    sending,
    service,
    site,
    subscribers,
    web,
)
from publisher.cli.app import App, PublisherGroup


@click.group(cls=PublisherGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="PUBLISHER_CONFIG",
    default="config.toml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The publication's config file (env PUBLISHER_CONFIG).",
)
@click.version_option(__version__, prog_name="publisher")
@click.pass_context
def cli(ctx: click.Context, config_path: str) -> None:
    """Keep a publication's articles, publish its feeds and send its email digests."""
    ctx.obj = App(config_path)
    ctx.call_on_close(ctx.obj.close)


for module in (
    content,
    subscribers,
    database,
    feeds,
    site,
    web,
    digest,
    sending,
    announce,
    service,
    demo,
    inbound,
    admin,
):
    module.register(cli)


def main() -> None:
    cli(prog_name="publisher")


if __name__ == "__main__":
    main()
