"""What every command shares: settings and store opened on first use, and error handling."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import click

from publisher.config import Settings, load_settings, settings_warnings
from publisher.errors import PublisherError
from publisher.store import Store


class App:
    """Opened lazily, so `--help` and `init` work without a config file or a database."""

    def __init__(self, config_path: str, *, embedded: bool = False) -> None:
        self.config_path = Path(config_path)
        self.embedded = embedded

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path, embedded=self.embedded)

    @cached_property
    def store(self) -> Store:
        return Store.open(self.settings.database.url)

    def warn_about_settings(self) -> None:
        """Print `settings_warnings` to stderr, once, for commands that send or serve."""
        for line in settings_warnings(self.settings):
            click.echo(f"warning: {line}", err=True)

    def close(self) -> None:
        """Release the database's connections (the store is opened only if a command used it)."""
        if "store" in self.__dict__:
            self.store.close()

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)


class PublisherGroup(click.Group):
    """Turns a PublisherError anywhere below into `error: …` on stderr and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PublisherError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


class Moment(click.ParamType):
    """An ISO-8601 date or time; without an offset it is taken as UTC."""

    name = "ISO-8601"

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 date or time (e.g. 2025-10-20T08:00:00+01:00)", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


MOMENT = Moment()


def print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
