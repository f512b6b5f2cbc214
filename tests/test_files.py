"""Owner-only files: the store, the outbox, previews and exports hold addresses and names."""

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.files import write_private
from publisher.store import Store
from publisher.transports import MaildirTransport, Outgoing
from tests.helpers import OURS


@pytest.fixture(autouse=True)
def usual_umask():
    """The usual 022: without our care, new files would be readable by everyone."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(folder: Path) -> dict[str, int]:
    return {path.relative_to(folder).as_posix(): stat.S_IMODE(path.stat().st_mode) for path in folder.rglob("*")}


def test_a_new_sqlite_database_and_its_wal_and_shm_files_are_owner_only(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'publisher.db'}")
    store.subscribers  # noqa: B018 - open a repository, then write through it
    with store.engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
        assert set(modes(tmp_path)) == {"publisher.db", "publisher.db-wal", "publisher.db-shm"}
        assert set(modes(tmp_path).values()) == {0o600}
    store.close()


def test_the_maildir_outbox_is_owner_only(tmp_path):
    transport = MaildirTransport(tmp_path / "outbox")
    transport.send(
        Outgoing(sender="b@news.example.org", recipient="ada@example.org", data=b"Subject: hi\r\n\r\nhello\r\n")
    )
    transport.close()
    found = modes(tmp_path / "outbox")
    assert {mode for name, mode in found.items() if "/" not in name} == {0o700}  # cur, new, tmp
    assert stat.S_IMODE((tmp_path / "outbox").stat().st_mode) == 0o700


def test_previews_and_exports_are_owner_only(tmp_path):
    from publisher.cli import cli

    config = tmp_path / "config.toml"
    config.write_text('[site]\nurl = "https://news.example.org"\n\n[newsletters.weekly]\nlookback = "5000d"\n')

    def run(*args: str):
        result = CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    run("import", str(OURS.early.path), "--as-of", OURS.early.as_of.isoformat())
    run("subscribers", "add", "ada@example.org", "--name", "Ada", "--confirmed")
    run("digest", "preview", "weekly", "--out", str(tmp_path / "preview"))
    run("subscribers", "export", "--output", str(tmp_path / "subscribers.csv"))
    assert set(modes(tmp_path / "preview").values()) == {0o600}
    assert stat.S_IMODE((tmp_path / "preview").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "subscribers.csv").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "publisher.db").stat().st_mode) == 0o600


def test_write_private_tightens_a_file_that_was_readable(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("old")
    write_private(path, b"email\n")
    assert path.read_bytes() == b"email\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
