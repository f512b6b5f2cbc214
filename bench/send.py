"""How fast `publisher digest send` sends an issue, against Postfix's own load generator, and at what memory.

    .venv/bin/python bench/send.py                          # the issue's table: 20,000 recipients at one
                                                            # domain and over 200, SQLite and PostgreSQL;
                                                            # then RSS at 10,000 vs 100,000
    .venv/bin/python bench/send.py --cases sqlite:1 --sizes 20000 --repeat 3
    .venv/bin/python bench/send.py --memory-only

Needs Debian's `postfix` package for /usr/sbin/smtp-sink and /usr/sbin/smtp-source (the Postfix
daemon is never started) and, for the PostgreSQL cases, PostgreSQL at PUBLISHER_TEST_POSTGRES
(default postgresql+psycopg://postgres@127.0.0.1:5432/test; a throw-away schema is used). For
each case:

1. a fresh store (SQLite file, or a new PostgreSQL schema) holds the seed articles (both captures
   in ../shared/seeds, else tests/data), one approved issue built from them by the real digest
   code, and N confirmed subscribers at 1 or 200 receiving domains;
2. `publisher digest send weekly --json` runs as a user runs it (a new process: start-up, freezing
   the audience, rendering, personalisation, the ledger and the pooled SMTP transport) against
   `smtp-sink` on loopback; its wall time and peak RSS (the kernel's, for the whole process) are
   taken;
3. `smtp-source` sends the same number of messages of the same size over the same number of
   connections to the same sink, right after it.

It prints messages per second for both and the ratio (target ≥ 0.75; with --repeat, the median
run and every ratio: this machine is shared, so single runs vary), and the peak RSS of 100,000
recipients against 10,000 (target: within 10 %).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from publisher.config import SourceSettings, load_settings  # noqa: E402
from publisher.store import Store  # noqa: E402
from publisher.store.schema import subscribers, subscriptions  # noqa: E402

SEEDS = ROOT.parent / "shared" / "seeds"
SINK = Path("/usr/sbin/smtp-sink")
SOURCE = Path("/usr/sbin/smtp-source")
NOW = datetime(2025, 10, 21, 8, 0, tzinfo=UTC)
POSTGRES = os.environ.get("PUBLISHER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SECRET = "bench-secret-key-3f7a1c9e5b2d8f4a6c0e7b3d9a5f1c82"  # noqa: S105 - the throw-away store's key


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Case:
    """One store to send from: SQLite in a temporary folder, or a throw-away PostgreSQL schema."""

    def __init__(self, database: str, folder: Path) -> None:
        self.database, self.folder = database, folder
        self.schema = f"bench_{uuid.uuid4().hex[:10]}"
        if database == "sqlite":
            self.url = f"sqlite:///{folder / 'publisher.db'}"
        else:
            self.url = f"{POSTGRES}?options=-csearch_path%3D{self.schema}"
            with sqlalchemy.create_engine(POSTGRES).begin() as connection:
                connection.execute(sqlalchemy.text(f"CREATE SCHEMA {self.schema}"))

    def drop(self) -> None:
        if self.database != "sqlite":
            with sqlalchemy.create_engine(POSTGRES).begin() as connection:
                connection.execute(sqlalchemy.text(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE"))
        shutil.rmtree(self.folder, ignore_errors=True)


def write_config(case: Case, port: int, args: argparse.Namespace) -> Path:
    path = case.folder / "config.toml"
    path.write_text(f"""
[site]
url = "https://news.example.org"
title = "The Example Review"
postal_address = "1 Example Road"
[database]
url = "{case.url}"
[newsletters.weekly]
title = "The Weekly"
from = "The Weekly <weekly@news.example.org>"
lookback = "60d"
max_articles = 12
[delivery]
transport = "smtp"
batch_size = {args.batch}
lease = "10m"
[delivery.smtp]
host = "127.0.0.1"
port = {port}
connections = {args.connections}
timeout = 30
""")
    return path


def prepare(config: Path, size: int, domains: int) -> None:
    """The seed articles, one approved issue and `size` confirmed subscribers over `domains` domains."""
    from publisher.content import import_sources
    from publisher.issues import build_issue

    os.environ.setdefault("PUBLISHER_SECRET_KEY", SECRET)
    settings = load_settings(config)
    store = Store.open(settings.database.url)
    captures = sorted(SEEDS.glob("*.txt")) or sorted((ROOT / "tests" / "data").glob("capture_*.txt"))
    for number, capture in enumerate(captures):
        import_sources(
            store,
            settings,
            [SourceSettings(str(capture), "textpage")],
            as_of=NOW - timedelta(days=len(captures) - number),
            now=NOW,
        )
    issue = build_issue(store, settings, "weekly", NOW, NOW, force=True)
    if not hasattr(issue, "id"):
        raise SystemExit(f"no issue built from the seeds: {issue}")
    with store.engine.begin() as connection:
        for start in range(0, size, 5000):
            ids = range(start, min(start + 5000, size))
            connection.execute(
                insert(subscribers),
                [
                    {
                        "id": i + 1,
                        "email": f"reader{i}@d{i % domains}.example",
                        "name": f"Reader {i}",
                        "status": "confirmed",
                        "source": "bench",
                        "topics": "[]",
                        "bounce_count": 0,
                        "created_at": NOW,
                        "updated_at": NOW,
                        "confirm_nonce": "",
                        "consent_text": "",
                    }
                    for i in ids
                ],
            )
            connection.execute(
                insert(subscriptions),
                [{"subscriber_id": i + 1, "newsletter": "weekly", "created_at": NOW} for i in ids],
            )
        if connection.dialect.name == "postgresql":
            connection.execute(sqlalchemy.text("SELECT setval('subscribers_id_seq', :n)"), {"n": size + 1})
    store.close()


def message_size(config: Path) -> int:
    """The size of one personalised message of the issue."""
    from publisher.dispatch import composer, rendered_issue
    from publisher.message import compile_message
    from publisher.store.deliveries import Leased

    settings = load_settings(config)
    store = Store.open(settings.database.url)
    issue = store.issues.latest("weekly")
    newsletter = settings.newsletter("weekly")
    compiled = compile_message(
        rendered_issue(store, settings, issue), settings=settings, newsletter=newsletter, issue_number=issue.number
    )
    store.close()
    compose = composer(compiled, settings, newsletter, issue)
    return len(compose(Leased(1, "reader1@d1.example", "Reader 1", 1, NOW, "t"), NOW).data)


def digest_send(config: Path) -> dict:
    """`publisher digest send weekly --json` as a user runs it: wall time, peak RSS, its JSON."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "publisher", "--config", str(config), "digest", "send", "weekly", "--json"],
        env={**os.environ, "PUBLISHER_SECRET_KEY": SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out = child.stdout.read() if child.stdout else b""
    err = child.stderr.read() if child.stderr else b""
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"digest send failed ({child.returncode}): {err.decode()[-2000:]}")
    return {"elapsed": elapsed, "peak_kb": usage.ru_maxrss, **json.loads(out)}


