"""A real SMTP server on loopback (aiosmtpd) that records every message and can misbehave.

Shared by the transport, dispatch and crash tests. `SinkHandler` answers 550 to addresses in
`reject`, 421 or 451 to a random fraction `flaky` of messages, and drops the connection without
a reply on every `drop_every`-th message. `PipeliningSink` advertises PIPELINING, and
`MisbehavingRelay` runs a handler on a server that mishandles it (`SwallowingSMTP`,
`ReorderingSMTP`).
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections import Counter
from contextlib import contextmanager
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SinkHandler:
    def __init__(
        self,
        *,
        reject: set[str] | frozenset[str] = frozenset(),
        flaky: float = 0.0,
        drop_every: int = 0,
        seed: int = 5,
        delay: float = 0.0,
    ) -> None:
        self.reject = set(reject)
        self.flaky = flaky
        self.drop_every = drop_every
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes]] = []
        self.senders: dict[str, str] = {}  # recipient → the envelope sender (MAIL FROM) of its last message
        self.refusals = Counter()
        self.seen = 0
        self.sessions = 0
        self.delay = delay
        self.active: Counter = Counter()  # messages being received now, per recipient domain
        self.peak: Counter = Counter()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.lock:
            self.sessions += 1
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.reject:
            with self.lock:
                self.refusals["550"] += 1
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            domains = {address.rpartition("@")[2] for address in envelope.rcpt_tos}
            with self.lock:
                self.active.update(domains)
                for domain in domains:
                    self.peak[domain] = max(self.peak[domain], self.active[domain])
            await asyncio.sleep(self.delay)
            with self.lock:
                self.active.subtract(domains)
        with self.lock:
            self.seen += 1
            if self.drop_every and self.seen % self.drop_every == 0:
                self.refusals["drop"] += 1
                server.transport.abort()
                return "250 never heard"
            if self.flaky and self.random.random() < self.flaky:
                code = self.random.choice(["421", "451"])
                self.refusals[code] += 1
                if code == "421":
                    asyncio.get_running_loop().call_soon(server.transport.close)
                    return "421 4.3.2 Service shutting down, try again"
                return "451 4.3.0 Temporary failure, try again"
            for recipient in envelope.rcpt_tos:
                self.messages.append((recipient, envelope.content))
                self.senders[recipient] = envelope.mail_from
        return "250 2.0.0 OK queued"

    def received(self) -> Counter:
        with self.lock:
            return Counter(recipient for recipient, _ in self.messages)

    def parsed(self, recipient: str):
        with self.lock:
            found = [data for to, data in self.messages if to == recipient]
        return [message_from_bytes(data, policy=policy.default) for data in found]


@contextmanager
def smtp_sink(handler: SinkHandler):
    """Run `handler` on 127.0.0.1:<free port>; yields the port."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


class PipeliningSink(SinkHandler):
    """A sink that advertises PIPELINING (aiosmtpd answers pipelined commands correctly)."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [responses[0], "250-PIPELINING", *responses[1:]]


class SwallowingSMTP(SMTP):
    """Answers a command, then throws away whatever the client sent after it in the same write:
    pipelined commands get no reply."""

    async def push(self, status):
        await super().push(status)
        self._reader._buffer.clear()


class ReorderingSMTP(SMTP):
    """Answers the commands pipelined after a message's final "." together with that final
    reply, in reverse order."""

    held: list | None = None

    async def push(self, status):
        if self.held is None and status.startswith("250 2.0.0") and self._reader._buffer:
            self.held = []
        if self.held is None:
            return await super().push(status)
        self.held.append(status)
        if not self._reader._buffer:  # the whole write is answered: backwards
            held, self.held = self.held, None
            for reply in reversed(held):
                await super().push(reply)
        return None


class MisbehavingRelay(Controller):
    def __init__(self, handler, port, server_class):
        super().__init__(handler, hostname="127.0.0.1", port=port)
        self.server_class = server_class

    def factory(self):
        return self.server_class(self.handler, **self.SMTP_kwargs)
