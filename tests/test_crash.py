"""`publisher digest send` killed with SIGKILL while messages are on the wire loses nobody and
re-sends at most one message per connection per crash.

On SQLite and on PostgreSQL: a config with our capture's articles, one approved issue and
RECIPIENTS confirmed subscribers; `publisher digest send weekly --json` runs as a child process
over CONNECTIONS pooled connections to an aiosmtpd sink in this process, and is killed with
SIGKILL once the sink has taken 20 %, 40 % and 60 % of the audience (each run resuming the one
before). A last run then has to end with the issue `sent` at once: the dead runs' rows are taken
over without waiting for their leases (5 minutes here), nobody is missing, and the duplicates are
at most CONNECTIONS per crash (the messages whose reply the killed process never stored).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

from click.testing import CliRunner
from sink import SinkHandler, smtp_sink

from publisher.cli import cli
from publisher.config import load_settings
from publisher.model import Subscriber
from publisher.store import Store

RECIPIENTS = 1500
CONNECTIONS = 4
KILL_AT = (0.2, 0.4, 0.6)
SECRET = "crash-test-5e2a8c1f7d3b9e6a0c4f8d2b6a1e9c37"


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
batch_size = 50
lease = "5m"
[delivery.smtp]
host = "127.0.0.1"
port = {port}
connections = {CONNECTIONS}
timeout = 10
""")
    return path


def prepare(path, our_captures) -> list[str]:
    """Articles, RECIPIENTS confirmed readers and one approved issue waiting to go."""
    now = datetime.now(UTC)
    publisher(path, "import", str(our_captures.late.path), "--as-of", now.isoformat())
    people = [
        Subscriber(email=f"r{i}@d{i % 20}.example", name=f"R {i}", status="confirmed", newsletters=("weekly",))
        for i in range(RECIPIENTS)
    ]
    store = Store.open(load_settings(path).database.url)
    store.subscribers.upsert_many(people, now)
    store.close()
    publisher(path, "digest", "build", "weekly")
    return [person.email for person in people]


def publisher(path, *args: str) -> None:
    result = CliRunner().invoke(cli, ["--config", str(path), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def digest_send(path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "publisher", "--config", str(path), "digest", "send", "weekly", "--json"],
        env={**os.environ, "PUBLISHER_SECRET_KEY": SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill_after(child: subprocess.Popen, handler: SinkHandler, messages: int) -> None:
    """SIGKILL the child once the sink has taken `messages` messages (while others are on the wire)."""
    deadline = time.monotonic() + 120
    while len(handler.messages) < messages:
        if child.poll() is not None:
            raise AssertionError(f"digest send finished before it could be killed: {child.stderr.read().decode()}")
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError("digest send made no progress")
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    child.communicate()


def test_digest_send_killed_three_times_on_the_wire_then_finished_by_the_next_run(
    tmp_path, database_url, our_captures, capsys, monkeypatch
):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", SECRET)
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        path = write_config(tmp_path, database_url, port)
        emails = prepare(path, our_captures)
        taken = []
        for share in KILL_AT:
            kill_after(digest_send(path), handler, int(RECIPIENTS * share))
            taken.append(len(handler.messages))
        last = digest_send(path)
        out, err = last.communicate(timeout=120)
        received = handler.received()
    assert last.returncode == 0, err.decode()
    summary = json.loads(out)
    duplicates = sum(count - 1 for count in received.values())
    with capsys.disabled():
        print(
            f"\ncrash test ({database_url.split(':')[0]}): {RECIPIENTS} recipients, {CONNECTIONS} connections; "
            f"killed after the sink took {taken}; last run: {summary['run']}; {duplicates} duplicates"
        )
    assert summary["status"] == "resumed" and summary["state"] == "sent"
    assert summary["delivered"] == RECIPIENTS and summary["pending"] == 0
    assert summary["run"]["delivered"] > 0 and summary["run"]["taken_over"] > 0  # the last crash's rows, at once
    assert set(received) == set(emails)  # nobody missing
    assert duplicates <= CONNECTIONS * len(KILL_AT)


def test_sigterm_stops_digest_send_cleanly_and_the_next_run_sends_the_rest_once(
    tmp_path, database_url, our_captures, monkeypatch
):
    """Issue 14 review: SIGTERM (or SIGHUP, a closed terminal) killed `digest send` at once, leaving
    rows `sending`, messages the sink took unrecorded and no JSON. Now it finishes what is on the
    wire, records it, prints its summary and exits 0; the next run sends the rest, nobody twice."""
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", SECRET)
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        path = write_config(tmp_path, database_url, port)
        emails = prepare(path, our_captures)
        child = digest_send(path)
        deadline = time.monotonic() + 120
        while len(handler.messages) < RECIPIENTS // 5 and time.monotonic() < deadline:
            assert child.poll() is None, child.stderr.read().decode()
            time.sleep(0.001)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err.decode()
        assert "received SIGTERM" in err.decode()
        stopped = json.loads(out)
        assert stopped["state"] == "sending" and 0 < stopped["delivered"] < RECIPIENTS
        assert stopped["delivered"] == len(handler.messages)  # everything the sink took was recorded
        store = Store.open(load_settings(path).database.url)
        issue = store.issues.latest("weekly")
        assert store.deliveries.counts(issue.id).get("sending", 0) == 0  # nothing left held by the stopped run
        store.close()
        last = digest_send(path)
        out, err = last.communicate(timeout=120)
        received = handler.received()
    assert last.returncode == 0, err.decode()
    assert json.loads(out)["state"] == "sent"
    assert set(received) == set(emails) and all(count == 1 for count in received.values())
