"""How long one issue takes to select and render, and what personalising each recipient's copy costs.

    .venv/bin/python bench/render.py                  # 10,000 recipients, 20 render runs
    .venv/bin/python bench/render.py --recipients 100000 --repeat 50

A fresh SQLite store in a temporary folder holds the seed captures (../shared/seeds: 002 as of
2025-09-30, then 000 as of 2025-10-20). It times, best and median of --repeat runs:

- select:          the store reads (watermark, ledger, candidate articles) + `digest.select`;
- render:          `render.render_digest` of the 19-article issue: Jinja → MJML → mjml-python →
                   css-inline, the clip guard's attempts included, and the plain-text part; once
                   compiling the Jinja templates too (a fresh environment), once reusing them;
                   per recipient, over --recipients recipients with distinct signed links;
- personalise .eml: the whole MIME message per recipient (`message.CompiledMessage.personalise`),
                   when publisher/message.py is present.

Target: personalising costs microseconds per recipient; rendering happens once per issue.
"""

from __future__ import annotations

import argparse
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
from publisher.issues import next_selection
from publisher.message import compile_message
from publisher.render import render_digest
from publisher.selection import Digest
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
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
