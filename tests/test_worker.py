"""`publisher worker`: delivery-only processes sharing one issue on PostgreSQL, one of them killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime

from aiosmtpd.controller import Controller
from click.testing import CliRunner
from sink import free_port
from sqlalchemy import insert

from publisher import dispatch
from publisher.cli import cli
from publisher.config import load_settings
from publisher.lock import make_worker_lock
from publisher.store import Store
from publisher.store.schema import subscribers, subscriptions

RECIPIENTS = 30_000
WORKERS = 3
CONNECTIONS = 2  # per worker
SECRET = "worker-test-9d3f6a1c8e2b7d4f0a5c9e3b1d7f2a6c"


class CountingSink:
    """Counts each recipient's messages (keeping no bodies: 30,000 digests would not fit)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: Counter[str] = Counter()
        self.total = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        with self.lock:
            self.received.update(envelope.rcpt_tos)
            self.total += 1
        return "250 OK"


@contextmanager
def counting_sink():
    sink = CountingSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield sink, controller.port
    finally:
        controller.stop()


def write_config(folder, database_url: str, port: int):
    path = folder / "config.toml"
    path.write_text(f"""
[site]
postal_address = "1 Example Road, Testville"
url = "https://news.example.org"
[database]
url = "{database_url}"
[newsletters.weekly]
title = "Weekly"
from = "Weekly <weekly@news.example.org>"
lookback = "3650d"
[delivery]
transport = "smtp"
batch_size = 200
lease = "10m"
[delivery.smtp]
host = "127.0.0.1"
port = {port}
connections = {CONNECTIONS}
timeout = 30
""")
    return path


def publisher(path, *args: str) -> None:
    result = CliRunner().invoke(cli, ["--config", str(path), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def start_issue(path) -> tuple[Store, int, list[str]]:
    """RECIPIENTS readers and one short issue started (audience frozen), as `publisher run` leaves it."""
    now = datetime.now(UTC)
    article = path.parent / "note.md"
    article.write_text(f"---\ntitle: A short note\ndate: {now:%Y-%m-%d}\n---\nOne paragraph for everyone.\n")
    publisher(path, "import", str(article), "--format", "markdown")
    emails = [f"r{i}@d{i % 200}.example" for i in range(RECIPIENTS)]
    store = Store.open(load_settings(path).database.url)
    with store.engine.begin() as connection:  # in bulk: 30,000 upserts one by one take minutes here
        connection.execute(
            insert(subscribers),
            [
                {
                    "id": i + 1,
                    "email": email,
                    "name": f"R {i}",
                    "status": "confirmed",
                    "source": "test",
                    "topics": "[]",
                    "bounce_count": 0,
                    "created_at": now,
                    "updated_at": now,
                    "confirm_nonce": "",
                    "consent_text": "",
                }
                for i, email in enumerate(emails)
            ],
        )
        connection.execute(
            insert(subscriptions),
            [{"subscriber_id": i + 1, "newsletter": "weekly", "created_at": now} for i in range(RECIPIENTS)],
        )
    publisher(path, "digest", "build", "weekly")
    issue = store.issues.latest("weekly")
    assert dispatch.start_issue(store, issue, now) == RECIPIENTS
    return store, issue.id, emails


def wait_for(condition, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def test_three_workers_send_one_issue_and_take_over_a_killed_ones_rows_at_once(
    tmp_path, postgres_url, monkeypatch, capsys
):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", SECRET)
    with counting_sink() as (sink, port):
        path = write_config(tmp_path, postgres_url, port)
        store, issue_id, emails = start_issue(path)
        logs = [open(tmp_path / f"worker{n}.log", "wb") for n in range(WORKERS)]  # noqa: SIM115
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "publisher", "--config", str(path), "worker", "--poll", "0.2"],
                env={**os.environ, "PUBLISHER_SECRET_KEY": SECRET},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for log in logs
        ]
        observer = make_worker_lock(store)
        observer.hold()
        try:
            wait_for(lambda: sink.total >= RECIPIENTS // 3, 300, "a third of the issue sent")
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait()
            killed_at = sink.total
            takeover = wait_for(
                lambda: all(observer.alive(owner) for owner in store.deliveries.owners(issue_id)),
                30,
                "the killed worker's rows taken over",
            )
            finish = wait_for(lambda: store.issues.get("weekly", 1).state == "sent", 600, "the issue sent")
            counts = store.deliveries.counts(issue_id)
        finally:
            observer.release()
            for worker in workers[1:]:
                worker.send_signal(signal.SIGTERM)
            stopped = [worker.wait(timeout=60) for worker in workers[1:]]
            for log in logs:
                log.close()
            store.close()
    duplicates = sum(count - 1 for count in sink.received.values())
    with capsys.disabled():
        print(
            f"\nworkers: {RECIPIENTS:,} recipients, {WORKERS} workers × {CONNECTIONS} connections; one killed after "
            f"{killed_at:,} messages; its rows taken over in {takeover:.1f} s; the issue sent {finish:.1f} s after "
            f"the kill; {duplicates} duplicates"
        )
    assert set(sink.received) == set(emails)  # everyone, and nobody else
    assert duplicates <= CONNECTIONS  # only what the killed worker had on the wire
    assert counts["delivered"] == RECIPIENTS
    assert takeover < 10
    assert stopped == [0, 0]  # SIGTERM: a graceful stop


def test_a_workers_start_line_names_its_host_pid_and_database_without_the_password(make_settings, store, caplog):
    import socket

    from publisher import worker
    from publisher.publication import Publication

    url = "postgresql+psycopg://publisher:s3cret-word@db.example.org:5432/news"
    stop = threading.Event()
    stop.set()
    with caplog.at_level("INFO", logger="publisher.worker"):
        worker.serve(Publication(make_settings(database_url=url), store), stop)
    assert f"worker started on {socket.gethostname()}:{os.getpid()}" in caplog.text
    assert "database postgresql+psycopg://publisher:***@db.example.org:5432/news" in caplog.text
    assert "s3cret-word" not in caplog.text
