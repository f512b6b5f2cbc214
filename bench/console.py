"""How long the console's heaviest requests take as the subscriber list grows.

    .venv/bin/python bench/console.py                       # 1,000 and 50,000 subscribers
    .venv/bin/python bench/console.py --sizes 100000 --repeat 5

Each size gets a fresh SQLite store with that many confirmed subscribers of one newsletter and 30
articles. It times, best and median of --repeat runs, the `Publication` calls behind the pages:

- dashboard:          `dashboard()` (audience, growth, next slots, last issues, failures);
- search, one page:   `find_subscribers("rider12")` (a LIKE over address and name, 50 rows + the count);
- list, last page:    `find_subscribers(offset=size-50)`;
- preview:            `preview_issue("weekly")` (selection + MJML render, in memory);
- login:              `login()` with the right password (one argon2id verification).

Target: every page under 0.5 s with 50,000 subscribers on this machine; login about 0.05-0.1 s
by design (argon2's cost is what makes guessing slow).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from publisher.config import settings_from_dict
from publisher.model import Draft, Subscriber
from publisher.operators import Role, cli_actor
from publisher.publication import Publication

NOW = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)
PASSWORD = "a benchmark password of some length"  # noqa: S105 - a throw-away store's operator


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def publication(folder: Path, size: int) -> Publication:
    settings = settings_from_dict(
        {
            "site": {"url": "https://news.example.org", "title": "Bench", "postal_address": "1 Road, Town"},
            "database": {"url": f"sqlite:///{folder / 'bench.db'}"},
            "newsletters": {"weekly": {"title": "Weekly", "lookback": "60d"}},
        },
        folder / "config.toml",
    )
    pub = Publication(settings, clock=lambda: NOW)
    pub.store.articles.ingest(
        [
            Draft(
                key=f"a{i}",
                slug=f"article-{i}",
                title=f"Article {i}",
                summary_html="<p>" + "A sentence of text. " * 20 + "</p>",
                content_html="<p>" + "A sentence of text. " * 60 + "</p>",
                truncated=False,
                published=NOW - timedelta(hours=i + 1),
            )
            for i in range(30)
        ],
        site_url=settings.site.url,
        guid_authority="example.org",
        now=NOW,
        source="bench",
    )
    people = (
        Subscriber(email=f"rider{i}@example.org", name=f"Rider {i}", status="confirmed", newsletters=("weekly",))
        for i in range(size)
    )
    batch: list[Subscriber] = []
    for person in people:
        batch.append(person)
        if len(batch) == 5000:
            pub.store.subscribers.upsert_many(batch, NOW - timedelta(days=3))
            batch = []
    if batch:
        pub.store.subscribers.upsert_many(batch, NOW - timedelta(days=3))
    pub.add_operator("bench@example.org", Role.OWNER, PASSWORD, actor=cli_actor("bench"))
    return pub


def requests(pub: Publication, size: int) -> dict[str, Callable[[], object]]:
    return {
        "dashboard": pub.dashboard,
        "search, one page": lambda: pub.find_subscribers("rider12"),
        "list, last page": lambda: pub.find_subscribers(offset=max(0, size - 50)),
        "preview": lambda: pub.preview_issue("weekly"),
        "login": lambda: pub.login("bench@example.org", PASSWORD),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 50_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("PUBLISHER_SECRET_KEY", "bench-3f8a1c6e9b2d7f4a0c5e8b1d6a9f2c7e5b8d")
    print(f"{'subscribers':>11}  {'request':<20} {'best':>9} {'median':>9}")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            pub = publication(Path(folder), size)
            calls = requests(pub, size)
            for name, call in calls.items():
                best, median = timed(call, args.repeat)
                print(f"{size:>11,}  {name:<20} {best * 1000:>7.1f}ms {median * 1000:>7.1f}ms")
            pub.close()


if __name__ == "__main__":
    main()
