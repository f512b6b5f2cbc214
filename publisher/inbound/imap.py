"""Polling an IMAP mailbox for mail that comes back (imaplib).

Each message in `folder` is recorded and acted on, then moved to `processed_folder` (created when
missing). A message is moved only after it was recorded: a crash in between reads it again,
which changes nothing (messages are recorded once, by digest). A message that cannot be recorded
is kept as `unknown` and moved like the others; one that cannot be recorded even so stays in
`folder` (warned about, by uid) and the poll goes on to the next.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
from dataclasses import dataclass
from datetime import datetime

from publisher.config import ImapSettings, Settings
from publisher.errors import PublisherError
from publisher.inbound.intake import take
from publisher.store import Store

log = logging.getLogger("publisher.inbound")
TIMEOUT = 60


@dataclass(frozen=True)
class PollReport:
    processed: int
    kinds: dict[str, int]


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def connect(imap: ImapSettings) -> imaplib.IMAP4:
    """Logged in; TLS from the start by default, STARTTLS or plain text (loopback only) on request."""
    context = ssl.create_default_context()
    client: imaplib.IMAP4 | None = None
    try:
        if imap.security == "tls":
            client = imaplib.IMAP4_SSL(imap.host, imap.port, ssl_context=context, timeout=TIMEOUT)
        else:
            client = imaplib.IMAP4(imap.host, imap.port, timeout=TIMEOUT)
            if imap.security == "starttls":
                client.starttls(ssl_context=context)
        client.login(imap.username, imap.password)
    except (OSError, imaplib.IMAP4.error) as error:
        if client is not None:
            client.shutdown()
        raise PublisherError(f"inbound.imap {imap.host}:{imap.port}: {error}") from None
    return client


def _check(answer: tuple, what: str) -> list:
    status, data = answer
    if status != "OK":
        raise PublisherError(f"inbound.imap: {what} failed: {data!r}")
    return data


def _capabilities(client: imaplib.IMAP4) -> set[str]:
    """Asked again after login: servers announce more (MOVE) to a logged-in client."""
    data = _check(client.capability(), "asking for capabilities")
    return set((data[0] or b"").decode("ascii", "replace").upper().split())


def _move(client: imaplib.IMAP4, uid: str, folder: str, capabilities: set[str]) -> None:
    if "MOVE" in capabilities:
        _check(client.uid("MOVE", uid, _quote(folder)), f"moving message {uid}")
        return
    _check(client.uid("COPY", uid, _quote(folder)), f"copying message {uid}")
    _check(client.uid("STORE", uid, "+FLAGS", "(\\Deleted)"), f"deleting message {uid}")
    client.expunge()


def poll(settings: Settings, store: Store, now: datetime) -> PollReport:
    """Read every message in the folder once, act on it, and move it to the processed folder."""
    imap = settings.inbound.imap
    if not imap.host:
        raise PublisherError(f"{settings.path}: set [inbound.imap] host, username (and PUBLISHER_IMAP_PASSWORD)")
    client = connect(imap)
    kinds: dict[str, int] = {}
    try:
        capabilities = _capabilities(client)
        client.create(_quote(imap.processed_folder))  # "already exists" is fine
        _check(client.select(_quote(imap.folder)), f"selecting {imap.folder}")
        uids = _check(client.uid("SEARCH", "ALL"), "searching")[0].decode("ascii").split()
        for uid in uids:
            data = _check(client.uid("FETCH", uid, "(BODY.PEEK[])"), f"fetching message {uid}")
            raw = next((item[1] for item in data if isinstance(item, tuple)), None)
            if raw is None:
                continue
            recorded = take(store, settings, raw, now, source="imap", where=f"{imap.folder} uid {uid}")
            if recorded is None:
                continue  # left in the folder for an operator; the rest are read
            kinds[recorded.kind] = kinds.get(recorded.kind, 0) + 1
            _move(client, uid, imap.processed_folder, capabilities)
    except (OSError, imaplib.IMAP4.error) as error:
        raise PublisherError(f"inbound.imap {imap.host}:{imap.port}: {error}") from None
    finally:
        try:
            client.logout()
        except (OSError, imaplib.IMAP4.error):
            log.debug("IMAP logout failed", exc_info=True)
    log.info("inbound imap: %d messages read from %s", sum(kinds.values()), imap.folder)
    return PollReport(sum(kinds.values()), kinds)
