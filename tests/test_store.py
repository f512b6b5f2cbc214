"""The store itself: migrations, and clear errors for databases it cannot use."""

import os
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event

from publisher.errors import StoreError
from publisher.model import Draft
from publisher.store import Store
from publisher.store.schema import MIGRATIONS
from tests.helpers import REPO


def test_migrations_are_ordered_and_idempotent(store: Store):
    assert store.migrate() == store.migrate() == len(MIGRATIONS)
    assert store.ping()


def test_a_url_for_a_driver_that_is_not_installed_is_a_clear_error():
    with pytest.raises(StoreError, match=r"needs a driver that is not installed"):
        Store.open("mysql://user@localhost/db")


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError, match=r"cannot open the database .*notes\.txt"):
        Store.open(f"sqlite:///{path}")


# --- operational failures: one line naming the database, the store unchanged --------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _drafts(count: int, size: int = 0) -> list[Draft]:
    body = "<p>" + "x" * size + "</p>"
    return [
        Draft(
            key=f"k{n}",
            slug=f"s{n}",
            title=f"T{n}",
            summary_html=body,
            content_html=body,
            truncated=False,
            published=NOW,
        )
        for n in range(count)
    ]


def _ingest(store: Store, drafts: list[Draft]):
    return store.articles.ingest(drafts, site_url="https://n.org", guid_authority="n.org", now=NOW, source="t")


def _cripple(store: Store, database_url: str) -> Store:
    """SQLite: no room left in the file (as on a full disk). PostgreSQL: transactions are read-only."""
    if store.dialect == "sqlite":
        store.engine.dispose()
        with store.engine.connect() as connection:
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar()

        @event.listens_for(store.engine, "connect")
        def full(dbapi_connection, _record) -> None:
            dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

        store.engine.dispose()
        return store
    return Store.open(database_url + "%20-cdefault_transaction_read_only%3Don")


def test_a_full_or_read_only_database_is_one_line_naming_it_and_loses_nothing(store, database_url):
    _ingest(store, _drafts(1))
    crippled = _cripple(store, database_url)
    with pytest.raises(StoreError) as raised:
        _ingest(crippled, _drafts(200, size=2000))
    message = str(raised.value)
    assert "\n" not in message and len(message) < 400 and "INSERT" not in message, message
    assert message.startswith(f"database {crippled.safe_url}: ")
    assert re.search(r"the disk is full|it is read-only", message), message
    assert store.articles.count() == 1 and crippled.articles.count() == 1
    crippled.close()


