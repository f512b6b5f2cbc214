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
