from publisher.store import Store


def test_migrations_are_idempotent(store: Store):
    assert store.migrate() == store.migrate()
    assert store.ping()
