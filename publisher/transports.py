"""Transports decide *how* a finished message leaves: SMTP relay, maildir outbox, or memory.

A transport takes ready bytes (CRLF, dot-stuffing is the transport's business) and reports one
`SendResult` per message: delivered (2xx), deferred (4xx or a dropped connection) or failed (5xx).
It never reads the ledger; dispatch never imports smtplib.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Outgoing:
    """One message on its way: envelope sender, one recipient, the whole message as bytes."""

    sender: str
    recipient: str
    data: bytes


@dataclass(frozen=True)
class SendResult:
    outcome: str  # "delivered" | "deferred" | "failed"
    code: int | None = None  # the SMTP reply code, when there was one
    status: str = ""  # the enhanced status code, e.g. "5.1.1"
    detail: str = ""


DELIVERED = SendResult("delivered", 250)


class Transport(Protocol):
    def send(self, message: Outgoing) -> SendResult: ...

    def close(self) -> None: ...


@dataclass
class MemoryTransport:
    """Keeps every message in a list: for tests and previews."""

    sent: list[Outgoing] = field(default_factory=list)

    def send(self, message: Outgoing) -> SendResult:
        self.sent.append(message)
        return DELIVERED

    def close(self) -> None:
        pass
