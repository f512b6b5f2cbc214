"""The import's bulk writes: what goes in comes back out, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

from publisher.model import Subscriber

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_names_with_tabs_and_backslashes_and_times_in_any_zone_come_back_as_written(store):
    consent = datetime(2022, 5, 1, 9, 5, tzinfo=timezone(timedelta(hours=2)))
    people = [
        Subscriber("tab@example.org", name="Ann\tTab \\N", status="confirmed", newsletters=("weekly",),
                   source="import:x", consent_at=consent, consent_text="opted in \\ somewhere"),
        Subscriber("none@example.org", name="", status="pending", newsletters=("weekly", "daily")),
    ]  # fmt: skip
    assert store.subscribers.import_batch(people, NOW) == (2, 0, 0, [], [], Counter(confirmed=1, pending=1))
    tab = store.subscribers.get("tab@example.org")
    assert (tab.name, tab.consent_text, tab.newsletters) == ("Ann\tTab \\N", "opted in \\ somewhere", ("weekly",))
    assert tab.consent_at == consent and tab.created_at == NOW
    none = store.subscribers.get("none@example.org")
    assert (none.consent_at, none.newsletters, none.status) == (None, ("daily", "weekly"), "pending")


def test_a_batch_counts_what_it_changed_and_what_it_found_as_it_was(store):
    people = [
        Subscriber(f"u{n}@example.org", name=f"U{n}", status="pending", newsletters=("weekly",)) for n in range(5)
    ]
    assert store.subscribers.import_batch(people, NOW) == (5, 0, 0, [], [], Counter(pending=5))
    again = [*people[:3], Subscriber("u3@example.org", name="Renamed", status="pending", newsletters=("weekly",))]
    again.append(Subscriber("u4@example.org", name="U4", status="pending", newsletters=("daily",)))
    assert store.subscribers.import_batch(again, NOW) == (0, 2, 3, [], [], Counter(pending=5))
    assert store.subscribers.get("u3@example.org").name == "Renamed"
    assert store.subscribers.get("u4@example.org").newsletters == ("daily", "weekly")


def test_a_batch_larger_than_one_statement_takes_gets_every_row_and_its_newsletters(store):
    people = [Subscriber(f"n{n}@example.org", status="confirmed", newsletters=("weekly",)) for n in range(6000)]
    assert store.subscribers.import_batch(people, NOW) == (6000, 0, 0, [], [], Counter(confirmed=6000))
    assert store.subscribers.count("confirmed") == 6000
    assert store.subscribers.get("n5999@example.org").newsletters == ("weekly",)


def test_sign_ups_between_and_during_batches_never_get_an_id_a_batch_took(store):
    first = [Subscriber(f"a{n}@example.org", status="confirmed", newsletters=("weekly",)) for n in range(300)]
    second = [Subscriber(f"b{n}@example.org", status="confirmed", newsletters=("weekly",)) for n in range(3000)]
    store.subscribers.import_batch(first, NOW)
    store.subscribers.add(Subscriber("between@example.org", status="pending", newsletters=("weekly",)), NOW)
    during = threading.Thread(
        target=lambda: store.subscribers.add(Subscriber("during@example.org", status="pending"), NOW)
    )
    during.start()
    store.subscribers.import_batch(second, NOW)
    during.join()
    everyone = store.subscribers.all()
    assert len(everyone) == len({person.id for person in everyone}) == 3302
    for person in everyone:
        assert store.subscribers.get_by_id(person.id).email == person.email
    assert store.subscribers.get("b2999@example.org").newsletters == ("weekly",)
