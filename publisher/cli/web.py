"""`publisher serve`: the public web app (subscribe, confirm, unsubscribe, preferences, archive, feeds)."""

from __future__ import annotations

import click

from publisher.cli.app import App, log_format_option
from publisher.cli.service import configure_logging


@click.command("serve")
@click.option("--host", help="Address to listen on (default: [web] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port to listen on (default: [web] port, 8080).")
@log_format_option
@click.pass_obj
def serve_command(app: App, host: str | None, port: int | None, log_format: str) -> None:
    """Serve the web pages and the feeds with uvicorn until interrupted.

    Put a TLS-terminating proxy in front of it; X-Forwarded-For is trusted from 127.0.0.1 only.
    """
    from publisher.web import serve

    configure_logging(fmt=log_format)  # our own lines (a webhook event acted on…); uvicorn keeps its handlers
    serve(app.publication, host=host, port=port, log_format=log_format)


def register(group: click.Group) -> None:
    group.add_command(serve_command)
