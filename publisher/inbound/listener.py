"""An SMTP (or LMTP) receiver for mail that comes back, on aiosmtpd.

Point the bounce domain's MX (or the local MTA's transport for it) here. Each message is
recorded and acted on before the receiver answers 250; when that fails it answers 451, so the
sending MTA keeps the message and tries again: nothing is dropped.

A transaction takes at most MAX_RECIPIENTS recipients (452 for more: the client sends those
again in another transaction); its raw bytes are kept once, with the first recipient's record.
In LMTP mode each accepted recipient gets its own reply after DATA (RFC 2033), so one that
cannot be recorded is retried alone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from publisher.config import Settings
from publisher.errors import PublisherError
from publisher.feedback import receive
from publisher.store import Store

log = logging.getLogger("publisher.inbound")
MAX_MESSAGE = 10 * 1024 * 1024
MAX_RECIPIENTS = 10


def utcnow() -> datetime:
    return datetime.now(UTC)


class InboundHandler:
    """aiosmtpd handler: accepts mail for the return path's domain and records each message."""

    def __init__(self, settings: Settings, store: Store, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings, self.store, self.clock = settings, store, clock
        self.domain = settings.delivery.return_path.rpartition("@")[2].lower()
        self.source = settings.inbound.protocol

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
        replies = []
        for number, recipient in enumerate(envelope.rcpt_tos):
            try:
                await loop.run_in_executor(None, self._receive, raw, recipient, number == 0)
                replies.append(f"250 2.0.0 <{recipient}> OK recorded")
            except Exception:
                log.exception("could not record a message for %s", recipient)
                replies.append(f"451 4.3.0 <{recipient}> could not record the message; try again later")
        if self.source == "lmtp":  # one reply per recipient, in RCPT order
            return "\r\n".join(replies)
        if all(reply.startswith("250") for reply in replies):
            return "250 2.0.0 OK recorded"
        return "451 4.3.0 could not record the message; try again later"  # recorded ones are not acted on twice

    def _receive(self, raw: bytes, recipient: str, keep_raw: bool) -> None:
        receive(
            self.store, self.settings, raw, self.clock(), source=self.source, envelope_to=recipient, keep_raw=keep_raw
        )


class _LmtpController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


class Listener:
    """The receiver on `[inbound] listen`, in a background thread (start/stop, or `with`)."""

    def __init__(self, settings: Settings, store: Store, clock: Callable[[], datetime] = utcnow) -> None:
        host, port = settings.inbound.address
        kind = _LmtpController if settings.inbound.protocol == "lmtp" else Controller
        self.where = f"{settings.inbound.protocol}://{host}:{port}"
        self.controller = kind(
            InboundHandler(settings, store, clock),
            hostname=host,
            port=port,
            data_size_limit=MAX_MESSAGE,
            server_hostname=settings.delivery.return_path.rpartition("@")[2] or settings.site.domain,
        )

    def start(self) -> Listener:
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
