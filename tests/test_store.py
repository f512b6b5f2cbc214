"""The store itself: migrations, and clear errors for databases it cannot use."""

import pytest

from publisher.errors import StoreError
from publisher.store import Store
from publisher.store.schema import MIGRATIONS


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
