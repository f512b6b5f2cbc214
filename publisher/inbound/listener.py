"""An SMTP (or LMTP) receiver for mail that comes back, on aiosmtpd.

Point the bounce domain's MX (or the local MTA's transport for it) here. Each message is
parsed once, then recorded and acted on for each recipient before the receiver answers 250.
When the database fails it answers 451, so the sending MTA keeps the message and tries again:
nothing is dropped. A message whose content cannot be recorded is kept as `unknown` (250);
if even that fails it is refused for good (554), never retried forever.

Each peer may start at most MAX_PER_MINUTE transactions a minute (421 beyond: the MTA tries
again later). No AUTH is offered, and aiosmtpd's own chatter is logged only from WARNING: the
receiver logs one line per message, with what it was taken to mean.

A transaction takes at most MAX_RECIPIENTS recipients (452 for more: the client sends those
again in another transaction); its raw bytes are kept once, with the first recipient's record.
In LMTP mode each accepted recipient gets its own reply after DATA (RFC 2033), so one that
cannot be recorded is retried alone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from publisher.config import Settings
from publisher.errors import PublisherError, StoreError
from publisher.inbound.intake import take
from publisher.inbound.parse import Feedback, parse_each
from publisher.store import Store

log = logging.getLogger("publisher.inbound")
MAX_MESSAGE = 10 * 1024 * 1024
MAX_RECIPIENTS = 10
MAX_PER_MINUTE = 600  # transactions a peer may start in a minute


def utcnow() -> datetime:
    return datetime.now(UTC)


class PeerLimit:
    """At most `per_minute` transactions a minute from each peer address (a sliding minute)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute, self.clock = per_minute, clock
        self.seen: dict[str, deque[float]] = {}

    def allow(self, peer: str) -> bool:
        now = self.clock()
        if len(self.seen) > 10_000:  # forget peers quiet for a minute
            self.seen = {key: times for key, times in self.seen.items() if times and times[-1] > now - 60}
        times = self.seen.setdefault(peer, deque())
        while times and times[0] <= now - 60:
            times.popleft()
        if len(times) >= self.per_minute:
            return False
        times.append(now)
        return True


def _peer(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


class InboundHandler:
    """aiosmtpd handler: accepts mail for the return path's domain and records each message."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Callable[[], datetime] = utcnow,
        per_minute: int = MAX_PER_MINUTE,
    ) -> None:
        self.settings, self.store, self.clock = settings, store, clock
        self.domain = settings.delivery.return_path.rpartition("@")[2].lower()
        self.source = settings.inbound.protocol
        self.limit = PeerLimit(per_minute)

    async def handle_MAIL(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if not self.limit.allow(_peer(session)):
            return f"421 4.7.0 too many messages from you: at most {self.limit.per_minute} a minute; try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.domain and address.rpartition("@")[2].lower() != self.domain:
            return f"550 5.1.1 <{address}>: this server only takes mail for {self.domain}"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 too many recipients: at most {MAX_RECIPIENTS} a message; send the rest again"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or b""  # the bytes as received (aiosmtpd sets them before DATA's hook)
        loop = asyncio.get_running_loop()
        replies = await loop.run_in_executor(None, self._record, raw, list(envelope.rcpt_tos), _peer(session))
        if self.source == "lmtp":  # one reply per recipient, in RCPT order
            return "\r\n".join(replies)
        if all(reply.startswith("250") for reply in replies):
            return "250 2.0.0 OK recorded"
        if any(reply.startswith("451") for reply in replies):
            return "451 4.3.0 could not record the message; try again later"  # recorded ones are not acted on twice
        return "554 5.6.0 the message could not be recorded, even as unknown: refused"

    def _record(self, raw: bytes, recipients: list[str], peer: str) -> list[str]:
        """One reply per recipient; the message is parsed once for all of them."""
        now = self.clock()
        parsed: list[Feedback | None] = [None] * len(recipients)
        try:
            parsed = list(parse_each(raw, recipients))
        except Exception:  # a parser bug: each recipient's `take` parses again and records the error
            log.debug("parsing a message from %s failed", peer, exc_info=True)
        return [
            self._record_one(raw, now, recipient, found, peer, first=n == 0)
            for n, (recipient, found) in enumerate(zip(recipients, parsed, strict=True))
        ]

    def _record_one(
        self, raw: bytes, now: datetime, recipient: str, found: Feedback | None, peer: str, *, first: bool
    ) -> str:
        where = f"message from {peer} to {recipient}"
        try:
            recorded = take(
                self.store,
                self.settings,
                raw,
                now,
                source=self.source,
                where=where,
                envelope_to=recipient,
                feedback=found,
                keep_raw=first,
            )
        except StoreError as error:
            log.warning("%s: not recorded, answered 451 (the sender tries again): %s", where, error)
            return f"451 4.3.0 <{recipient}> could not record the message; try again later"
        if recorded is None:
            return f"554 5.6.0 <{recipient}> the message could not be recorded, even as unknown: refused"
        return f"250 2.0.0 <{recipient}> OK recorded"


class _LmtpController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


class Listener:
    """The receiver on `[inbound] listen`, in a background thread (start/stop, or `with`)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Callable[[], datetime] = utcnow,
        per_minute: int = MAX_PER_MINUTE,
    ) -> None:
        host, port = settings.inbound.address
        kind = _LmtpController if settings.inbound.protocol == "lmtp" else Controller
        self.where = f"{settings.inbound.protocol}://{host}:{port}"
        self.controller = kind(
            InboundHandler(settings, store, clock, per_minute),
            hostname=host,
            port=port,
            data_size_limit=MAX_MESSAGE,
            server_hostname=settings.delivery.return_path.rpartition("@")[2] or settings.site.domain,
            auth_exclude_mechanism=["LOGIN", "PLAIN"],  # a bounce receiver takes no logins
        )

    def start(self) -> Listener:
        # aiosmtpd logs several INFO lines a connection (and one for the start-up self-check)
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        try:
            self.controller.start()
        except (OSError, RuntimeError) as error:
            raise PublisherError(f"inbound.listen {self.where}: cannot listen: {error}") from None
        log.info("receiving mail that comes back on %s", self.where)
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> Listener:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def serve(settings: Settings, store: Store, stop: threading.Event) -> None:
    """Receive until `stop` is set (`publisher inbound serve`)."""
    if not settings.inbound.listen:
        raise PublisherError(f'{settings.path}: set [inbound] listen = "HOST:PORT" to receive mail')
    with Listener(settings, store):
        stop.wait()
