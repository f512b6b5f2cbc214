"""`--log-format json`: one JSON object a line, for `run`, `serve` (and `worker`), tokens hidden."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from sink import free_port

from publisher import logs

KEY = "logs-test-8b1e4c7a2f9d0536e1a7c4b8d2f6e093"


def test_json_lines_carry_time_level_logger_message_and_the_traceback(capsys):
    handlers, level = logging.root.handlers[:], logging.root.level
    logs.configure("json")
    try:
        logging.getLogger("publisher.test").warning("sent %d of %d", 2, 3)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("publisher.test").exception("it failed")
    finally:
        logging.root.handlers[:] = handlers  # pytest's own capture handlers, not one on a closed stream
        logging.root.setLevel(level)
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert {k: first[k] for k in ("level", "logger", "message")} == {
        "level": "warning",
        "logger": "publisher.test",
        "message": "sent 2 of 3",
    }
    assert first["time"].endswith("+00:00")
    assert second["message"] == "it failed" and "ValueError: boom" in second["exception"]


def wait_for(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_publisher_serve_logs_json_access_lines_without_tokens(tmp_path, database_url):
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(f'[site]\nurl = "https://news.example.org"\n[database]\nurl = "{database_url}"\n')
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "publisher",
            "--config",
            str(config),
            "serve",
            "--port",
            str(port),
            "--log-format",
            "json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PUBLISHER_SECRET_KEY": KEY},
    )
    try:
        wait_for(port, process)
        secret = "Zm9vYmFyLXNlY3JldC10b2tlbi12YWx1ZQ"
        assert httpx.get(f"http://127.0.0.1:{port}/unsubscribe/{secret}", timeout=10).status_code == 400
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        bearer = {"authorization": "Bearer pub_bm90LWEtcmVhbC10b2tlbi1idXQtbG9uZw"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/subscribers", headers=bearer, timeout=10).status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    text = err.decode()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert [(line["method"], line["path"], line["status"]) for line in access] == [
        ("GET", "/unsubscribe/{token}", 400),
        ("GET", "/healthz", 200),
        ("GET", "/api/v1/subscribers", 401),
    ]
    assert secret not in text and "bm90LWEtcmVhbC10b2tlbi1idXQtbG9uZw" not in text
    assert any(line["logger"] == "uvicorn.error" and "Uvicorn running" in line["message"] for line in lines)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_publisher_serve_still_logs_with_metrics_on_a_second_address(tmp_path, database_url, log_format):
    port, listen = free_port(), free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[site]\nurl = "https://news.example.org"\n[database]\nurl = "{database_url}"\n'
        f'[metrics]\nlisten = "127.0.0.1:{listen}"\n'
    )
    command = [sys.executable, "-m", "publisher", "--config", str(config), "serve", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--log-format", log_format],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # uvicorn's text access log goes to stdout, the rest to stderr
        env={**os.environ, "PUBLISHER_SECRET_KEY": KEY},
    )
    try:
        wait_for(port, process)
        wait_for(listen, process)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{listen}/metrics", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    text = out.decode()
    assert "Uvicorn running on" in text and "/healthz" in text, text  # the startup lines and the access log
    if log_format == "json":
        assert all(json.loads(line) for line in text.splitlines())


def test_every_long_running_command_takes_the_option():
    from click.testing import CliRunner

    from publisher.cli import cli

    for command in (["run"], ["serve"], ["inbound", "serve"]):
        shown = CliRunner().invoke(cli, [*command, "--help"])
        assert shown.exit_code == 0 and "--log-format [text|json]" in shown.output, command
