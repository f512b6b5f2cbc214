"""Feed requests per second from the web app under uvicorn on loopback, with and without If-None-Match.

    .venv/bin/python bench/web.py                  # 5 s per case
    .venv/bin/python bench/web.py --seconds 10 --clients 2

The server runs in its own process (one uvicorn worker, access log off, as `publisher serve`
would run behind a proxy); the feeds are built by `publisher.feeds.build_feeds` from 50 synthetic
articles of about 3 KB each, so rss.xml is the size a real site serves. Each client is a
keep-alive `httpx.Client` in its own process, sending requests back to back for --seconds:

- full, gzip:      GET /feeds/rss.xml with Accept-Encoding: gzip (what feed readers send);
- full, identity:  the same without compression;
- 304:             GET with If-None-Match set to the ETag of the first answer.

With `wrk` on the PATH (apt-get install wrk) the same three cases are also run through it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from publisher.config import settings_from_dict
from publisher.feeds import build_feeds
from publisher.model import Draft
from publisher.store import Store

PARAGRAPH = (
    "The delegation’s visit – the first in a decade – was called “historic” by both sides, "
    "who signed agreements on trade, science and culture. "
)
START = datetime(2025, 1, 1, tzinfo=UTC)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def publication(folder: Path, port: int):
    settings = settings_from_dict(
        {"site": {"url": f"http://127.0.0.1:{port}"}, "database": {"url": "sqlite:///bench.db"}}, folder / "config.toml"
    )
    store = Store.open(settings.database.url)
    body = "\n".join(f"<p>{PARAGRAPH * 3}</p>" for _ in range(8))
    drafts = [
        Draft(
            key=f"a-{n}",
            slug=f"a-{n}",
            title=f"Article {n}",
            summary_html=f"<p>{PARAGRAPH}</p>",
            content_html=body,
            truncated=False,
            published=START + timedelta(hours=n),
        )
        for n in range(50)
    ]
    store.articles.ingest(
        drafts, site_url=settings.site.url, guid_authority=settings.site.domain, now=START, source="bench"
    )
    build_feeds(store, settings)
    store.close()
    return settings


def run_server(folder: str, port: int) -> None:
    from publisher.web import make_server

    settings = settings_from_dict(
        {"site": {"url": f"http://127.0.0.1:{port}"}, "database": {"url": "sqlite:///bench.db"}},
        Path(folder) / "config.toml",
    )
    make_server(
        settings, Store.open(settings.database.url), host="127.0.0.1", port=port, log_level="warning", access_log=False
    ).run()


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"the server at {url} did not come up")


def hammer(url: str, headers: dict, seconds: float, expect: int, results) -> None:
    count = 0
    with httpx.Client(headers=headers) as client:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            answer = client.get(url)
            if answer.status_code != expect:
                raise SystemExit(f"{url}: expected {expect}, got {answer.status_code}")
            count += 1
    results.put(count)


def measure(url: str, headers: dict, seconds: float, clients: int, expect: int) -> float:
    results = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=hammer, args=(url, headers, seconds, expect, results)) for _ in range(clients)
    ]
    for worker in workers:
        worker.start()
    total = sum(results.get() for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


def with_wrk(url: str, cases: list[tuple[str, dict, int]], seconds: float) -> None:
    for name, headers, _ in cases:
        command = ["wrk", "-t1", "-c4", f"-d{int(seconds)}s", url]
        for key, value in headers.items():
            command += ["-H", f"{key}: {value}"]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rate = next(line for line in output.splitlines() if line.startswith("Requests/sec"))
        print(f"  wrk {name:<16} {rate.split()[-1]:>10} requests/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=1, help="client processes (the machine's cores are shared)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        settings = publication(Path(folder), port)
        size = (settings.feeds.dir / "rss.xml").stat().st_size
        server = multiprocessing.Process(target=run_server, args=(folder, port), daemon=True)
        server.start()
        try:
            url = f"{settings.site.url}/feeds/rss.xml"
            wait_until_up(url)
            first = httpx.get(url, headers={"accept-encoding": "gzip"})
            etag = first.headers["etag"]
            print(
                f"rss.xml: {size} bytes, {first.num_bytes_downloaded} gzipped, ETag {etag}; "
                f"{options.clients} client process(es), {options.seconds:g} s per case"
            )
            cases = [
                ("full, gzip", {"accept-encoding": "gzip"}, 200),
                ("full, identity", {"accept-encoding": "identity"}, 200),
                ("304", {"accept-encoding": "gzip", "if-none-match": etag}, 304),
            ]
            for name, headers, expect in cases:
                rate = measure(url, headers, options.seconds, options.clients, expect)
                print(f"  httpx {name:<16} {rate:>8.0f} requests/s")
            if shutil.which("wrk"):
                with_wrk(url, cases, options.seconds)
        finally:
            server.terminate()
            server.join()


if __name__ == "__main__":
    main()
