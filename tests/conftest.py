"""Shared fixtures: settings over tmp_path, a store on SQLite and on PostgreSQL, a fixed clock, the captures.

Plain helpers and constants live in tests/helpers.py; test modules import from there, never from each other."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy

from publisher.config import Settings, settings_from_dict
from publisher.store import Store
from tests.helpers import CAPTURE_SETS, OURS, SEED_CAPTURES, Captures, require

POSTGRES_URL = os.environ.get("PUBLISHER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=sorted(CAPTURE_SETS))
def captures(request) -> Captures:
    """Each set of textpage captures in turn: ours (tests/data, always) and the real seeds
    (../shared/seeds or PUBLISHER_TEST_SEEDS: skipped when absent, a failure when CI=true)."""
    chosen = CAPTURE_SETS[request.param]
    if chosen is SEED_CAPTURES:
        chosen.require()
    return chosen


@pytest.fixture
def our_captures() -> Captures:
    """Our own captures only, for tests that need real-looking content but no particular facts."""
    return OURS


@pytest.fixture
def clock() -> datetime:
    return datetime(2025, 10, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def make_settings(tmp_path: Path):
    """Settings from a dict, as if read from tmp_path/config.toml."""

    def make(data: dict | None = None, database_url: str | None = None) -> Settings:
        data = dict(data or {})
        site = data.setdefault("site", {})
        site.setdefault("url", "https://news.example.org")
        site.setdefault("title", "A publisher sample")  # the fixture publication's own words
        site.setdefault("description", "Notes on building a newsletter and feed publisher.")
        site.setdefault("postal_address", "1 Sample Street, Exampletown, EX1 2MP")
        if database_url:
            data["database"] = {"url": database_url}
        return settings_from_dict(data, tmp_path / "config.toml")

    return make


def _postgres_schema_url() -> tuple[str, str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    return schema, f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


def _postgres_available() -> bool:
    try:
        engine = sqlalchemy.create_engine(POSTGRES_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except sqlalchemy.exc.OperationalError:
        return False


@pytest.fixture
def postgres_url():
    """A database URL on PostgreSQL whose search_path is a fresh schema, dropped afterwards."""
    require(_postgres_available(), f"PostgreSQL at {POSTGRES_URL}")
    schema, url = _postgres_schema_url()
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    yield url
    with admin.begin() as connection:
        connection.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'publisher.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(database_url: str):
    opened = Store.open(database_url)
    yield opened
    opened.close()


@pytest.fixture
def settings(make_settings, database_url: str) -> Settings:
    return make_settings(database_url=database_url)
