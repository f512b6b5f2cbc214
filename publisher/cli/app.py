"""What every command shares: settings and store opened on first use, and error handling."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import click

from publisher import logs
from publisher.clock import Clock, system_clock
from publisher.config import Settings, deprecations, settings_warnings
from publisher.errors import PublisherError
from publisher.publication import Publication
from publisher.store import Store


class App:
    """The command's `Publication`, opened lazily so `--help` and `init` need no config or database."""

    def __init__(self, config_path: str, *, embedded: bool = False, clock: Clock = system_clock) -> None:
        self.config_path = Path(config_path)
        self.embedded = embedded
        self.clock = clock

    @cached_property
    def publication(self) -> Publication:
        publication = Publication.open(self.config_path, embedded=self.embedded, clock=self.clock)
        for line in deprecations(publication.settings):
            click.echo(f"warning: {line}", err=True)
        return publication

    @property
    def settings(self) -> Settings:
        return self.publication.settings

    @property
    def store(self) -> Store:
        return self.publication.store

    def warn_about_settings(self) -> None:
        """Print `settings_warnings` to stderr, once, for commands that send or serve."""
        for line in settings_warnings(self.settings):
            click.echo(f"warning: {line}", err=True)

    def close(self) -> None:
        """Release what a command opened (the store is opened only if a command used it)."""
        if "publication" in self.__dict__:
            self.publication.close()

    def now(self) -> datetime:
        return self.clock()


@contextmanager
def stopping_on_signals() -> Iterator[threading.Event]:
    """SIGTERM or SIGHUP while a send runs: set the event, so the send finishes the messages on the
    wire, records them and gives back the rest (a rerun continues), instead of dying mid-batch."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        click.echo(f"received {signal.Signals(signum).name}: finishing the messages on the wire", err=True)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class PublisherGroup(click.Group):
    """Turns a PublisherError anywhere below into `error: …` on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PublisherError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


class Moment(click.ParamType):
    """An ISO-8601 date or time; without an offset it is taken as UTC (or, `wall_clock`, left
    without one: a wall-clock time for the command to place)."""

    name = "ISO-8601"

    def __init__(self, *, wall_clock: bool = False) -> None:
        self.wall_clock = wall_clock

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 date or time (e.g. 2025-10-20T08:00:00+01:00)", param, ctx)
        return moment if moment.tzinfo or self.wall_clock else moment.replace(tzinfo=UTC)


MOMENT = Moment()
WALL_CLOCK = Moment(wall_clock=True)


def log_format_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--log-format text|json` for a long-running command (env PUBLISHER_LOG_FORMAT); the command
    passes the value to `service.configure_logging`."""
    return click.option(
        "--log-format",
        type=click.Choice(logs.FORMATS),
        default="text",
        show_default=True,
        envvar="PUBLISHER_LOG_FORMAT",
        help="Log lines as text, or as one JSON object a line (for a log collector).",
    )(command)


def print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def plural(count: int, noun: str) -> str:
    """ "1 article", "2 articles", "1,024 recipients"."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
