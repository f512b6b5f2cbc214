"""One-off announcements: sent once to every confirmed reader, scheduled with --at, archived like an issue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from sink import SinkHandler, smtp_sink

from publisher.announcements import read_announcement
from publisher.cli import cli
from publisher.clock import fixed
from publisher.config import load_settings
from publisher.errors import ContentError
from publisher.jobs import publish_due
from publisher.model import Draft, Subscriber
from publisher.publication import Publication
from publisher.transports import MemoryTransport

SATURDAY = datetime(2026, 1, 3, 10, 0, tzinfo=UTC)
MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
MESSAGE = """---
subject: We are moving
preheader: New address from February
---
Dear reader, **we are moving** to a new office.

- Same newsletter
- New [address](https://news.example.org/contact/)
"""


def _file(tmp_path: Path, text: str = MESSAGE) -> Path:
    path = tmp_path / "moving.md"
    path.write_text(text, encoding="utf-8")
    return path


def _publication(make_settings, database_url: str, moment: datetime, readers: int = 4, **delivery) -> Publication:
    settings = make_settings(
        {"newsletters": {"weekly": {"title": "Weekly", "lookback": "30d"}}, "delivery": delivery},
        database_url=database_url,
    )
    pub = Publication(settings, clock=fixed(moment), transport=MemoryTransport())
    people = [
        Subscriber(email=f"r{i}@example.org", status="confirmed", newsletters=("weekly",)) for i in range(readers)
    ]
    people.append(Subscriber(email="pending@example.org", status="pending", newsletters=("weekly",)))
    pub.store.subscribers.upsert_many(people, moment)
    return pub


def test_an_announcement_goes_once_to_each_confirmed_reader_and_is_archived(make_settings, database_url, tmp_path):
    pub = _publication(make_settings, database_url, SATURDAY)
    pub.store.articles.ingest(
        [
            Draft(
                key="a",
                slug="a",
                title="A story",
                summary_html="<p>x</p>",
                content_html="<p>x</p>",
                truncated=False,
                published=SATURDAY - timedelta(days=1),
            )
        ],
        site_url=pub.settings.site.url,
        guid_authority="x",
        now=SATURDAY,
        source="t",
    )
    outcome = pub.announce(_file(tmp_path), "weekly")
    assert outcome.status == "sent" and outcome.issue.number == 1 and outcome.issue.kind == "announcement"
    assert sorted(m.recipient for m in pub.transport.sent) == [f"r{i}@example.org" for i in range(4)]
    message = message_from_bytes(pub.transport.sent[0].data, policy=policy.default)
    assert message["Subject"] == "We are moving" and message["List-Unsubscribe"].startswith("<https://")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = message.get_body(("html",)).get_content()
    assert "<strong>we are moving</strong>" in html and "Unsubscribe" in html and "Weekly" in html
    assert "Same newsletter" in message.get_body(("plain",)).get_content()

    again = pub.announce(_file(tmp_path), "weekly")  # the same file again: never a second copy
    assert again.status == "skipped" and "already sent" in again.reason and len(pub.transport.sent) == 4

    page = (tmp_path / "archive" / "weekly" / "1.html").read_text(encoding="utf-8")
    assert "We are moving" in page and "<strong>we are moving</strong>" in page
    feed = json.loads((tmp_path / "feeds" / "newsletters" / "weekly" / "feed.json").read_text(encoding="utf-8"))
    assert feed["items"][0]["title"] == "We are moving" and "we are moving" in feed["items"][0]["content_html"]
    assert "announcement" in (tmp_path / "archive" / "weekly" / "index.html").read_text(encoding="utf-8")

    digest = pub.send("weekly")  # no articles consumed, no watermark: the digest still has its story
    assert digest.status == "sent" and digest.issue.number == 2
    assert [a.title for a in pub.store.articles.by_ids(digest.issue.article_ids)] == ["A story"]
    assert [(i.number, i.kind) for i in pub.issues("weekly")] == [(1, "announcement"), (2, "digest")]
    pub.close()


def test_an_announcement_at_a_later_time_is_sent_by_publish_then(make_settings, database_url, tmp_path):
    pub = _publication(make_settings, database_url, SATURDAY)
    scheduled = pub.announce(_file(tmp_path), "weekly", at=MONDAY)
    assert scheduled.status == "scheduled" and pub.transport.sent == []
    assert publish_due(pub).sent == [] and pub.transport.sent == []
    monday = Publication(pub.settings, pub.store, clock=fixed(MONDAY + timedelta(minutes=1)), transport=pub.transport)
    assert publish_due(monday).sent == ["weekly #1: 4 delivered, 0 failed, 0 deferred"]
    assert len(pub.transport.sent) == 4
    assert publish_due(monday).sent == [] and len(pub.transport.sent) == 4
    pub.close()


def test_the_announce_command_dry_run_json_and_issue_list(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        '[site]\nurl = "https://news.example.org"\npostal_address = "1 Example Road"\n\n'
        '[delivery]\ntransport = "maildir"\nmaildir = "outbox"\n\n'
        "[newsletters.weekly]\n",
        encoding="utf-8",
    )

    def run(*args: str):
        return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)

    assert run("subscribers", "add", "one@example.org", "--confirmed").exit_code == 0
    path = _file(tmp_path)
    dry = json.loads(run("announce", str(path), "--newsletter", "weekly", "--dry-run", "--json").output)
    assert dry["dry_run"] is True and dry["recipients"] == 1 and dry["kind"] == "announcement"
    assert json.loads(run("digest", "issues", "weekly", "--json").output) == []  # a dry run stores nothing
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    scheduled = json.loads(run("announce", str(path), "--newsletter", "weekly", "--at", later, "--json").output)
    assert scheduled["status"] == "scheduled" and scheduled["issue"] == 1
    listed = run("digest", "issues", "weekly")
    assert "issue 1 [approved] announcement" in listed.output and "1 issue\n" in listed.output
    assert json.loads(run("digest", "issues", "weekly", "--json").output)[0]["kind"] == "announcement"
    bad = tmp_path / "bad.md"
    bad.write_text("---\ntitle: no subject\n---\nText\n", encoding="utf-8")
    failed = run("announce", str(bad), "--newsletter", "weekly")
    assert failed.exit_code == 1 and "unknown front matter key title" in failed.output


def test_an_announcement_file_needs_a_subject_and_a_body(tmp_path):
    with pytest.raises(ContentError, match="needs a subject"):
        read_announcement(_file(tmp_path, "---\npreheader: x\n---\nText\n"))
    with pytest.raises(ContentError, match="no text"):
        read_announcement(_file(tmp_path, "---\nsubject: x\n---\n\n"))


READERS = 2000


def _smtp_config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[site]
postal_address = "1 Example Road"
url = "https://news.example.org"
[database]
url = "sqlite:///{tmp_path / "publisher.db"}"
[newsletters.weekly]
title = "Weekly"
from = "Weekly <weekly@news.example.org>"
[delivery]
transport = "smtp"
batch_size = 50
lease = "5m"
[delivery.smtp]
host = "127.0.0.1"
port = {port}
connections = 4
per_domain_connections = 4
timeout = 10
""",
        encoding="utf-8",
    )
    return config


