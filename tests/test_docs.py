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
