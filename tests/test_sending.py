"""`publisher digest send` when the relay is down: why readers were deferred, and retrying them now."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from sink import SinkHandler, free_port

from publisher.cli import cli

SECRET = "test-key-4f9c2a71d8e3b605a9c7e1f2d4b8a36c"
READERS = ("r0@d0.example", "r1@d1.example", "r2@d2.example")


def run(config, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


@pytest.fixture
def relay_down(tmp_path, database_url, our_captures, monkeypatch):
    """A publication whose relay (127.0.0.1:<port>) is not listening; three confirmed readers."""
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", SECRET)
    port = free_port()
    path = tmp_path / "config.toml"
    path.write_text(
        '[site]\nurl = "https://news.example.org"\npostal_address = "1 Example Road, Testville"\n'
        f'[database]\nurl = "{database_url}"\n'
        '[newsletters.weekly]\nlookback = "3650d"\n'
        f'[delivery]\ntransport = "smtp"\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\n',
        encoding="utf-8",
    )
    assert run(path, "import", str(our_captures.late.path), "--as-of", datetime.now(UTC).isoformat()).exit_code == 0
    for address in READERS:
        assert run(path, "subscribers", "add", address, "--confirmed").exit_code == 0
    return path, port


def test_a_refused_relay_is_named_in_the_summary_and_the_json(relay_down):
    path, port = relay_down
    sent = json.loads(run(path, "digest", "send", "weekly", "--json").output)
    assert (sent["status"], sent["delivered"], sent["deferred"]) == ("sent", 0, 3)
    assert sent["deferred_reason"]["count"] == 3
    assert f"relay 127.0.0.1:{port} refused the connection" in sent["deferred_reason"]["reply"]

    text = run(path, "digest", "send", "weekly", "--retry-now").output
    assert f"deferred: 3 readers: 4.4.1 relay 127.0.0.1:{port} refused the connection" in text
    assert "publisher digest status weekly --failures" in text


def test_a_skipped_send_names_the_waiting_readers_and_retry_now_sends_them(relay_down):
    path, port = relay_down
    assert json.loads(run(path, "digest", "send", "weekly", "--json").output)["deferred"] == 3

    skipped = json.loads(run(path, "digest", "send", "weekly", "--json").output)
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
        retried = json.loads(run(path, "digest", "send", "weekly", "--retry-now", "--json").output)
    finally:
        relay.stop()
    assert (retried["status"], retried["issue"], retried["delivered"], retried["deferred"]) == ("resumed", 1, 3, 0)
    assert retried["run"]["delivered"] == 3 and retried["deferred_reason"] is None
    assert handler.received() == dict.fromkeys(READERS, 1)

    nothing = json.loads(run(path, "digest", "send", "weekly", "--retry-now", "--json").output)
    assert nothing["status"] == "skipped" and "no deferred readers" in nothing["reason"]


def test_retry_now_goes_alone(relay_down):
    path, _ = relay_down
    result = run(path, "digest", "send", "weekly", "--retry-now", "--now")
    assert result.exit_code == 2 and "--retry-now" in result.output