def _readers(pub: Publication) -> list[str]:
    people = [
        Subscriber(email=f"r{i}@d{i % 20}.example", status="confirmed", newsletters=("weekly",)) for i in range(READERS)
    ]
    pub.store.subscribers.upsert_many(people, SATURDAY)
    return [person.email for person in people]


def _check_headers(handler: SinkHandler, emails: list[str]) -> None:
    for email in (emails[0], emails[-1], emails[READERS // 2]):
        message = handler.parsed(email)[0]
        assert message["List-Unsubscribe"] and message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_2000_readers_through_smtp_get_exactly_one_message_each(tmp_path, monkeypatch):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "announce-test-2b7e4a9c1f6d3e8a5c0b7f2d9e4a6c13")
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        settings = load_settings(_smtp_config(tmp_path, port))
        with Publication(settings) as pub:
            emails = _readers(pub)
            outcome = pub.announce(_file(tmp_path), "weekly")
            assert outcome.status == "sent" and outcome.report.get("delivered") == READERS
    received = handler.received()
    assert set(received) == set(emails) and set(received.values()) == {1}
    _check_headers(handler, emails)


def test_an_announcement_killed_mid_send_and_run_again_loses_nobody(tmp_path, monkeypatch):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "announce-test-2b7e4a9c1f6d3e8a5c0b7f2d9e4a6c13")
    handler = SinkHandler(delay=0.002)
    path = _file(tmp_path)
    with smtp_sink(handler) as port:
        config = _smtp_config(tmp_path, port)
        settings = load_settings(config)
        with Publication(settings) as pub:
            emails = _readers(pub)
        command = [str(Path(sys.executable).parent / "publisher"), "--config", str(config)]
        env = {**os.environ, "PUBLISHER_SECRET_KEY": "announce-test-2b7e4a9c1f6d3e8a5c0b7f2d9e4a6c13"}
        child = subprocess.Popen(
            [*command, "announce", str(path), "--newsletter", "weekly", "--json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while len(handler.messages) < READERS // 3 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert child.poll() is None, "the send finished before it could be killed"
        child.send_signal(signal.SIGKILL)
        child.wait()
        killed_after = len(handler.messages)
        assert 0 < killed_after < READERS
        later = datetime.now(UTC) + settings.delivery.lease + timedelta(seconds=1)  # the dead worker's leases ran out
        with Publication(settings, clock=fixed(later)) as pub:
            in_flight = pub.store.deliveries.counts(pub.issue("weekly", 1).id)["sending"]
            outcome = pub.announce(path, "weekly")
            assert outcome.status == "resumed" and outcome.report.issue_state == "sent"
            assert outcome.report.get("delivered") == READERS
            assert len(pub.issues("weekly")) == 1  # the same announcement, resumed
    received = handler.received()
    assert set(received) == set(emails)  # nobody lost
    assert sum(count - 1 for count in received.values()) <= in_flight <= 2 * 50  # only what was on the wire
    _check_headers(handler, emails)


def test_an_announcement_pauses_resumes_and_cancels_like_an_issue(make_settings, database_url, tmp_path):
    from publisher.transports import DELIVERED

    pub = _publication(make_settings, database_url, SATURDAY, readers=120, batch_size=10)
    paused = []

    def pause_once(message):
        if not paused:
            paused.append(pub.pause("weekly"))  # an operator's `publisher digest pause weekly` mid-send
        return DELIVERED

    pub.transport.reply = pause_once
    first = pub.announce(_file(tmp_path), "weekly")
    assert paused and first.report.issue_state == "paused" and 0 < len(pub.transport.sent) < 120
    resumed = pub.resume("weekly")
    assert resumed.report.issue_state == "sent"
    assert len({m.recipient for m in pub.transport.sent}) == 120  # everyone, once
    assert len(pub.transport.sent) == 120

    later = _file(tmp_path, MESSAGE.replace("We are moving", "We have moved"))
    assert pub.announce(later, "weekly", at=MONDAY).status == "scheduled"
    assert pub.cancel("weekly", 2).state == "cancelled"
    monday = Publication(pub.settings, pub.store, clock=fixed(MONDAY), transport=pub.transport)
    assert publish_due(monday).sent == [] and len(pub.transport.sent) == 120
    pub.close()
