"""How long a /metrics scrape takes as the delivery ledger grows (every figure is read from the store).

    .venv/bin/python bench/metrics.py                       # ledgers of 10,000 and 100,000 rows
    .venv/bin/python bench/metrics.py --sizes 1000000 --repeat 3

Each size gets a fresh SQLite store in a temporary folder with that many confirmed subscribers,
one issue per 10,000 of them, and a ledger row for each (nine in ten delivered, the rest pending,
deferred or failed), plus some bounces. Then it times, best and median of --repeat runs, the
whole exposition (`Registry.exposition`: the store's counts, run totals, Prometheus text) as a
scrape does it. Target: well under a second at 100,000 rows, so a 15-second scrape interval is cheap.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from publisher.config import settings_from_dict
from publisher.metrics import Registry
from publisher.publication import Publication
from publisher.store import Store
from publisher.store.schema import deliveries, inbound_messages, issues, subscribers

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
STATES = ["delivered"] * 9 + ["pending"]


def fill(store: Store, size: int) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            insert(subscribers),
            [
                {"email": f"r{n}@example.org", "status": "confirmed", "created_at": NOW, "updated_at": NOW}
                for n in range(size)
            ],
        )
        for number in range(max(1, size // 10_000)):
            connection.execute(
                insert(issues).values(
                    id=number + 1,
                    newsletter="weekly",
                    number=number + 1,
                    slot=NOW - timedelta(days=7 * number),
                    state="sent",
                    created_at=NOW,
                )
            )
        connection.execute(
            insert(deliveries),
            [
                {
                    "issue_id": n % max(1, size // 10_000) + 1,
                    "subscriber_id": n + 1,
                    "email": f"r{n}@example.org",
                    "state": "failed" if n % 97 == 0 else STATES[n % 10],
                    "queued_at": NOW,
                    "updated_at": NOW,
                    "delivered_at": NOW - timedelta(seconds=n % 600),
                }
                for n in range(size)
            ],
        )
        connection.execute(
            insert(inbound_messages),
            [
                {"digest": f"d{n}", "received_at": NOW, "source": "file", "kind": "bounce" if n % 2 else "complaint"}
                for n in range(size // 100)
            ],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            settings = settings_from_dict(
                {"site": {"url": "https://news.example.org"}, "database": {"url": url}, "newsletters": {"weekly": {}}},
                Path(folder) / "config.toml",
            )
            store = Store.open(url)
            fill(store, size)
            publication = Publication(settings, store, clock=lambda: NOW)
            registry = Registry.create(publication.metrics)
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                text = registry.exposition()
                times.append(time.perf_counter() - started)
            store.close()
        print(
            f"{size:>9,} ledger rows: scrape best {min(times) * 1000:7.1f} ms, "
            f"median {statistics.median(times) * 1000:7.1f} ms, {len(text):,} bytes"
        )


if __name__ == "__main__":
    main()
