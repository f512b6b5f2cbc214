"""Transports decide *how* a finished message leaves: SMTP relay, maildir outbox, or memory.

A transport takes ready bytes (CRLF; dot-stuffing is the transport's business, and messages from
`publisher.message` never need any) and reports one `SendResult` per message: delivered (2xx),
deferred (4xx or a dropped connection) or failed (5xx), keeping the reply code and the enhanced
status code. It never reads the ledger; dispatch never imports smtplib.

`send_many` is the fast path; `send_each` (where a transport has it) also reports each reply the
moment it arrives, so dispatch stores every outcome without waiting for the batch (see
`publisher.smtp` for the relay's pool). This module holds the interface every transport meets and
the two that need no network: maildir and memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from publisher.config import DeliverySettings
from publisher.errors import DeliveryError

if TYPE_CHECKING:
    import mailbox


@dataclass(frozen=True)
class Outgoing:
    """One message on its way: envelope sender, one recipient, the whole message as bytes."""

    sender: str
    recipient: str
    data: bytes

    @property
    def domain(self) -> str:
        return self.recipient.rpartition("@")[2].lower()


class LazyOutgoing:
    """An `Outgoing` whose bytes are built only when a transport needs them.

    Dispatch hands batches of these to a transport, so a batch costs memory for the messages on
    the wire (one per connection), not for every message of the batch.
    """

    __slots__ = ("build", "recipient", "safe", "sender")

    def __init__(self, sender: str, recipient: str, build: Callable[[], bytes], *, safe: bool = False) -> None:
        self.sender, self.recipient, self.build = sender, recipient, build
        self.safe = safe  # no line starts with "." (publisher.message's output): no dot-stuffing to do

    @property
    def data(self) -> bytes:
        return self.build()

    @property
    def domain(self) -> str:
        return self.recipient.rpartition("@")[2].lower()


@dataclass(frozen=True)
class SendResult:
    outcome: str  # "delivered" | "deferred" | "failed"
    code: int | None = None  # the SMTP reply code, when there was one
    status: str = ""  # the enhanced status code, e.g. "5.1.1"
    detail: str = ""


DELIVERED = SendResult("delivered", 250)


class RelayUnreachable(DeliveryError):
    """No session could be opened: the relay refused the connection, or did not answer.

    `send_each` with `relay_down="raise"` raises it instead of deferring every message: the
    messages it did not answer never reached the relay, and dispatch waits for the relay to return.
    """

    def __init__(self, what: str, cause: str = "", relay: str = "the relay") -> None:
        super().__init__(f"{what}: {cause}" if cause else what)
        self.what = what  # "relay HOST:PORT refused the connection"
        self.relay = relay  # "relay HOST:PORT"


# Told each reply as it arrives: (index in the batch, result). It may return a callable that
# returns once that outcome is stored; the transport calls it before the relay may accept the next
# message on the same session, so a crash leaves at most one accepted, unrecorded message per session.
OnResult = Callable[[int, SendResult], Callable[[], None] | None]


class Transport(Protocol):
    def send(self, message: Outgoing | LazyOutgoing) -> SendResult: ...

    def send_many(self, messages: Sequence[Outgoing | LazyOutgoing]) -> list[SendResult]: ...

    def close(self) -> None: ...


def send_each(
    transport: Transport, messages: Sequence[Outgoing | LazyOutgoing], on_result: OnResult
) -> list[SendResult]:
    """Send a batch, telling `on_result` each reply: as it arrives where the transport can say
    (`send_each`), else once the whole batch is answered. A relay that cannot be reached raises
    `RelayUnreachable` (the messages not answered never reached it) rather than deferring each."""
    each = getattr(transport, "send_each", None)
    if each is not None:
        return each(messages, on_result, relay_down="raise")
    results = transport.send_many(messages)
    for index, result in enumerate(results[: len(messages)]):
        on_result(index, result)
    return results


def make_transport(delivery: DeliverySettings) -> Transport:
    """The transport `[delivery] transport` names: "smtp" (a relay) or "maildir" (an outbox)."""
    if delivery.transport == "smtp":
        from publisher.smtp import SmtpTransport

        return SmtpTransport(delivery.smtp)
    if delivery.transport == "maildir":
        return MaildirTransport(delivery.maildir)
    raise DeliveryError(f"delivery.transport must be smtp or maildir, got {delivery.transport!r}")


@dataclass
class MemoryTransport:
    """Keeps every message in a list: for tests and previews. `reply` may script other outcomes."""

    sent: list[Outgoing] = field(default_factory=list)
    reply: Callable[[Outgoing], SendResult] | None = None
    # one batch at a time, in order, as a test's scripted `reply` expects
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def send(self, message: Outgoing | LazyOutgoing) -> SendResult:
        if not isinstance(message, Outgoing):
            message = Outgoing(message.sender, message.recipient, message.data)
        result = self.reply(message) if self.reply else DELIVERED
        if result.outcome == "delivered":
            self.sent.append(message)
        return result

    def send_many(self, messages: Sequence[Outgoing | LazyOutgoing]) -> list[SendResult]:
        return [self.send(message) for message in messages]

    def send_each(
        self, messages: Sequence[Outgoing | LazyOutgoing], on_result: OnResult, relay_down: str = "defer"
    ) -> list[SendResult]:
        results = []
        with self.lock:
            for index, message in enumerate(messages):
                results.append(self.send(message))
                on_result(index, results[-1])
        return results

    def close(self) -> None:
        pass


class MaildirTransport:
    """Writes each message into a maildir (the dry-run and no-relay outbox), LF line endings."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._box: mailbox.Maildir | None = None

    def _open(self) -> mailbox.Maildir:
        if self._box is None:
            import mailbox  # only here: every command that sends would pay for it at start-up

            try:
                self._box = mailbox.Maildir(self.path, factory=None, create=True)
            except OSError as error:
                raise DeliveryError(f"delivery.maildir {self.path}: cannot create: {error.strerror}") from None
        return self._box

    def send(self, message: Outgoing | LazyOutgoing) -> SendResult:
        # what a delivering server writes on top: the envelope sender (with return_path, the VERP
        # address a bounce of this very message would go to), so the outbox shows it too
        sender = message.sender.replace("\r", "").replace("\n", "")
        data = b"Return-Path: <" + sender.encode() + b">\n" + message.data.replace(b"\r\n", b"\n")
        try:
            self._open().add(data)
        except OSError as error:
            raise DeliveryError(f"delivery.maildir {self.path}: cannot write: {error.strerror}") from None
        return DELIVERED

    def send_many(self, messages: Sequence[Outgoing | LazyOutgoing]) -> list[SendResult]:
        return [self.send(message) for message in messages]

    def close(self) -> None:
        if self._box is not None:
            self._box.close()
            self._box = None
