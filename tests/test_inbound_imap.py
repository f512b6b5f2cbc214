"""IMAP intake against a real Dovecot started with a throw-away config, on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import imaplib
import os
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sink import free_port

from publisher import jobs, verp
from publisher.clock import fixed
from publisher.errors import PublisherError
from publisher.inbound.imap import poll
from publisher.model import Subscriber
from publisher.publication import Publication
from publisher.scheduler import schedule_table
from tests.helpers import CORPUS, REPO, SAMPLE_TOKEN, crlf, make_issue, require

NOW = datetime(2025, 10, 20, 12, 0, tzinfo=UTC)
DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


@pytest.fixture
def dovecot():
    """A Dovecot IMAP server on loopback with one user, `reader`/`secret`; yields its port.

    Its folder is outside pytest's (mode 0700) temporary folders: Dovecot's auth and mail
    processes run as other users, which must reach the password file and the mail.
    """
    require(DOVECOT is not None, "Dovecot (Debian package dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="publisher-dovecot-"))
    root.chmod(0o755)
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir(parents=True)
    (root / "passwd").write_text("reader:{PLAIN}secret\n")
    uid, gid = (65534, 65534) if os.getuid() == 0 else (os.getuid(), os.getgid())
    if os.getuid() == 0:
        os.chown(root / "mail", uid, gid)
    port = free_port()
    config = root / "dovecot.conf"
    users = (
        ""
        if os.getuid() == 0
        else f"default_internal_user = {getpass.getuser()}\ndefault_login_user = {getpass.getuser()}\n"
    )
    config.write_text(users + CONFIG.format(root=root, uid=uid, gid=gid, port=port))
    output = (root / "output.log").open("wb")
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                imaplib.IMAP4("127.0.0.1", port, timeout=2).logout()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                    pytest.fail(f"dovecot did not start: {(root / 'output.log').read_text()} {log}")
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        output.close()
        shutil.rmtree(root, ignore_errors=True)


def mailbox(port: int) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    client.login("reader", "secret")
    return client


def count(client: imaplib.IMAP4, folder: str) -> int:
    status, data = client.select(f'"{folder}"', readonly=True)
    assert status == "OK", data
    return int(data[0])


def test_imap_intake_acts_on_each_message_and_moves_it_to_the_processed_folder(
    dovecot, make_settings, database_url, store, monkeypatch
):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "inbound-test-7c3e9a1f5b2d8e4a6c0f3b9d1e7a5c28")
    monkeypatch.setenv("PUBLISHER_IMAP_PASSWORD", "secret")
    settings = make_settings(
        {
            "newsletters": {"weekly": {}},
            "delivery": {"return_path": "bounces@news.example.org"},
            "inbound": {
                "imap": {
                    "host": "127.0.0.1",
                    "port": dovecot,
                    "security": "none",
                    "username": "reader",
                    "folder": "INBOX",
                    "processed_folder": "Done",
                }
            },
        },
        database_url=database_url,
    )
    people = ["gone@a.example", "away@b.example"]
    store.subscribers.upsert_many(
        [Subscriber(email=e, status="confirmed", newsletters=("weekly",)) for e in people], NOW
    )
    issue = make_issue(store, "Weekly: notes from the field", NOW, 1)
    client = mailbox(dovecot)
    for email, sample in zip(people, ("postfix-user-unknown.eml", "out-of-office.eml"), strict=True):
        token = verp.make_token(settings.secret_keys, issue.id, store.subscribers.get(email).id)
        raw = (CORPUS / sample).read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode())
        assert client.append("INBOX", None, None, crlf(raw.replace(b"alice@example.com", email.encode())))[0] == "OK"
    client.logout()

    report = poll(settings, store, NOW)
    assert report.processed == 2 and report.kinds == {"bounce": 1, "auto_reply": 1}
    assert store.subscribers.get("gone@a.example").status == "bounced"
    assert store.subscribers.get("away@b.example").status == "confirmed"
    client = mailbox(dovecot)
    assert (count(client, "INBOX"), count(client, "Done")) == (0, 2)
    client.logout()
    assert poll(settings, store, NOW).processed == 0  # nothing is read twice

    # `publisher run` polls on its timetable: the job is listed, and its run reads new mail.
    assert "inbound" in [row["id"] for row in schedule_table(settings, NOW)]
    client = mailbox(dovecot)
    assert client.append("INBOX", None, None, crlf((CORPUS / "human-reply.eml").read_bytes()))[0] == "OK"
    client.logout()
    jobs.run_job(Publication(settings, store, clock=fixed(NOW)), "inbound", "")
    assert [row["kind"] for row in store.inbound.messages()] == ["unknown", "auto_reply", "bounce"]

    monkeypatch.setenv("PUBLISHER_IMAP_PASSWORD", "not-the-password")
    bad = make_settings(
        {
            "delivery": {"return_path": "bounces@news.example.org"},
            "inbound": {
                "imap": {"host": "127.0.0.1", "port": dovecot, "security": "none", "username": "reader"},
            },
        },
        database_url=database_url,
    )
    with pytest.raises(PublisherError, match=r"inbound\.imap 127\.0\.0\.1"):
        poll(bad, store, NOW)


def test_the_makefile_installs_dovecot_for_ci():
    assert "dovecot-imapd" in (REPO / "Makefile").read_text()


def refuse_in_inbound_messages(store, column: str, word: str) -> None:
    """The database itself refuses some content (as PostgreSQL refuses a NUL): a real constraint."""
    from sqlalchemy import text

    with store.engine.begin() as connection:
        if store.engine.dialect.name == "sqlite":
            connection.execute(
                text(
                    f"CREATE TRIGGER refuse_{column} BEFORE INSERT ON inbound_messages "
                    f"WHEN NEW.{column} LIKE '%{word}%' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            connection.execute(
                text(
                    f"ALTER TABLE inbound_messages ADD CONSTRAINT refuse_{column} CHECK ({column} NOT LIKE '%{word}%')"
                )
            )


def test_a_message_that_cannot_be_recorded_never_blocks_the_mailbox(
    dovecot, make_settings, database_url, store, monkeypatch
):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "inbound-test-7c3e9a1f5b2d8e4a6c0f3b9d1e7a5c28")
    monkeypatch.setenv("PUBLISHER_IMAP_PASSWORD", "secret")
    settings = make_settings(
        {
            "newsletters": {"weekly": {}},
            "delivery": {"return_path": "bounces@news.example.org"},
            "inbound": {
                "imap": {"host": "127.0.0.1", "port": dovecot, "security": "none", "username": "reader"},
            },
        },
        database_url=database_url,
    )
    store.subscribers.add(Subscriber(email="gone@a.example", status="confirmed", newsletters=("weekly",)), NOW)
    token = verp.make_token(
        settings.secret_keys, make_issue(store, "Weekly", NOW, 1).id, store.subscribers.get("gone@a.example").id
    )
    dsn = (CORPUS / "postfix-user-unknown.eml").read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode())
    reply = (CORPUS / "human-reply.eml").read_bytes()
    refuse_in_inbound_messages(store, "subject", "poison")  # kept as unknown, without its subject
    refuse_in_inbound_messages(store, "raw", "deadly")  # cannot be kept at all
    client = mailbox(dovecot)
    for raw in (
        reply.replace(b"Subject: Re:", b"Subject: deadly poison Re:"),
        reply.replace(b"Subject: Re:", b"Subject: poison Re:"),
        dsn.replace(b"alice@example.com", b"gone@a.example"),
    ):
        assert client.append("INBOX", None, None, crlf(raw))[0] == "OK"
    client.logout()

    report = poll(settings, store, NOW)
    assert report.kinds == {"unknown": 1, "bounce": 1}
    assert store.subscribers.get("gone@a.example").status == "bounced"
    assert "could not be read: " in store.inbound.messages(kind="unknown")[0]["diagnostic"]
    client = mailbox(dovecot)
    assert (count(client, "INBOX"), count(client, "Processed")) == (1, 2)  # the one left waits for an operator
    client.logout()
