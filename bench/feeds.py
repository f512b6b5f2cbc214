"""How long building the feeds takes, and that it does not grow with the size of the store.

    .venv/bin/python bench/feeds.py                 # stores of 1,000 and 10,000 articles
    .venv/bin/python bench/feeds.py --sizes 10000 --repeat 10

Each size gets a fresh SQLite store in a temporary folder, filled with synthetic articles (about
3 KB of HTML each; one in three tagged with one or two of 8 tags, so that every tag has more than
`limit` articles even in the small store). Then it times, best and median of --repeat runs:

- site feeds, written:   the query for the newest [feeds] limit articles + RSS, Atom and JSON
                         rendered and written into an empty folder;
- site feeds, unchanged: the same when the files already hold those bytes (nothing is written);
- every feed, written / unchanged: `build_feeds`, the site feed and one per tag.

Target: site feeds under 0.5 s with 10,000 articles; the figures for 1,000 and 10,000 should be
about the same, since only `limit` entries are ever rendered.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from publisher.config import Settings, settings_from_dict
from publisher.feeds import article_entry, article_feeds, build_feeds, write_feed_set
from publisher.model import Draft
from publisher.store import Store

TAGS = [f"Topic {n}" for n in range(8)]
START = datetime(2020, 1, 1, tzinfo=UTC)
PARAGRAPH = (
    "The delegation’s visit – the first in a decade – was called “historic” by both sides, "
    "who signed agreements on trade, science and culture. "
)


def synthetic(n: int) -> Draft:
    tags = (TAGS[n % 8], TAGS[(n * 3) % 8]) if n % 3 == 0 else ()
    body = "\n".join(f"<p>{PARAGRAPH * 3}</p>" for _ in range(8))
    return Draft(
        key=f"article-{n}",
        slug=f"article-{n}",
        title=f"Article {n}: a “quoted” title – with dashes",
        summary_html=f"<p>{PARAGRAPH}</p>",
        content_html=body,
        truncated=n % 2 == 0,
        published=START + timedelta(minutes=n),
        tags=tuple(dict.fromkeys(tags)),
        authors=("A. Writer",),
    )


def fill(store: Store, settings: Settings, count: int, batch: int = 1000) -> None:
    for start in range(0, count, batch):
        drafts = [synthetic(n) for n in range(start, min(start + batch, count))]
        store.articles.ingest(
            drafts, site_url=settings.site.url, guid_authority=settings.site.domain, now=START, source="bench"
        )


def site_feeds(store: Store, settings: Settings) -> None:
    spec, _ = article_feeds(settings, {})[0]
    articles = store.articles.newest(settings.feeds.limit)
    write_feed_set(spec, [article_entry(a, settings.site.url) for a in articles], settings.feeds)


def timed(action: Callable[[], None], repeat: int, before: Callable[[], None] = lambda: None) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        action()
        runs.append(time.perf_counter() - started)
    return min(runs), statistics.median(runs)


def bench(size: int, repeat: int) -> list[tuple[str, float, float]]:
    folder = Path(tempfile.mkdtemp(prefix="publisher-bench-"))
    try:
        settings = settings_from_dict(
            {"site": {"url": "https://news.example.org"}, "database": {"url": f"sqlite:///{folder / 'bench.db'}"}},
            folder / "config.toml",
        )
        store = Store.open(settings.database.url)
        started = time.perf_counter()
        fill(store, settings, size)
        print(
            f"{size:>6} articles stored in {time.perf_counter() - started:.1f} s "
            f"({len(store.articles.tags())} tags, feeds limit {settings.feeds.limit})",
            flush=True,
        )
        clear = lambda: shutil.rmtree(settings.feeds.dir, ignore_errors=True)  # noqa: E731
        results = [
            ("site feeds, written", *timed(lambda: site_feeds(store, settings), repeat, clear)),
            ("site feeds, unchanged", *timed(lambda: site_feeds(store, settings), repeat)),
            ("every feed, written", *timed(lambda: build_feeds(store, settings), repeat, clear)),
            ("every feed, unchanged", *timed(lambda: build_feeds(store, settings), repeat)),
        ]
        store.close()
        return results
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    table = {size: bench(size, args.repeat) for size in args.sizes}
    print(f"\n{'':<24}" + "".join(f"{f'{size} articles':>26}" for size in args.sizes))
    print(f"{'':<24}" + f"{'best':>13}{'median':>13}" * len(args.sizes))
    for row, (label, *_rest) in enumerate(table[args.sizes[0]]):
        cells = "".join(f"{table[size][row][1]:>12.3f}s{table[size][row][2]:>12.3f}s" for size in args.sizes)
        print(f"{label:<24}{cells}")
    worst = max(table[size][0][2] for size in args.sizes)
    print(
        f"\nsite feeds (written, median): {worst:.3f} s at worst; target < 0.5 s: {'met' if worst < 0.5 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