def smtp_source(port: int, count: int, size: int, connections: int, domains: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            str(SOURCE),
            "-s",
            str(connections),
            "-l",
            str(size),
            "-m",
            str(count),
            "-f",
            "weekly@news.example.org",
            "-t",
            "reader@d0.example",
            f"127.0.0.1:{port}",
        ],
        check=True,
    )
    return time.perf_counter() - started


def measure(database: str, size: int, domains: int, port: int, args: argparse.Namespace) -> tuple[dict, float, int]:
    """One publisher run on a freshly prepared store, then smtp-source right after it."""
    case = Case(database, Path(tempfile.mkdtemp(prefix=f"bench-send-{database}-{size}-")))
    try:
        config = write_config(case, port, args)
        prepare(config, size, domains)
        octets = message_size(config)
        ours = digest_send(config)
    finally:
        case.drop()
    return ours, smtp_source(port, size, octets, args.connections, domains), octets


def report(label: str, size: int, runs: list[tuple[dict, float, int]], args: argparse.Namespace) -> dict:
    ratios = sorted(size / ours["elapsed"] / (size / theirs) for ours, theirs, _ in runs)
    middle = ratios[(len(ratios) - 1) // 2]  # the lower median when the count is even
    ours, theirs, octets = runs[[size / o["elapsed"] / (size / t) for o, t, _ in runs].index(middle)]
    rate, reference = size / ours["elapsed"], size / theirs
    every = f"; every run: {', '.join(f'{r:.2f}' for r in ratios)}" if len(runs) > 1 else ""
    print(
        f"| {label} | {size:,} | {octets:,} | {rate:,.0f}/s ({ours['elapsed']:.1f} s) | {reference:,.0f}/s "
        f"({theirs:.1f} s) | {rate / reference:.2f}{every} | {ours['peak_kb'] / 1024:.0f} MiB | "
        f"{ours['delivered']:,} delivered, {ours['failed']} failed, {ours['deferred']} deferred |"
    )
    sys.stdout.flush()
    return ours


def run(args: argparse.Namespace) -> None:
    for tool in (SINK, SOURCE):
        if not tool.exists():
            raise SystemExit(f"{tool} is missing: install Debian's postfix package (do not start Postfix)")
    port = free_port()
    sink = subprocess.Popen([str(SINK), "-u", "nobody", f"127.0.0.1:{port}", "1024"])
    time.sleep(0.3)
    print(f"{args.connections} connections, batch {args.batch}; `publisher digest send` vs smtp-source")
    print("| case | recipients | octets | publisher | smtp-source | ratio | peak RSS | outcome |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        if not args.memory_only:
            for case in args.cases:
                database, _, domains = case.partition(":")
                label = (
                    f"{'SQLite' if database == 'sqlite' else 'PostgreSQL'}, {domains} domain{'s' * (domains != '1')}"
                )
                for size in args.sizes:
                    runs = [measure(database, size, int(domains), port, args) for _ in range(args.repeat)]
                    report(label, size, runs, args)
        if args.memory:
            peaks = []
            for size in args.memory:
                ours = report("SQLite, 200 domains", size, [measure("sqlite", size, 200, port, args)], args)
                peaks.append(ours["peak_kb"])
            print(
                f"peak RSS of the whole command, {args.memory[-1]:,} vs {args.memory[0]:,} recipients: "
                f"{peaks[-1] / peaks[0]:.3f}× (target ≤ 1.10)"
            )
    finally:
        sink.terminate()
        sink.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["sqlite:1", "sqlite:200", "postgresql:1", "postgresql:200"],
        help="DATABASE:DOMAINS pairs (sqlite or postgresql; receiving domains of the audience).",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000])
    parser.add_argument("--memory", type=int, nargs="*", default=[10_000, 100_000], help="Sizes for the RSS check.")
    parser.add_argument("--memory-only", action="store_true", help="Only the RSS check.")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="Alternate publisher and smtp-source this many times per case; report the median ratio.",
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()
