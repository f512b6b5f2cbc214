"""Requests per second from the web app under uvicorn on loopback (feeds and site pages, full and
304), and the time of the static export (`publisher site build`) of a large publication.

    .venv/bin/python bench/web.py                        # 10,000 articles, 5 s per case
    .venv/bin/python bench/web.py --articles 2000 --seconds 3 --clients 2

The publication has --articles synthetic articles of about 3 KB each in 10 tags. The server runs
in its own process (one uvicorn worker, access log off, as `publisher serve` would run behind a
proxy). Each client is one keep-alive connection in its own process (the standard library's
`http.client`, lighter than httpx), sending requests back to back for --seconds:

- full:  GET with Accept-Encoding: gzip (what browsers and feed readers send);
- 304:   the same with If-None-Match set to the ETag of the first answer.

Then the export: `Publication.export_site` into an empty folder (every page, feed, archive and
asset written), and again unchanged (targets: under 20 s for 10,000 articles; no file written).
With `wrk` on the PATH (apt-get install wrk) the 304 cases are also run through it.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from publisher.clock import fixed
from publisher.config import Settings, settings_from_dict
from publisher.model import Draft
from publisher.publication import Publication
from publisher.store import Store

PARAGRAPH = (
    "The delegation’s visit – the first in a decade – was called “historic” by both sides, "
    "who signed agreements on trade, science and culture. "
)
START = datetime(2025, 1, 1, tzinfo=UTC)
TAGS = ("Politics", "Trade", "Science", "Culture", "Travel", "Sport", "Health", "Energy", "Cities", "Books")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_settings(folder: Path, port: int) -> Settings:
    return settings_from_dict(
        {
            "site": {"url": f"http://127.0.0.1:{port}", "title": "Bench"},
            "database": {"url": "sqlite:///bench.db"},
            "newsletters": {"weekly": {"title": "Bench Weekly"}},
        },
        folder / "config.toml",
    )


def publication(folder: Path, port: int, count: int) -> tuple[Settings, datetime]:
    settings = load_settings(folder, port)
    store = Store.open(settings.database.url)
    body = "\n".join(f"<p>{PARAGRAPH * 3}</p>" for _ in range(8))
    drafts = [
        Draft(
            key=f"a-{n}",
            slug=f"article-{n}",
            title=f"Article {n}",
            summary_html=f"<p>{PARAGRAPH}</p>",
            content_html=body,
            truncated=False,
            published=START + timedelta(hours=n),
            tags=(TAGS[n % len(TAGS)],),
            authors=("A. Writer",),
        )
        for n in range(count)
    ]
    store.articles.ingest(drafts, guid_authority=settings.site.domain, now=START, source="bench")
    now = START + timedelta(hours=count)
    Publication(settings, store, clock=fixed(now)).build_site()
    store.close()
    return settings, now


def run_server(folder: str, port: int, now: datetime) -> None:
    from publisher.web import make_server

    settings = load_settings(Path(folder), port)
    pub = Publication(settings, Store.open(settings.database.url), clock=fixed(now))
    make_server(pub, host="127.0.0.1", port=port, log_level="warning", access_log=False).run()


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=30).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"the server at {url} did not come up")


def hammer(url: str, headers: dict, seconds: float, expect: int, results) -> None:
    """One keep-alive connection (the standard library's client: lighter than httpx, so the
    server, not the client, is what is measured)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port)
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        connection.request("GET", parts.path, headers=headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status != expect:
            raise SystemExit(f"{url}: expected {expect}, got {answer.status}")
        count += 1
    connection.close()
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


def with_wrk(url: str, headers: dict, seconds: float) -> str:
    command = ["wrk", "-t1", "-c4", f"-d{int(seconds)}s", url]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return next(line for line in output.splitlines() if line.startswith("Requests/sec")).split()[-1]


def bench_requests(base: str, seconds: float, clients: int) -> None:
    for name, path in (("rss.xml", "/feeds/rss.xml"), ("home", "/"), ("article", "/article-42/")):
        url = f"{base}{path}"
        first = httpx.get(url, headers={"accept-encoding": "gzip"}, timeout=60)
        etag = first.headers["etag"]
        full = measure(url, {"accept-encoding": "gzip"}, seconds, clients, 200)
        not_modified = {"accept-encoding": "gzip", "if-none-match": etag}
        cached = measure(url, not_modified, seconds, clients, 304)
        line = f"  {name:<8} {len(first.content):>7} bytes: full {full:>6.0f} requests/s, 304 {cached:>6.0f} requests/s"
        if shutil.which("wrk"):
            line += f" (wrk 304: {with_wrk(url, not_modified, seconds)})"
        print(line)


def bench_export(folder: Path, port: int, now: datetime) -> None:
    settings = load_settings(folder, port)
    with Publication(settings, clock=fixed(now)) as pub:
        out = folder / "export"
        started = time.perf_counter()
        first = pub.export_site(out).export
        took = time.perf_counter() - started
        started = time.perf_counter()
        again = pub.export_site(out).export
        unchanged = time.perf_counter() - started
    assert first is not None and again is not None
    print(f"  site build, empty folder: {took:6.2f} s ({len(first.written)} files written)")
    print(
        f"  site build, unchanged:    {unchanged:6.2f} s ({len(again.written)} files written, "
        f"{again.unchanged} unchanged, {len(again.removed)} removed)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=1, help="client processes (the machine's cores are shared)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        port = free_port()
        started = time.perf_counter()
        settings, now = publication(folder, port, options.articles)
        print(
            f"{options.articles} articles stored and feeds built in {time.perf_counter() - started:.1f} s; "
            f"{options.clients} client process(es), {options.seconds:g} s per case"
        )
        server = multiprocessing.Process(target=run_server, args=(name, port, now), daemon=True)
        server.start()
        try:
            wait_until_up(f"{settings.site.url}/healthz")
            bench_requests(settings.site.url, options.seconds, options.clients)
        finally:
            server.terminate()
            server.join()
        bench_export(folder, port, now)


if __name__ == "__main__":
    main()
