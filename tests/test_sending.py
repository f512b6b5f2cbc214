"""`publisher digest send` when the relay is down: it waits for the relay and resumes when it is
back; after `retry_first` it defers the readers left, naming why; retrying them now; and two
sends of one issue at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from sink import SinkHandler, free_port, smtp_sink

from publisher.cli import cli
from publisher.config import load_settings
from publisher.store import Store

SECRET = "test-key-4f9c2a71d8e3b605a9c7e1f2d4b8a36c"
READERS = ("r0@d0.example", "r1@d1.example", "r2@d2.example")


def run(config, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def sent_json(config, *args: str) -> dict:
    return json.loads(run(config, "digest", "send", "weekly", "--json", *args).stdout)


def publication(folder, database_url: str, captures, port: int, *, wait: str = "2s", readers=READERS):
    """A config.toml whose relay is 127.0.0.1:`port`, waited for up to `wait` (`retry_first`)."""
    path = folder / "config.toml"
    path.write_text(
        '[site]\nurl = "https://news.example.org"\npostal_address = "1 Example Road, Testville"\n'
        f'[database]\nurl = "{database_url}"\n'
        '[newsletters.weekly]\nlookback = "3650d"\n'
        f'[delivery]\ntransport = "smtp"\nretry_first = "{wait}"\n'
        f'[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\ntimeout = 10\n',
        encoding="utf-8",
    )
    assert run(path, "import", str(captures.late.path), "--as-of", datetime.now(UTC).isoformat()).exit_code == 0
    for address in readers:
        assert run(path, "subscribers", "add", address, "--confirmed").exit_code == 0
    return path


@pytest.fixture
def relay_down(tmp_path, database_url, our_captures, monkeypatch):
    """A publication whose relay (127.0.0.1:<port>) is not listening, waited for 2 s; three readers."""
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", SECRET)
    port = free_port()
    return publication(tmp_path, database_url, our_captures, port), port


def digest_send(path, *args: str) -> subprocess.Popen:
    """`publisher digest send weekly --json` in a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "publisher", "--config", str(path), "digest", "send", "weekly", "--json", *args],
        env={**os.environ, "PUBLISHER_SECRET_KEY": SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stopped_while_waiting(path, *args: str) -> tuple[str, str, int]:
    """`digest send` (with `args`) given SIGTERM while it waits for the relay: its stdout, stderr, exit code."""
    child = digest_send(path, *args)
    try:
        first_line(child.stderr, "retrying in")
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    return out, err, child.returncode


def first_line(stream, text: str, seconds: float = 30) -> str:
    """Read `stream` until a line containing `text` (the test fails after `seconds`)."""
    found: list[str] = []

    def read() -> None:
        for line in stream:
            if text in line:
                found.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(seconds)
    assert found, f"no line with {text!r} within {seconds} s"
    return found[0]


def attempts(path) -> dict[str, int]:
    store = Store.open(load_settings(path).database.url)
    try:
        issue = store.issues.latest("weekly")
        return {row["email"]: row["attempts"] for row in store.deliveries.rows(issue.id)}
    finally:
        store.close()


def test_a_refused_relay_is_named_in_the_summary_and_the_json(relay_down):
    path, port = relay_down
    result = run(path, "digest", "send", "weekly", "--json")
    sent = json.loads(result.stdout)
    assert f"relay 127.0.0.1:{port} refused the connection; retrying in 1 s" in result.stderr
    assert "deferring the readers left" in result.stderr
    assert (sent["status"], sent["delivered"], sent["deferred"]) == ("sent", 0, 3)
    assert sent["relay_unreachable"] == f"relay 127.0.0.1:{port} refused the connection"
    assert attempts(path) == dict.fromkeys(READERS, 1)  # one deferral each, however many tries
    assert sent["deferred_reason"]["count"] == 3
    assert f"relay 127.0.0.1:{port} refused the connection" in sent["deferred_reason"]["reply"]

    text = run(path, "digest", "send", "weekly", "--retry-now").output
    assert f"deferred: 3 readers: 4.4.1 relay 127.0.0.1:{port} refused the connection" in text
    assert "publisher digest status weekly --failures" in text


def test_a_skipped_send_names_the_waiting_readers_and_retry_now_sends_them(relay_down):
    path, port = relay_down
    assert sent_json(path)["deferred"] == 3

    skipped = sent_json(path)
    assert skipped["status"] == "skipped"
    assert "3 readers of issue 1 are deferred" in skipped["reason"]
    assert "publisher digest send weekly --retry-now" in skipped["reason"]
    assert skipped["waiting"]["issue"] == 1 and skipped["waiting"]["deferred"] == 3
    assert skipped["waiting"]["next_attempt_at"] is not None
    assert skipped["run"] == {"frozen": 0, "delivered": 0, "failed": 0, "deferred": 0, "taken_over": 0}

    handler = SinkHandler()
    relay = Controller(handler, hostname="127.0.0.1", port=port)
    relay.start()
    try:
        retried = sent_json(path, "--retry-now")
    finally:
        relay.stop()
    assert (retried["status"], retried["issue"], retried["delivered"], retried["deferred"]) == ("resumed", 1, 3, 0)
    assert retried["run"]["delivered"] == 3 and retried["deferred_reason"] is None
    assert handler.received() == dict.fromkeys(READERS, 1)

    nothing = sent_json(path, "--retry-now")
    assert nothing["status"] == "skipped" and "no deferred readers" in nothing["reason"]


def test_retry_now_goes_alone(relay_down):
    path, _ = relay_down
    result = run(path, "digest", "send", "weekly", "--retry-now", "--now")
    assert result.exit_code == 2 and "--retry-now" in result.output


def test_a_send_started_while_the_relay_is_down_waits_for_it_and_everyone_gets_one_message(
    tmp_path, database_url, our_captures, monkeypatch
):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", SECRET)
    port = free_port()
    path = publication(tmp_path, database_url, our_captures, port, wait="5m")
    handler = SinkHandler()
    relay = Controller(handler, hostname="127.0.0.1", port=port)
    child = digest_send(path)
    try:
        line = first_line(child.stderr, "retrying in")
        assert line.startswith(f"relay 127.0.0.1:{port} refused the connection; retrying in 1 s")
        time.sleep(3)  # the relay comes back a few seconds later
        relay.start()
        out, err = child.communicate(timeout=90)
    finally:
        child.kill()
        relay.stop()
    sent = json.loads(out)
    assert child.returncode == 0, err
    assert (sent["status"], sent["state"], sent["delivered"], sent["deferred"]) == ("sent", "sent", 3, 0)
    assert sent["run"]["delivered"] == 3 and sent["relay_unreachable"] is None
    assert f"relay 127.0.0.1:{port} answers again; sending" in err
    assert handler.received() == dict.fromkeys(READERS, 1)
    assert attempts(path) == dict.fromkeys(READERS, 1)  # the waiting counted against nobody


def test_sigterm_while_waiting_for_the_relay_stops_cleanly_and_the_next_send_continues(
    tmp_path, database_url, our_captures, monkeypatch
):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", SECRET)
    port = free_port()
    path = publication(tmp_path, database_url, our_captures, port, wait="5m")
    out, err, code = stopped_while_waiting(path)
    stopped = json.loads(out)
    assert code == 0, err
    assert (stopped["state"], stopped["pending"], stopped["delivered"], stopped["deferred"]) == ("sending", 3, 0, 0)
    assert stopped["relay_unreachable"] == f"relay 127.0.0.1:{port} refused the connection"
    assert set(attempts(path).values()) == {0}  # given back untried: nothing counted against anyone

    handler = SinkHandler()
    relay = Controller(handler, hostname="127.0.0.1", port=port)
    relay.start()
    try:
        resumed = sent_json(path)
    finally:
        relay.stop()
    assert (resumed["status"], resumed["state"], resumed["delivered"]) == ("resumed", "sent", 3)
    assert handler.received() == dict.fromkeys(READERS, 1)


def test_two_sends_of_one_issue_at_once_send_each_reader_one_copy_and_both_say_what_they_did(
    tmp_path, database_url, our_captures, monkeypatch
):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", SECRET)
    readers = [f"r{i}@d{i % 7}.example" for i in range(60)]
    handler = SinkHandler(delay=0.02)  # slow enough for the two runs to overlap
    with smtp_sink(handler) as port:
        path = publication(tmp_path, database_url, our_captures, port, readers=readers)
        children = [digest_send(path) for _ in range(2)]
        finished = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], [err for _, err in finished]
    assert handler.received() == dict.fromkeys(readers, 1)
    said = [json.loads(out) for out, _ in finished]
    # between them, the two runs froze the audience once and recorded each delivery once
    assert sum(one["run"]["frozen"] for one in said) == len(readers)
    assert sum(one["run"]["delivered"] for one in said) == len(readers)
    for one in said:
        if one["status"] == "skipped":  # it came after the other had finished: it did nothing
            assert one["run"]["delivered"] == 0 and one["reason"]
            continue
        assert (one["issue"], one["state"], one["delivered"]) == (1, "sent", len(readers))
        if one["run"]["frozen"]:
            assert one["status"] == "sent"
        else:  # it found the other sending the issue, sent alongside and waited for the rest
            assert one["status"] in ("joined", "resumed")


def test_a_retry_round_stopped_while_the_relay_is_down_leaves_its_readers_to_the_retries(relay_down):
    path, port = relay_down
    assert sent_json(path)["deferred"] == 3  # the issue is sent; its three readers wait, deferred
    out, err, code = stopped_while_waiting(path, "--retry-now")
    assert code == 0, err
    assert json.loads(out)["deferred"] == 3  # deferred still (due at once), not stranded as pending
    assert attempts(path) == dict.fromkeys(READERS, 1)

    handler = SinkHandler()
    relay = Controller(handler, hostname="127.0.0.1", port=port)
    relay.start()
    try:
        again = sent_json(path)  # nothing new: it finishes the sent issue's due retries
    finally:
        relay.stop()
    assert (again["status"], again["issue"], again["delivered"], again["run"]["delivered"]) == ("resumed", 1, 3, 3)
    assert handler.received() == dict.fromkeys(READERS, 1)
