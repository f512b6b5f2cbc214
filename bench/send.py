"""How fast an issue goes out through SMTP, against Postfix's own load generator, and at what memory.

    .venv/bin/python bench/send.py                          # 10,000 and 100,000 recipients
    .venv/bin/python bench/send.py --sizes 10000 --connections 4 --batch 100
    .venv/bin/python bench/send.py --sizes 10000 --repeat 5   # median of 5 alternating runs

Needs Debian's `postfix` package for /usr/sbin/smtp-sink and /usr/sbin/smtp-source (the Postfix
daemon is never started). For each audience size:

1. a fresh SQLite store holds the seed articles (both captures in ../shared/seeds), one issue
   built and rendered from them by the real digest code, and N confirmed subscribers spread over
   200 receiving domains;
2. a child process runs `dispatch.deliver_issue` (ledger, leases, personalisation, signed links,
   the pooled SMTP transport) against `smtp-sink` on loopback and reports its wall time and the
   highest RSS sampled while sending (setting up the audience is not counted: it happens in
   another process);
3. `smtp-source` sends the same number of messages of the same size over the same number of
   connections to the same sink.

It prints messages per second for both, the ratio (target ≥ 0.75; with --repeat, the median run
and every ratio: this machine is shared, so single runs vary), the highest RSS while sending per
size (target: 100,000 within 10% of 10,000), and the per-message cost of personalising with and
without DKIM.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from publisher.config import SourceSettings, settings_from_dict  # noqa: E402
from publisher.store import Store  # noqa: E402
from publisher.store.schema import subscribers, subscriptions  # noqa: E402

SEEDS = ROOT.parent / "shared" / "seeds"
SINK = Path("/usr/sbin/smtp-sink")
SOURCE = Path("/usr/sbin/smtp-source")
NOW = datetime(2025, 10, 21, 8, 0, tzinfo=UTC)
DOMAINS = 200


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config(folder: Path, port: int, args: argparse.Namespace) -> dict:
    return {
        "site": {"url": "https://news.example.org", "title": "The Example Review", "postal_address": "1 Example Road"},
        "database": {"url": f"sqlite:///{folder / 'publisher.db'}"},
        "newsletters": {
            "weekly": {
                "title": "The Weekly",
                "from": "The Weekly <weekly@news.example.org>",
                "lookback": "60d",
                "max_articles": 12,
            }
        },
        "delivery": {
            "transport": "smtp",
            "batch_size": args.batch,
            "lease": "10m",
            "smtp": {
                "host": "127.0.0.1",
                "port": port,
                "connections": args.connections,
                "per_domain_connections": args.connections,
                "timeout": 30,
            },
        },
    }


def settings_for(folder: Path, port: int, args: argparse.Namespace):
    os.environ.setdefault("PUBLISHER_SECRET_KEY", "bench-secret-key-3f7a1c9e5b2d8f4a6c0e7b3d9a5f1c82")
    return settings_from_dict(config(folder, port, args), folder / "config.toml")


def prepare(folder: Path, size: int, port: int, args: argparse.Namespace) -> None:
    """A store with the seed articles, one approved issue and `size` confirmed subscribers."""
    from publisher.content import import_sources
    from publisher.issues import build_issue

    settings = settings_for(folder, port, args)
    store = Store.open(settings.database.url)
    captures = sorted(SEEDS.glob("*.txt"))
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
                        "email": f"reader{i}@d{i % DOMAINS}.example",
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
    store.close()


def worker(folder: Path, port: int, args: argparse.Namespace) -> None:
    """Child process: send the issue; print wall time, outcome counts and peak RSS as JSON."""
    from publisher.dispatch import deliver_issue

    settings = settings_for(folder, port, args)
    store = Store.open(settings.database.url)
    issue = store.issues.latest("weekly")
    before = rss_kb()
    sampler = RssSampler()
    sampler.start()
    started = time.perf_counter()
    report = deliver_issue(store, settings, issue, NOW)
    elapsed = time.perf_counter() - started
    sampler.stop()
    print(
        json.dumps(
            {
                "elapsed": elapsed,
                "delivered": report.get("delivered"),
                "failed": report.get("failed"),
                "deferred": report.get("deferred"),
                "before_kb": before,
                "send_peak_kb": sampler.peak,
                "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


def rss_kb() -> int:
    """The resident set size now (Linux), in KiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


