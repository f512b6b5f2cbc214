"""How long one issue takes to select and render, and what personalising each recipient's copy costs.

    .venv/bin/python bench/render.py                  # 10,000 recipients, 20 render runs
    .venv/bin/python bench/render.py --recipients 100000 --repeat 50
    .venv/bin/python bench/render.py --readers 100000 --topics 5   # renders per issue with topics

A fresh SQLite store in a temporary folder holds the seed captures (../shared/seeds: 002 as of
2025-09-30, then 000 as of 2025-10-20). It times, best and median of --repeat runs:

- select:          the store reads (watermark, ledger, candidate articles) + `digest.select`;
- render:          `render.render_digest` of the 19-article issue: Jinja → MJML → mjml-python →
                   css-inline, the clip guard's attempts included, and the plain-text part; once
                   compiling the Jinja templates too (a fresh environment), once reusing them;
                   per recipient, over --recipients recipients with distinct signed links;
- personalise .eml: the whole MIME message per recipient (`message.CompiledMessage.personalise`),
                   when publisher/message.py is present.

- editions:        --readers confirmed readers (default 100,000) who each chose a random set of
                   --topics topics (5: tagged by [[tag_rules]] over the seed text; a reader with no
                   topic gets everything) are frozen into an issue's ledger; then the delivery path
                   (`dispatch.prepare_editions` + one `Editions.for_topics` lookup per ledger row)
                   renders each distinct edition once. It prints the renders (at most the distinct
                   article sets present, never one per reader), the readers skipped (nothing for
                   their topics) and the times.

Target: personalising costs microseconds per recipient; rendering happens once per edition.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from publisher.config import SourceSettings, settings_from_dict
from publisher.content import import_sources
from publisher.dispatch import prepare_editions, start_issue
from publisher.editions import issue_editions
from publisher.issues import build_issue, next_selection
from publisher.message import compile_message
from publisher.model import Subscriber
from publisher.render import render_digest
from publisher.selection import Digest, Skipped
from publisher.store import Store
from publisher.templates import environment

SEEDS = Path(__file__).resolve().parent.parent.parent / "shared" / "seeds"
SLOT = datetime(2025, 10, 6, 8, tzinfo=UTC)


def timed(function: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    runs, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        runs.append(time.perf_counter() - start)
    return min(runs), statistics.median(runs), result


def recipients(count: int) -> list[dict[str, str]]:
    return [
        {
            "email": f"reader{n}@example{n % 200}.org",
            "name": f"Reader {n}",
            "unsubscribe_url": f"https://news.example.org/unsubscribe/{n:08d}.{'x' * 27}",
            "preferences_url": f"https://news.example.org/preferences/{n:08d}.{'y' * 27}",
        }
        for n in range(count)
    ]


TOPICS = {  # name: words that tag an article with it
    "asia": ["Laos", "Vietnam", "Central Asia", "DPRK", "Korea", "Cambodia", "Mongolia"],
    "americas": ["Cuba", "Lula", "Brazil", "Caribbean", "Latin America"],
    "climate": ["climate", "low-carbon", "green"],
    "europe": ["Britain", "NATO", "Yugoslavia", "Europe", "Serbia"],
    "africa": ["Africa", "African", "Zimbabwe", "Tongogara"],
}


def editions(folder: str, readers: int, topics: int) -> None:
    """Freeze `readers` with random topic choices into one issue, then find every row's edition."""
    names = list(TOPICS)[:topics] + [f"extra{n}" for n in range(max(0, topics - len(TOPICS)))]
    settings = settings_from_dict(
        {
            "site": {"url": "https://news.example.org", "postal_address": "1 Bench Road"},
            "database": {"url": f"sqlite:///{folder}/editions.db"},
            "newsletters": {"weekly": {"title": "The Weekly", "lookback": "7d", "sections": "topics"}},
            "topics": [{"name": name, "tags": [name]} for name in names],
            "tag_rules": [{"tag": name, "match": TOPICS.get(name, [name])} for name in names],
        },
        Path(folder) / "config.toml",
    )
    store = Store.open(settings.database.url)
    as_of = datetime(2025, 9, 30, tzinfo=UTC)
    seed = SEEDS / "002_3b97ff2f221fe4bf.txt"
    import_sources(store, settings, [SourceSettings(str(seed), "textpage")], as_of=as_of, now=as_of)
    rng = random.Random(16)
    people = [
        Subscriber(
            email=f"reader{n}@example{n % 200}.org",
            status="confirmed",
            newsletters=("weekly",),
            topics=tuple(name for name in names if rng.random() < 0.3),
        )
        for n in range(readers)
    ]
    start = time.perf_counter()
    for first in range(0, len(people), 5000):  # the list import's batched path
        store.subscribers.import_batch(people[first : first + 5000], as_of)
    stored = time.perf_counter()
    issue = build_issue(store, settings, "weekly", SLOT, SLOT)
    assert not isinstance(issue, Skipped)
    frozen = start_issue(store, issue, SLOT, settings.newsletter("weekly"))
    ready = time.perf_counter()
    combos = len({json.dumps(list(p.topics)) for p in people})
    found = issue_editions(store, settings, issue)
    skipped = prepare_editions(store, issue, found, SLOT)
    prepared = time.perf_counter()
    sets = len(store.deliveries.topic_sets(issue.id))
    rows = [row["topics"] for row in store.deliveries.rows(issue.id) if row["state"] == "pending"]
    looked = time.perf_counter()
    for raw in rows:  # what the composer does for each leased row
        found.for_topics(raw)
    done = time.perf_counter()
    print(
        f"editions     {readers:,} readers, {len(names)} topics, {combos} topic choices present, "
        f"{len(issue.article_ids) + len(issue.overflow_ids)} articles in the issue:"
    )
    print(
        f"             renders {found.renders} (distinct editions), skipped {skipped} readers (nothing in their topics)"
    )
    print(
        f"             store {readers:,} readers {stored - start:6.2f} s, freeze {frozen:,} {ready - stored:6.2f} s; "
        f"who gets nothing, over {sets} topic sets {prepared - ready:6.2f} s; "
        f"lookups for {len(rows):,} rows, the {found.renders} renders included {(done - looked) * 1e3:7.1f} ms"
    )
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--readers", type=int, default=100_000, help="readers with topics (0: skip)")
    parser.add_argument("--topics", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.readers:
            editions(folder, args.readers, args.topics)
        settings = settings_from_dict(
            {
                "site": {"url": "https://news.example.org"},
                "database": {"url": f"sqlite:///{folder}/p.db"},
                "newsletters": {"weekly": {"title": "The Weekly", "lookback": "7d"}},
            },
            Path(folder) / "config.toml",
        )
        store = Store.open(settings.database.url)
        seed = SEEDS / "002_3b97ff2f221fe4bf.txt"
        as_of = datetime(2025, 9, 30, tzinfo=UTC)
        import_sources(store, settings, [SourceSettings(str(seed), "textpage")], as_of=as_of, now=as_of)
        newsletter = settings.newsletter("weekly")

        best, median, chosen = timed(lambda: next_selection(store, newsletter, SLOT, SLOT), args.repeat)
        print(f"select       {len(chosen.articles)} articles: best {best * 1e3:7.2f} ms, median {median * 1e3:7.2f} ms")
        digest = Digest("weekly", 1, SLOT, chosen.articles, chosen.overflow, chosen.since)
        best, median, rendered = timed(
            lambda: render_digest(digest, settings=settings, newsletter=newsletter), args.repeat
        )
        print(
            f"render       html {len(rendered.html.encode()):,} B, text {len(rendered.text.encode()):,} B: "
            f"best {best * 1e3:7.2f} ms, median {median * 1e3:7.2f} ms  (trimmed: {', '.join(rendered.trimmed) or '-'})"
        )
        env = environment(settings)
        best, median, _ = timed(
            lambda: render_digest(digest, settings=settings, newsletter=newsletter, env=env), args.repeat
        )
        print(f"render, templates already compiled:      best {best * 1e3:7.2f} ms, median {median * 1e3:7.2f} ms")

        people = recipients(args.recipients)
        # the one personaliser: the production path, a whole message per recipient
        if people:
            compiled = compile_message(rendered, settings=settings, newsletter=newsletter, issue_number=1)
            start = time.perf_counter()
            for n, values in enumerate(people):
                compiled.personalise(subscriber_id=n, message_id=f"<{n}@news.example.org>", date=SLOT, **values)
            elapsed = time.perf_counter() - start
            print(
                f"personalise  {len(people):,} complete .eml messages: {elapsed * 1e3:8.1f} ms total, "
                f"{elapsed / len(people) * 1e6:6.1f} µs per recipient"
            )
        store.close()


if __name__ == "__main__":
    main()
