"""How fast mail that comes back is read: messages parsed per second, and parsed-and-recorded.

    .venv/bin/python bench/inbound.py                 # 20 rounds over the corpus
    .venv/bin/python bench/inbound.py --rounds 100

The corpus is tests/data/inbound/ (DSNs from Postfix, Gmail, Office 365; Exim, Exchange, Gmail and
Yahoo plain-text bounces; an ARF complaint; auto-replies; a mailto unsubscribe; a human reply).

- parsed:   `publisher.inbound.parse.parse` alone (pure, no I/O), over every sample;
- recorded: `publisher.feedback.receive` into a fresh SQLite store: parse, verify the VERP token,
            record the message and act on it, one transaction each (each message made unique so
            that none is skipped as already recorded).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from publisher import verp
from publisher.config import settings_from_dict
from publisher.feedback import receive
from publisher.inbound.parse import parse
from publisher.model import Subscriber
from publisher.store import Store

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "inbound"
NOW = datetime(2025, 10, 20, 12, 0, tzinfo=UTC)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--rounds", type=int, default=20)
    rounds = options.parse_args().rounds
    samples = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]

    started = time.perf_counter()
    for _ in range(rounds):
        for raw in samples:
            parse(raw)
    parsed = rounds * len(samples) / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / ".publisher-secret").write_text(secrets.token_urlsafe(32) + "\n")
        settings = settings_from_dict(
            {"database": {"url": f"sqlite:///{folder}/bench.db"}, "delivery": {"return_path": "bounces@example.org"}},
            Path(folder) / "config.toml",
        )
        store = Store.open(settings.database.url)
        count = rounds * len(samples)
        people = [
            Subscriber(email=f"r{n}@example.com", status="confirmed", newsletters=("weekly",)) for n in range(count)
        ]
        store.subscribers.upsert_many(people, NOW)
        messages = []
        for n, raw in enumerate(samples * rounds):
            token = verp.make_token(settings.secret_keys, 1, n + 1)
            messages.append(
                raw.replace(b"a" * 29, token.encode()).replace(b"alice@example.com", f"r{n}@example.com".encode())
            )
        started = time.perf_counter()
        for raw in messages:
            receive(store, settings, raw, NOW, source="file")
        recorded = count / (time.perf_counter() - started)
        store.close()

    print(f"inbound: {len(samples)} samples x {rounds} rounds")
    print(f"parsed:   {parsed:,.0f} messages/s")
    print(f"recorded: {recorded:,.0f} messages/s (parse + verify + record + act, SQLite, one transaction each)")


if __name__ == "__main__":
    main()