class RssSampler(threading.Thread):
    """The highest RSS seen while sending, sampled every 10 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss_kb()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.01):
            self.peak = max(self.peak, rss_kb())

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        self.peak = max(self.peak, rss_kb())


def message_size(folder: Path, port: int, args: argparse.Namespace) -> tuple[int, float, float | None]:
    """The size of one personalised message, and µs per message to personalise it (and DKIM-sign it)."""
    from publisher.dispatch import composer, rendered_issue
    from publisher.message import compile_message
    from publisher.store.deliveries import Leased

    settings = settings_for(folder, port, args)
    store = Store.open(settings.database.url)
    issue = store.issues.latest("weekly")
    newsletter = settings.newsletter("weekly")
    rendered = rendered_issue(store, settings, issue)
    store.close()
    costs = []
    for signer in (None, dkim_signer(folder)):
        if signer is None and costs:
            costs.append(None)
            continue
        compiled = compile_message(
            rendered, settings=settings, newsletter=newsletter, issue_number=issue.number, signer=signer
        )
        compose = composer(compiled, settings, newsletter, issue)
        rounds = 2000 if signer is None else 300
        started = time.perf_counter()
        for i in range(rounds):
            data = compose(Leased(i + 1, f"reader{i}@d{i % DOMAINS}.example", f"Reader {i}", 1, NOW, "t"), NOW).data
        costs.append((time.perf_counter() - started) / rounds * 1e6)
        if signer is None:
            size = len(data)
    return size, costs[0], costs[1]


def dkim_signer(folder: Path):
    """A throwaway 2048-bit key, if openssl is there (dkimpy signs with it)."""
    from publisher.message import Signer

    key = folder / "dkim.pem"
    if not key.exists():
        made = subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=False, capture_output=True)
        if made.returncode:
            return None
    return Signer(b"bench", b"news.example.org", key.read_bytes())


def smtp_source(port: int, count: int, size: int, connections: int) -> float:
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


def run(args: argparse.Namespace) -> None:
    for tool in (SINK, SOURCE):
        if not tool.exists():
            raise SystemExit(f"{tool} is missing: install Debian's postfix package (do not start Postfix)")
    port = free_port()
    sink = subprocess.Popen([str(SINK), "-u", "nobody", f"127.0.0.1:{port}", "1024"])
    time.sleep(0.3)
    rows = []
    try:
        for size in args.sizes:
            folder = Path(tempfile.mkdtemp(prefix=f"bench-send-{size}-"))
            try:
                prepare(folder, size, port, args)
                octets, plain_us, dkim_us = message_size(folder, port, args)
                runs = [measure(folder, size, octets, port, args) for _ in range(args.repeat)]
                rows.append((size, octets, runs, plain_us, dkim_us))
                report(*rows[-1], connections=args.connections, batch=args.batch)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        sink.terminate()
        sink.wait()
    if len(rows) > 1:
        small, large = (max(ours["send_peak_kb"] for ours, _ in row[2]) for row in (rows[0], rows[-1]))
        print(f"RSS while sending, {rows[-1][0]:,} vs {rows[0][0]:,} recipients: {large / small:.3f}× (target ≤ 1.10)")


def measure(folder: Path, size: int, octets: int, port: int, args: argparse.Namespace) -> tuple[dict, float]:
    """One publisher run on a fresh copy of the prepared store, then smtp-source right after it."""
    copy = Path(tempfile.mkdtemp(prefix="bench-send-run-"))
    try:
        shutil.copy(folder / "publisher.db", copy / "publisher.db")
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                str(copy),
                "--port",
                str(port),
                "--connections",
                str(args.connections),
                "--batch",
                str(args.batch),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    return json.loads(child.stdout.strip().splitlines()[-1]), smtp_source(port, size, octets, args.connections)


def report(
    size: int,
    octets: int,
    runs: list[tuple[dict, float]],
    plain_us: float,
    dkim_us: float | None,
    *,
    connections: int,
    batch: int,
) -> None:
    ratios = sorted((size / ours["elapsed"]) / (size / theirs) for ours, theirs in runs)
    middle = ratios[(len(ratios) - 1) // 2]  # the lower median when the count is even
    ours, theirs = runs[[(size / o["elapsed"]) / (size / t) for o, t in runs].index(middle)]
    rate, reference = size / ours["elapsed"], size / theirs
    print(f"{size:,} recipients, {octets:,}-octet messages, {connections} connections, batch {batch}")
    print(
        f"  publisher:   {rate:8.0f} msg/s  ({ours['elapsed']:.1f} s; delivered {ours['delivered']:,}, "
        f"failed {ours['failed']}, deferred {ours['deferred']})"
    )
    print(f"  smtp-source: {reference:8.0f} msg/s  ({theirs:.1f} s)")
    every = f"; every run: {', '.join(f'{r:.2f}' for r in ratios)}" if len(runs) > 1 else ""
    print(f"  ratio:       {rate / reference:8.2f}   (target ≥ 0.75{every})")
    print(
        f"  RSS:         {ours['send_peak_kb'] / 1024:8.1f} MiB at most while sending "
        f"({(ours['send_peak_kb'] - ours['before_kb']) / 1024:+.1f} MiB over the {ours['before_kb'] / 1024:.1f} MiB "
        f"before); process peak {ours['peak_kb'] / 1024:.1f} MiB"
    )
    signed = f"{dkim_us:.0f} µs with DKIM (rsa-sha256, 2048 bits)" if dkim_us else "DKIM not measured (no openssl)"
    print(f"  personalise: {plain_us:8.0f} µs/message; {signed}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="Alternate publisher and smtp-source this many times per size; report the median ratio.",
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.port, args)
    else:
        run(args)


if __name__ == "__main__":
    main()
