"""A sending process killed with SIGKILL at random points loses nobody and re-sends only what was in flight.

Each trial: a fresh SQLite store with a few thousand confirmed subscribers and one approved issue;
a child process sends it over 4 pooled connections to an aiosmtpd sink in this process that
records every message; the child is killed with SIGKILL once the sink has seen a random number of
messages; the send is then resumed here once the dead worker's leases have expired.

The bound: only rows still `sending` when the worker died can be sent twice. A worker holds at
most two batches in that state (one on the wire, the next one leased beside it), so
duplicates ≤ rows left `sending` ≤ 2 × batch_size (= 2 × 50 here).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from sink import SinkHandler, smtp_sink
from sqlalchemy import insert

from publisher import dispatch
from publisher.config import load_settings
from publisher.model import Issue, RenderedIssue, Subscriber
from publisher.store import Store
from publisher.store.schema import issues

RECIPIENTS = 2500
BATCH = 50
TRIALS = 4
SLOT = datetime(2025, 10, 20, 8, 0, tzinfo=UTC)
RENDERED = {
    "newsletter": "weekly",
    "subject": "Weekly",
    "preheader": "",
    "html": "<p>Hello @@NAME@@</p>" + "<p>Body text.</p>" * 50 + '<a href="@@UNSUBSCRIBE_URL@@">x</a>',
    "text": "Hello @@NAME@@\n" + "Body text.\n" * 50 + "@@UNSUBSCRIBE_URL@@\n",
    "placeholders": {"name": "@@NAME@@", "unsubscribe_url": "@@UNSUBSCRIBE_URL@@"},
}
CHILD = """
import sys
from datetime import UTC, datetime
from publisher import dispatch
from publisher.config import load_settings
from publisher.model import Issue, RenderedIssue
from publisher.store import Store

settings = load_settings(sys.argv[1])
store = Store.open(settings.database.url)
issue = Issue(newsletter="weekly", number=1, slot=datetime(2025, 10, 20, 8, tzinfo=UTC), state="approved",
              id=int(sys.argv[2]))
print("ready", flush=True)
dispatch.deliver_issue(store, settings, issue, rendered=RenderedIssue(**{rendered!r}))
print("finished", flush=True)
"""


def write_config(tmp_path, port: int):
    (tmp_path / "config.toml").write_text(f"""
[site]
postal_address = "1 Example Road, Testville"
url = "https://news.example.org"
[database]
url = "sqlite:///{tmp_path / "publisher.db"}"
[newsletters.weekly]
title = "Weekly"
from = "Weekly <weekly@news.example.org>"
[delivery]
transport = "smtp"
batch_size = {BATCH}
lease = "5m"
[delivery.smtp]
host = "127.0.0.1"
port = {port}
connections = 4
per_domain_connections = 4
timeout = 10
""")
    return load_settings(tmp_path / "config.toml")


def prepare(settings) -> tuple[Store, Issue, list[str]]:
    store = Store.open(settings.database.url)
    people = [
        Subscriber(email=f"r{i}@d{i % 20}.example", name=f"R {i}", status="confirmed", newsletters=("weekly",))
        for i in range(RECIPIENTS)
    ]
    store.subscribers.upsert_many(people, SLOT)
    with store.engine.begin() as connection:
        issue_id = connection.execute(
            insert(issues).values(
                newsletter="weekly",
                number=1,
                slot=SLOT,
                state="approved",
                watermark=SLOT,
                subject="Weekly",
                created_at=SLOT,
            )
        ).inserted_primary_key[0]
    return (
        store,
        Issue(newsletter="weekly", number=1, slot=SLOT, state="approved", id=issue_id),
        [person.email for person in people],
    )


def kill_after(child: subprocess.Popen, handler: SinkHandler, messages: int, deadline: float) -> bool:
    """SIGKILL the child once the sink has `messages` messages; False if it finished first."""
    while time.monotonic() < deadline:
        if len(handler.messages) >= messages:
            child.send_signal(signal.SIGKILL)
            child.wait()
            return True
        if child.poll() is not None:
            return False
        time.sleep(0.002)
    child.kill()
    child.wait()
    raise AssertionError("the sending process neither progressed nor finished in time")


def trial(tmp_path, number: int, rng: random.Random) -> dict:
    folder = tmp_path / f"trial{number}"
    folder.mkdir()
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        settings = write_config(folder, port)
        store, issue, emails = prepare(settings)
        target = rng.randint(1, RECIPIENTS - 2 * BATCH)
        env = {**os.environ, "PUBLISHER_SECRET_KEY": "crash-test-5e2a8c1f7d3b9e6a0c4f8d2b6a1e9c37"}
        code = CHILD.format(rendered=RENDERED)
        with open(folder / "child.log", "wb") as log:
            child = subprocess.Popen(
                [sys.executable, "-c", code, str(folder / "config.toml"), str(issue.id)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            killed = kill_after(child, handler, target, time.monotonic() + 60)
        before = len(handler.messages)
        in_flight = store.deliveries.counts(issue.id)["sending"]
        later = datetime.now(UTC) + settings.delivery.lease + timedelta(seconds=1)
        os.environ.setdefault("PUBLISHER_SECRET_KEY", "crash-test-5e2a8c1f7d3b9e6a0c4f8d2b6a1e9c37")
        result = dispatch.deliver_issue(store, settings, issue, later, rendered=RenderedIssue(**RENDERED))
        received = handler.received()
        store.close()
    duplicates = sum(count - 1 for count in received.values())
    return {
        "killed_after": before if killed else None,
        "in_flight": in_flight,
        "duplicates": duplicates,
        "missing": len(set(emails) - set(received)),
        "delivered": result.get("delivered"),
        "state": result.issue_state,
    }


def test_sigkill_at_random_points_loses_nobody(tmp_path, capsys):
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20251020")))
    figures = [trial(tmp_path, number, rng) for number in range(TRIALS)]
    with capsys.disabled():
        print(f"\ncrash test: {RECIPIENTS} recipients, batch {BATCH}, 4 connections, bound 2 × batch = {2 * BATCH}")
        for number, figure in enumerate(figures):
            print(
                f"  trial {number}: killed after {figure['killed_after']} messages, "
                f"{figure['in_flight']} rows in flight, {figure['duplicates']} duplicates, "
                f"{figure['missing']} missing"
            )
    for figure in figures:
        assert figure["missing"] == 0
        assert figure["delivered"] == RECIPIENTS and figure["state"] == "sent"
        assert figure["duplicates"] <= figure["in_flight"] <= 2 * BATCH
    assert any(figure["killed_after"] for figure in figures)
