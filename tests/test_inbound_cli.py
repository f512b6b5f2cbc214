"""`publisher inbound import|list|show` as an operator uses them: what was done, said without -v;
readers' replies found and read from the CLI, control characters shown, never sent to the terminal.
On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import mailbox
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher import verp
from publisher.cli import cli
from publisher.store import Store
from tests.helpers import CORPUS, SAMPLE_TOKEN, make_issue

NOW = datetime(2025, 10, 20, 12, 0, tzinfo=UTC)
KEY = "inbound-cli-test-8b2e5a1c7f3d9e4a6c0b2f8d1e7a5c39"


@pytest.fixture
def config(tmp_path, database_url, monkeypatch) -> Path:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    path = tmp_path / "config.toml"
    path.write_text(
        f'[site]\nurl = "https://news.example.org"\npostal_address = "1 Sample Street, Exampletown"\n'
        f'[database]\nurl = "{database_url}"\n[newsletters.weekly]\n'
        '[delivery]\nreturn_path = "bounces@news.example.org"\n'
    )
    return path


def run(config: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def returned(config: Path, database_url: str, tmp_path: Path) -> Path:
    """An mbox with a bounce for alice, a complaint from bob, an out-of-office and two replies."""
    for email in ("alice@a.example", "bob@b.example"):
        assert run(config, "subscribers", "add", email, "--confirmed").exit_code == 0
    store = Store.open(database_url)
    try:
        issue = make_issue(store, "Weekly", NOW, 1)
        ids = {email: store.subscribers.get(email).id for email in ("alice@a.example", "bob@b.example")}
    finally:
        store.close()
    box = mailbox.mbox(tmp_path / "returned.mbox")
    for sample, email in (("gmail-dsn.eml", "alice@a.example"), ("arf-complaint.eml", "bob@b.example")):
        token = verp.make_token((KEY,), issue.id, ids[email])
        box.add((CORPUS / sample).read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode()))
    box.add((CORPUS / "out-of-office.eml").read_bytes())
    reply = (CORPUS / "human-reply.eml").read_bytes()
    box.add(reply)
    box.add(reply.replace(b"\n\n", b"\n\nP.S. \x1b]0;pwned\x07 \x1b[2J and a\rcarriage return\n\n", 1))
    box.close()
    return tmp_path / "returned.mbox"


def test_import_says_what_was_done_without_verbose(config, database_url, tmp_path):
    mbox = returned(config, database_url, tmp_path)
    result = run(config, "inbound", "import", str(mbox))
    assert result.exit_code == 0, result.output
    assert result.output == (
        "5 messages: 1 auto_reply, 1 bounce, 1 complaint, 2 unknown; "
        "2 suppressed, 0 unsubscribed, 2 kept for an operator, 1 not acted on, 0 already recorded\n"
    )
    again = run(config, "inbound", "import", str(mbox))
    assert again.output == (
        "5 messages: nothing new; 0 suppressed, 0 unsubscribed, 0 kept for an operator, 5 already recorded\n"
    )
    one = tmp_path / "one.eml"
    one.write_bytes((CORPUS / "vacation-x-autoreply.eml").read_bytes())
    assert run(config, "inbound", "import", str(one)).output.startswith("1 message: 1 auto_reply; ")


def test_replies_can_be_listed_and_read(config, database_url, tmp_path):
    run(config, "inbound", "import", str(returned(config, database_url, tmp_path)))

    everything = json.loads(run(config, "inbound", "list", "--json").output)
    assert [row["kind"] for row in everything] == ["unknown", "unknown", "auto_reply", "complaint", "bounce"]
    replies = json.loads(run(config, "inbound", "list", "--kind", "unknown", "--json").output)
    assert len(replies) == 2 and all(row["action"].endswith("kept for an operator") for row in replies)
    assert replies[0]["sender"] and replies[0]["received_at"].startswith("20") and "raw" not in replies[0]
    assert len(json.loads(run(config, "inbound", "list", "--limit", "1", "--json").output)) == 1

    listed = run(config, "inbound", "list", "--kind", "unknown")
    assert listed.exit_code == 0
    assert listed.output.splitlines()[-1] == "2 messages (use `inbound show ID` to read one)"
    assert "kept for an operator" in listed.output.splitlines()[0]

    shown = run(config, "inbound", "show", str(replies[0]["id"]))
    assert shown.exit_code == 0, shown.output
    assert f"message {replies[0]['id']}, received " in shown.output
    assert f"  Subject: {replies[0]['subject']}" in shown.output
    assert "taken as:   unknown" in shown.output
    assert "done:       nothing: not understood: kept for an operator" in shown.output
    assert "Loved this week's issue" in shown.output  # the raw text
    assert "\x1b" not in shown.output and "\x07" not in shown.output and "\r" not in shown.output
    assert "P.S. ]0;pwned [2J and a\u240dcarriage return" in shown.output  # a lone CR shown as ␍

    bounce = run(config, "inbound", "show", str(everything[-1]["id"]))
    assert "taken as:   bounce" in bounce.output and "done:       suppressed (hard_bounce)" in bounce.output
    assert "token verified" in bounce.output and "5.1.1" in bounce.output


def test_showing_a_message_that_is_not_there_is_a_one_line_error(config):
    for missing in ("999", "99999999999"):
        result = run(config, "inbound", "show", missing)
        assert result.exit_code in (1, 2) and "Traceback" not in result.output
    result = run(config, "inbound", "show", "999")
    assert (
        result.exit_code == 1
        and result.output.strip() == "error: no inbound message 999 (see `publisher inbound list`)"
    )


def test_import_counts_a_message_that_could_not_be_recorded(config, database_url, tmp_path):
    from sqlalchemy import text

    store = Store.open(database_url)
    try:
        with store.engine.begin() as connection:  # the database refuses this message even as unknown
            for column in ("subject", "raw"):
                if store.engine.dialect.name == "sqlite":
                    connection.execute(
                        text(
                            f"CREATE TRIGGER refuse_{column} BEFORE INSERT ON inbound_messages "
                            f"WHEN NEW.{column} LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                        )
                    )
                else:
                    connection.execute(
                        text(
                            f"ALTER TABLE inbound_messages ADD CONSTRAINT refuse_{column} "
                            f"CHECK ({column} NOT LIKE '%poison%')"
                        )
                    )
    finally:
        store.close()
    poison = tmp_path / "poison.eml"
    poison.write_bytes((CORPUS / "human-reply.eml").read_bytes().replace(b"Subject: Re:", b"Subject: poison Re:"))
    result = run(config, "inbound", "import", str(poison), str(CORPUS / "out-of-office.eml"))
    assert result.exit_code == 0
    assert result.stdout == (
        "2 messages: 1 auto_reply; 0 suppressed, 0 unsubscribed, 0 kept for an operator, 1 not acted on, "
        "0 already recorded; 1 could not be recorded (see the warnings above)\n"
    )


def test_bidi_controls_are_shown_not_obeyed(config, tmp_path):
    """A reply whose subject and body hide a right-to-left override: `inbound show` shows each
    bidi control as <U+…> in the decoded headers and the raw text, so "invoice_gpj.exe" cannot
    pass for "invoice_exe.jpg"; `inbound list` sends none to the terminal either."""
    reply = (CORPUS / "human-reply.eml").read_bytes().decode()
    sneaky = reply.replace(
        "Subject: Re: The Weekly: Notes on building a publisher",
        "Subject: =?utf-8?q?Re=3A_invoice=5F=E2=80=AEgpj.exe=E2=81=A6x=E2=80=8F=D8=9C?=",
    ).replace("Loved", "Open invoice_\u202egpj.exe\u2066 \u200e\u061c. Loved")
    path = tmp_path / "sneaky.eml"
    path.write_bytes(sneaky.encode())
    assert run(config, "inbound", "import", str(path)).exit_code == 0
    (row,) = json.loads(run(config, "inbound", "list", "--json").output)
    listed = run(config, "inbound", "list").output
    shown = run(config, "inbound", "show", str(row["id"])).output
    assert "  Subject: Re: invoice_<U+202E>gpj.exe<U+2066>x<U+200F><U+061C>" in shown
    assert "Open invoice_<U+202E>gpj.exe<U+2066> <U+200E><U+061C>. Loved" in shown
    bidi = ("\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069")
    assert not any(mark in listed + shown for mark in (*bidi, "\u200e", "\u200f", "\u061c"))