def _cli(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    config = tmp_path / "config.toml"
    config.write_text('[site]\nurl = "https://news.example.org"\n')
    env = {**os.environ, "PUBLISHER_DATABASE_URL": database_url, "PUBLISHER_CONFIG": str(config)}
    return subprocess.run(
        [sys.executable, "-m", "publisher", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


def test_the_cli_on_a_read_only_sqlite_database_says_so_in_one_line(tmp_path):
    capture = tmp_path / "capture.txt"
    capture.write_text("First post\nIts paragraph.\n")
    path = tmp_path / "publisher.db"
    assert _cli(tmp_path, f"sqlite:///{path}", "import", str(capture), "--as-of", NOW.isoformat()).returncode == 0
    capture.write_text("Second post\nIts paragraph.\n")
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    done = _cli(tmp_path, read_only, "import", str(capture), "--as-of", NOW.isoformat())
    assert done.returncode == 1 and done.stdout == ""
    assert re.fullmatch(r"error: database sqlite:///\S+publisher\.db\S*: it is read-only: .*\n", done.stderr)
    reopened = Store.open(f"sqlite:///{path}")
    assert reopened.articles.count() == 1
    reopened.close()


def test_the_cli_on_a_postgresql_server_that_is_down_says_so_in_one_line_without_the_password(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = _cli(tmp_path, f"postgresql+psycopg://postgres:hunter2@127.0.0.1:{port}/test", "articles")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert re.fullmatch(
        rf"error: database postgresql\+psycopg://postgres:\*\*\*@127\.0\.0\.1:{port}/test: cannot reach it: .*\n",
        done.stderr,
    )
    assert "hunter2" not in done.stderr


@pytest.mark.parametrize("url", ["mysql://user:hunter2@localhost/db", "nonsense://user:hunter2@x/db"])
def test_a_url_error_never_shows_the_password(url):
    with pytest.raises(StoreError) as raised:
        Store.open(url)
    assert "hunter2" not in str(raised.value) and "user:***@" in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://user:hunter2@localhost:abc/db",
        "postgresql+psycopg://user@localhost:abc/db?password=hunter2",
        "user:hunter2@localhost/db",
    ],
)
def test_a_bad_url_is_one_line_without_its_secrets(url):
    with pytest.raises(StoreError, match=r"^database\.url .* is not a database URL") as raised:
        Store.open(url)
    assert "hunter2" not in str(raised.value)


def test_a_password_query_parameter_never_shows_in_a_database_error():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreError, match=r"cannot reach it") as raised:
        Store.open(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test?password=hunter2")
    assert "hunter2" not in str(raised.value) and "password=***" in str(raised.value)


def test_the_migration_gives_tags_in_other_scripts_their_slugs(store: Store):
    """Before it, a Cyrillic or CJK tag had no slug and no `article_tags` row: no topic or tag page saw it."""
    from dataclasses import replace

    from sqlalchemy import delete

    from publisher.store.schema import _tag_slugs_in_every_script, article_tags

    _ingest(store, [replace(_drafts(1)[0], tags=("Экономика", "中国经济", "Design"))])
    with store.engine.begin() as connection:  # as the old code stored them: the Latin tag only
        connection.execute(delete(article_tags).where(article_tags.c.tag_slug != "design"))
    assert store.articles.newest(tag_slug="экономика") == []
    with store.engine.begin() as connection:
        _tag_slugs_in_every_script(connection)
    assert [a.title for a in store.articles.newest(tag_slug="экономика")] == ["T0"]
    assert [a.title for a in store.articles.newest(tag_slug="中国经济")] == ["T0"]
    assert [a.title for a in store.articles.newest(tag_slug="design")] == ["T0"]
    assert store.articles.tags() == {"design": "Design", "экономика": "Экономика", "中国经济": "中国经济"}


def _signups(store: Store, *emails: str, at: datetime) -> dict[str, int]:
    from publisher.model import Subscriber

    for email in emails:
        store.subscribers.add(Subscriber(email=email, status="pending", source="web", newsletters=("weekly",)), at)
    return {email: store.subscribers.get(email).id for email in emails}


def test_a_purged_sign_ups_id_is_never_given_to_the_next_one(store: Store):
    """A never-confirmed sign-up's confirmation mail carries a VERP token naming its id for ever:
    once it is purged, the next sign-up must get another id, or that token names them."""
    before = datetime(2026, 1, 1, tzinfo=UTC)
    ids = _signups(store, "a@example.org", "b@example.org", "gone@example.org", at=before)
    assert store.subscribers.purge_unconfirmed("web", datetime(2026, 2, 1, tzinfo=UTC)) == 3
    new = _signups(store, "new@example.org", at=datetime(2026, 2, 2, tzinfo=UTC))
    assert new["new@example.org"] > ids["gone@example.org"]


def test_the_migration_keeps_every_subscriber_and_what_points_at_them(tmp_path, monkeypatch):
    """A SQLite database made before subscriber ids were kept unique is rebuilt with AUTOINCREMENT:
    rows, ids, the unique address, subscriptions, deliveries and suppressions all stay, the
    foreign keys still hold (and cascade), and a deleted top id is not given out again."""
    from sqlalchemy import func, insert, select, text
    from sqlalchemy.exc import IntegrityError

    from publisher.store import schema
    from publisher.store.schema import deliveries, subscribers, subscriptions, suppressions
    from tests.helpers import make_issue

    # SQLite only: PostgreSQL's sequences never hand out an id twice, so there is nothing to migrate
    old_url = f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setitem(subscribers.dialect_options["sqlite"], "autoincrement", False)
    monkeypatch.setattr("publisher.store.MIGRATIONS", schema.MIGRATIONS[:17])
    old = Store.open(old_url)
    monkeypatch.undo()
    now = datetime(2026, 3, 1, tzinfo=UTC)
    ids = _signups(old, "a@example.org", "b@example.org", "c@example.org", at=now)
    issue = make_issue(old, "One", now, 1)
    with old.engine.begin() as connection:
        assert "AUTOINCREMENT" not in connection.scalar(
            text("SELECT sql FROM sqlite_master WHERE name = 'subscribers'")
        )
        connection.execute(
            insert(deliveries),
            [
                {"issue_id": issue.id, "subscriber_id": sid, "email": email, "state": "sent"}
                | {"queued_at": now, "updated_at": now}
                for email, sid in ids.items()
            ],
        )
        connection.execute(
            insert(suppressions).values(
                subscriber_id=ids["b@example.org"], email="b@example.org", reason="complaint", at=now
            )
        )
    old.close()

    migrated = Store.open(old_url)
    try:
        with migrated.engine.begin() as connection:
            assert "AUTOINCREMENT" in connection.scalar(
                text("SELECT sql FROM sqlite_master WHERE name = 'subscribers'")
            )
            assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.scalar(select(func.count()).select_from(deliveries)) == 3
            assert connection.scalar(select(func.count()).select_from(subscriptions)) == 3
        assert {e: migrated.subscribers.get(e).id for e in ids} == ids
        assert [s.email for s in migrated.inbound.suppressed()] == ["b@example.org"]
        with pytest.raises(IntegrityError, match="UNIQUE"), migrated.engine.begin() as connection:
            connection.execute(
                insert(subscribers).values(email="a@example.org", status="pending", created_at=now, updated_at=now)
            )
        dangling = {"issue_id": issue.id, "subscriber_id": 999, "email": "z@example.org", "state": "sent"}
        with pytest.raises(IntegrityError, match="FOREIGN KEY"), migrated.engine.begin() as connection:
            connection.execute(insert(deliveries).values(**dangling, queued_at=now, updated_at=now))
        with migrated.engine.begin() as connection:
            connection.execute(deliveries.delete().where(deliveries.c.subscriber_id == ids["c@example.org"]))
            connection.execute(subscribers.delete().where(subscribers.c.id.in_([ids["c@example.org"]])))
            # the subscription went with the subscriber (ON DELETE CASCADE still holds)
            assert connection.scalar(select(func.count()).select_from(subscriptions)) == 2
        new = _signups(migrated, "d@example.org", at=now)
        assert new["d@example.org"] > ids["c@example.org"]
    finally:
        migrated.close()
