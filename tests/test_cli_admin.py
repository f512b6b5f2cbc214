"""`publisher admin`: operators, API tokens shown once, and the audit log at the shell."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli import cli
from publisher.operators import token_digest

PASSWORD = "correct horse battery staple"


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[site]\nurl = "https://news.example.org"\npostal_address = "1 Example Road, Testville"\n\n'
        f'[database]\nurl = "{database_url}"\n\n[newsletters.weekly]\n',
        encoding="utf-8",
    )
    return path


def run(config: Path, *args: str, stdin: str | None = None):
    return CliRunner().invoke(cli, ["--config", str(config), *args], input=stdin, catch_exceptions=False)


def test_add_user_from_stdin_then_list_change_and_remove(config):
    added = run(config, "admin", "add-user", "Ada@Example.org", "--role", "owner", "--password-stdin", stdin=PASSWORD)
    assert added.exit_code == 0 and added.output == "added ada@example.org (owner)\n"
    run(config, "admin", "add-user", "ed@example.org", "--password-stdin", stdin=PASSWORD + "\n")
    users = json.loads(run(config, "admin", "users", "--json").output)
    assert [(u["email"], u["role"]) for u in users] == [("ada@example.org", "owner"), ("ed@example.org", "editor")]
    changed = run(config, "admin", "add-user", "ed@example.org", "--role", "viewer")  # no new password asked
    assert changed.output == "updated ed@example.org (viewer)\n"
    assert run(config, "admin", "remove-user", "ed@example.org").output == "removed ed@example.org (viewer)\n"
    last = run(config, "admin", "remove-user", "ada@example.org")
    assert last.exit_code == 1 and last.output.count("\n") == 1 and "only owner" in last.output


def test_bad_input_is_one_line_and_nothing_is_stored(config):
    short = run(config, "admin", "add-user", "ada@example.org", "--password-stdin", stdin="short\n")
    assert short.exit_code == 1 and short.output == "error: the password is too short: use at least 10 characters\n"
    empty = run(config, "admin", "add-user", "ada@example.org", "--password-stdin", stdin="")
    assert empty.exit_code == 1 and "held no password" in empty.output
    bad = run(config, "admin", "add-user", "not-an-address", "--password-stdin", stdin=PASSWORD)
    assert bad.exit_code == 1 and bad.output.count("\n") == 1
    assert run(config, "admin", "add-user", "a@example.org", "--role", "boss").exit_code == 2
    assert json.loads(run(config, "admin", "users", "--json").output) == []


def test_a_token_is_shown_once_and_stored_only_as_its_digest(config, database_url):
    created = run(config, "admin", "token", "create", "cms", "--scope", "write", "--json")
    assert created.output.count("\n") == 1  # one line, as docs/api.md shows it
    shown = json.loads(created.output)
    assert shown["name"] == "cms" and shown["scope"] == "write" and shown["token"].startswith("pub_")
    listed = run(config, "admin", "tokens", "--json").output
    assert shown["token"] not in listed and json.loads(listed)[0]["revoked_at"] is None
    assert "cli:" in run(config, "admin", "tokens").output  # who created it, as its --help says
    plain = run(config, "admin", "token", "create", "reader")
    assert plain.stdout.startswith("pub_") and "not shown again" in plain.stderr
    from publisher.store import Store

    store = Store.open(database_url)
    try:
        assert store.tokens.by_digest(token_digest(shown["token"])) is not None
    finally:
        store.close()
    assert run(config, "admin", "token", "revoke", "cms").output == "revoked token 'cms' (write)\n"
    again = run(config, "admin", "token", "revoke", "cms")
    assert again.exit_code == 1 and "no active token named 'cms'" in again.output


def test_the_audit_log_says_who_did_what(config):
    run(config, "admin", "add-user", "ada@example.org", "--role", "owner", "--password-stdin", stdin=PASSWORD)
    secret = json.loads(run(config, "admin", "token", "create", "cms", "--json").output)["token"]
    entries = json.loads(run(config, "admin", "audit", "--json").output)
    assert [e["action"] for e in entries] == ["token.create", "operator.add"]
    assert all(e["actor"].startswith("cli:") for e in entries)
    assert entries[0]["detail"] == {"name": "cms", "scope": "read"}
    text = run(config, "admin", "audit").output
    assert "operator.add" in text and "email=ada@example.org" in text
    assert secret not in text and PASSWORD not in text


def test_a_reason_with_line_breaks_cannot_forge_an_audit_line(config, database_url):
    """`unsuppress --reason $'…\\n…'`: the entry stays one line, so `admin audit` shows no made-up entry."""
    from datetime import UTC, datetime

    from sqlalchemy import insert, update

    from publisher.store import Store
    from publisher.store.schema import subscribers, suppressions

    assert run(config, "subscribers", "add", "eve@example.org", "--confirmed").exit_code == 0
    store = Store.open(database_url)
    try:
        with store.engine.begin() as connection:  # as a hard bounce leaves it
            eve = connection.scalar(subscribers.select().with_only_columns(subscribers.c.id))
            now = datetime.now(UTC)
            connection.execute(update(subscribers).values(status="bounced"))
            connection.execute(
                insert(suppressions).values(subscriber_id=eve, email="eve@example.org", reason="hard_bounce", at=now)
            )
    finally:
        store.close()
    forged = "renewed\n2020-01-01 00:00:00  operator:boss@example.org  subscriber.remove\u2028\u202eevil\x1b[2J"
    assert run(config, "subscribers", "unsuppress", "eve@example.org", "--reason", forged).exit_code == 0
    text = run(config, "admin", "audit").output
    assert len(text.splitlines()) == 2, text  # subscriber.add and subscriber.unsuppress, one line each
    assert "2020-01-01" not in text.splitlines()[1] and "\x1b" not in text and "\u202e" not in text
    (latest, _added) = json.loads(run(config, "admin", "audit", "--json").output)
    assert latest["detail"]["reason"] == (
        "renewed 2020-01-01 00:00:00  operator:boss@example.org  subscriber.remove evil [2J"
    )
