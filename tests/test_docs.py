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
