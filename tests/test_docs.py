"""Docs that stay true: every config key and every command is documented."""

import re

import pytest

from publisher.config import documented_keys
from tests.helpers import REPO, all_commands

CONFIGURATION = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
CLI = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("key", documented_keys())
def test_every_config_key_is_documented(key):
    assert f"`{key}`" in CONFIGURATION


@pytest.mark.parametrize("command", [" ".join(c) for c in all_commands()])
def test_every_command_has_a_section_in_the_cli_docs(command):
    assert re.search(rf"^##+ `publisher {re.escape(command)}\b", CLI, re.MULTILINE), command


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    opening = "\n".join(readme.splitlines()[:8])
    assert "make demo" in opening and "make test" in opening
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_the_changelog_has_a_section_for_this_version():
    from publisher import __version__

    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    assert re.search(rf"^## \[{re.escape(__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.MULTILINE)


def test_the_version_is_written_once():
    """In publisher/__init__.py; pyproject.toml has hatch read it from there."""
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["hatch"]["version"]["path"] == "publisher/__init__.py"


def test_pre_commit_runs_the_ruff_that_the_lock_pins():
    locked = re.search(r"^ruff==(\S+)$", (REPO / "requirements.lock").read_text(encoding="utf-8"), re.MULTILINE)
    hooks = (REPO / ".pre-commit-config.yaml").read_text(encoding="utf-8")
    assert locked and re.findall(r'"ruff==([^"]+)"', hooks) == [locked[1], locked[1]]


def test_the_api_example_runs_and_says_what_it_did(tmp_path, monkeypatch, capsys):
    """docs/api.md's end-to-end example, run as written (in a temporary folder)."""
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    example = next(block for block in blocks if "Publication.open(folder" in block)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "docs-example-3f8a1c6e9b2d7f4a0c5e8b1d6a9f2c7e")
    exec(compile(example, "docs/api.md", "exec"), {})  # noqa: S102 - our own documentation
    printed = capsys.readouterr().out
    assert "1 article(s)" in printed and "sent 1 delivered" in printed
    assert "1 message(s) in the outbox" in printed


def test_the_http_api_curl_examples_run_against_a_live_server(tmp_path, database_url):
    """docs/api.md's curl examples, run as written by bash against `publisher serve`."""
    import json
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    from sink import free_port

    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    blocks = [block for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL) if "curl" in block]
    assert len(blocks) >= 5
    port = free_port()
    (tmp_path / "config.toml").write_text(
        '[site]\nurl = "https://news.example.org"\npostal_address = "1 Example Road, Testville"\n'
        f'[database]\nurl = "{database_url}"\n[web]\nport = {port}\n'
        '[delivery]\ntransport = "maildir"\n'
        '[newsletters.weekly]\ntitle = "The Weekly"\n',  # the default require_approval = false, as the docs say
        encoding="utf-8",
    )
    env = {**os.environ, "PUBLISHER_SECRET_KEY": "docs-http-7d2e9b4f1a6c8e3d5b0f2a9c4e7b1d86"}
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"

    def publisher(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "publisher", *args], cwd=tmp_path, env=env, capture_output=True, check=True
        )
        return done.stdout.decode()

    env["TOKEN"] = json.loads(publisher("admin", "token", "create", "cms", "--scope", "write", "--json"))["token"]
    env["PUBLISHER"] = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "publisher", "serve"], cwd=tmp_path, env=env, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "publisher serve did not start"
                time.sleep(0.1)
        answers = []
        for block in blocks:
            if "/issues" in block:
                publisher("digest", "build", "weekly")  # "once it is built (… `publisher digest build weekly`)"
            done = subprocess.run(["bash", "-e", "-c", block], check=False, env=env, capture_output=True, timeout=60)
            assert done.returncode == 0, (block, done.stdout, done.stderr)
            answers.append(done.stdout.decode())
        for _ in range(300):
            status = json.loads(publisher("digest", "status", "weekly", "--json"))
            if status["state"] == "sent":
                break
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert '"status":"confirmed"' in answers[0].replace(" ", "") and "grace@example.org" in answers[0]
    assert '"next_cursor":"1"' in answers[1].replace(" ", "")
    assert json.loads(answers[2])["slug"] == "winter-opening-hours"
    assert status["state"] == "sent" and status["counts"]["delivered"] == 1  # Ada; Grace has not confirmed
    assert json.loads(answers[-1])["status"] == "accepted"
