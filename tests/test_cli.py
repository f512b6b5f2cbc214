"""The command line: --help everywhere, exit codes, the JSON contracts scripts rely on."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli import cli
from tests.helpers import all_commands


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        '[site]\nurl = "https://news.example.org"\npostal_address = "1 Example Road, Testville"\n\n'
        "[newsletters.weekly]\n[newsletters.daily]\n",
        encoding="utf-8",
    )
    return path


def run(config: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


@pytest.mark.parametrize("command", list(all_commands()), ids=" ".join)
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


def test_usage_errors_exit_2(config):
    assert run(config, "import", "--format", "pdf", "x").exit_code == 2
    assert run(config, "no-such-command").exit_code == 2


def test_import_and_articles_json_contract(config, captures):
    early, late = captures.early, captures.late
    first = run(config, "import", str(early.path), "--as-of", early.as_of.isoformat())
    assert first.exit_code == 0 and f"{early.count} added" in first.output
    assert (config.parent / "feeds" / "rss.xml").exists()  # an import that changed something rebuilds the feeds
    again = run(config, "import", str(early.path), "--as-of", early.as_of.date().isoformat())  # e.g. 2025-09-30
    assert "0 feed files rebuilt" in again.output
    second = run(config, "import", str(late.path), "--as-of", late.as_of.date().isoformat())
    assert f"{len(captures.issue_2)} added, 0 updated, {captures.shared} unchanged" in second.output
    result = run(config, "articles", "--json")
    articles = json.loads(result.output)
    assert len(articles) == captures.total
    required = {
        "guid",
        "slug",
        "title",
        "url",
        "published",
        "updated",
        "tags",
        "summary_html",
        "content_html",
        "truncated",
    }
    assert all(required <= set(a) for a in articles)
    assert articles[0]["published"].endswith("+00:00")
    assert [a["published"] for a in articles] == sorted((a["published"] for a in articles), reverse=True)


def test_handled_errors_are_one_line_exit_1_and_keep_the_store(config, tmp_path, captures):
    run(config, "import", str(captures.early.path), "--as-of", captures.early.as_of.isoformat())
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "publisher", "--config", str(config), "import", str(empty)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr == f"error: {empty}:1: the capture is empty\n"
    assert len(json.loads(run(config, "articles", "--json").output)) == captures.early.count


def test_missing_config_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "none.toml"), "articles"])
    assert result.exit_code == 1
    assert "no such config file" in result.stderr and "Traceback" not in result.output


def test_subscribers_commands(config, tmp_path):
    assert (
        run(
            config, "subscribers", "add", "Ann@Example.org", "--name", "Ann", "--newsletter", "weekly", "--confirmed"
        ).exit_code
        == 0
    )
    bad = run(config, "subscribers", "add", "nope")
    assert bad.exit_code == 1 and "not a valid email address" in bad.stderr
    again = run(config, "subscribers", "add", "ann@example.org", "--newsletter", "weekly", "--confirmed")
    assert again.output.startswith("unchanged ann@example.org (confirmed; weekly)")
    more = run(config, "subscribers", "add", "ann@example.org", "--newsletter", "weekly", "--timezone", "Europe/Paris")
    assert more.output.startswith("updated ann@example.org (confirmed; weekly; time zone: Europe/Paris)")
    csv_file = tmp_path / "in.csv"
    csv_file.write_text("email,name,newsletters\nbob@example.org,Bob,daily\nbad,,\n", encoding="utf-8")
    imported = run(config, "subscribers", "import", str(csv_file))
    assert "1 added, 0 updated, 0 unchanged, 1 rejected" in imported.output and f"{csv_file}:3:" in imported.stderr
    listed = json.loads(run(config, "subscribers", "list", "--json").output)
    assert [(p["email"], p["status"], p["newsletters"]) for p in listed] == [
        ("ann@example.org", "confirmed", ["weekly"]),
        ("bob@example.org", "pending", ["daily"]),
    ]
    unknown = run(config, "subscribers", "list", "--newsletter", "monthly")
    assert unknown.exit_code == 1 and "no [newsletters.monthly]" in unknown.stderr
    assert run(config, "subscribers", "remove", "bob@example.org").exit_code == 0
    exported = run(config, "subscribers", "export").output.splitlines()
    assert exported[0].startswith("email,name,newsletters")
    assert exported[2].startswith("bob@example.org,,,unsubscribed")


def test_init_scaffolds_a_working_publication(tmp_path):
    target = tmp_path / "my-news"
    assert CliRunner().invoke(cli, ["init", str(target)]).exit_code == 0
    assert (target / "config.toml").exists() and (target / "content" / "welcome.md").exists()
    config = ["--config", str(target / "config.toml")]
    result = CliRunner().invoke(cli, [*config, "import"])
    assert result.exit_code == 0 and "1 added" in result.output
    preview = CliRunner().invoke(cli, [*config, "digest", "preview", "weekly", "--out", str(tmp_path / "p")])
    assert preview.exit_code == 0 and "Welcome to the publisher sample" in preview.output  # new, not too old
    unaddressed = CliRunner().invoke(cli, [*config, "digest", "send", "weekly"])
    assert unaddressed.exit_code == 1 and "site.postal_address is empty" in unaddressed.stderr
    again = CliRunner().invoke(cli, ["init", str(target)])
    assert again.exit_code == 1 and "already exists" in again.stderr
