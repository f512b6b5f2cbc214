"""The SMTP relay transport: a pool of reused connections with a rate limit.

`SmtpTransport.send_each` spreads a batch over up to `connections` connections shared by every
recipient (at most `per_domain_connections` at a time per receiving domain when set, for relays
that ask for it) and at most `rate_limit` messages a second overall, and reports one `SendResult`
per message from the server's replies, each as it arrives. MAIL, RCPT and DATA go in one write
where the relay offers PIPELINING.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from publisher.config import SmtpSettings
from publisher.errors import DeliveryError
from publisher.transports import LazyOutgoing, OnResult, Outgoing, SendResult

_ENHANCED = re.compile(rb"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
_DISCONNECTED = (smtplib.SMTPServerDisconnected, OSError)
_UNSAFE_ADDRESS = re.compile(r"[\r\n\x00<> ]")  # would end or add an SMTP command


def result_from_reply(code: int, text: bytes) -> SendResult:
    """Map one SMTP reply: 2xx delivered, 4xx deferred, 5xx failed; anything else deferred."""
    match = _ENHANCED.match(text)
    status = match[1].decode() if match else ""
    detail = text.decode("utf-8", "replace").replace("\n", " ")[:500]
    if 200 <= code < 300:
        return SendResult("delivered", code, status, detail)
    if 500 <= code < 600:
        return SendResult("failed", code, status, detail)
    return SendResult("deferred", code, status, detail)


def dropped(error: BaseException) -> SendResult:
    if isinstance(error, RelayUnreachable):
        return SendResult("deferred", None, "4.4.1", str(error))
    return SendResult("deferred", None, "4.4.2", f"connection lost: {error or type(error).__name__}")


class RelayUnreachable(ConnectionError):
    """No session could be opened: the relay refused the connection, or did not answer."""


def _unreachable(error: OSError, settings: SmtpSettings) -> RelayUnreachable:
    what = "refused the connection" if isinstance(error, ConnectionRefusedError) else "could not be reached"
    return RelayUnreachable(f"relay {settings.host}:{settings.port} {what}: {error or type(error).__name__}")


def dot_stuffed(data: bytes) -> bytes:
    """The message as it goes after DATA: CRLF-terminated, leading dots doubled (RFC 5321 4.5.2)."""
    if data.startswith(b"."):
        data = b"." + data
    if b"\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
    return data if data.endswith(b"\r\n") else data + b"\r\n"


class SmtpConnection:
    """One session with the relay, reused for many messages; MAIL, RCPT and DATA are pipelined."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.client: smtplib.SMTP | None = None
        self.pipelining = False
        self.sent = 0
        # Returns once the previous message's outcome is stored; called before the relay may accept the next.
        self.settle: Callable[[], None] | None = None

    def open(self) -> None:
        settings = self.settings
        client = None
        try:
            client = self._connect()
            client.ehlo()
            if settings.security == "starttls":
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if settings.username:
                _login(client, settings.username, settings.password)
        except BaseException as error:
            if client is not None:
                client.close()
            raise _translated(error, settings) from None
        self.client = client
        self.pipelining = client.has_extn("pipelining")
        self.sent = 0

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        if settings.security == "tls":
            return smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout, context=ssl.create_default_context()
            )
        return smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            client.quit()
        except (*_DISCONNECTED, smtplib.SMTPException):
            client.close()

    @property
    def session(self) -> smtplib.SMTP:
        """The open session with the relay."""
        if self.client is None:
            raise DeliveryError(f"{self.settings.host}:{self.settings.port}: not connected")
        return self.client

    def _write(self, data: bytes) -> None:
        sock = self.session.sock
        if sock is None:  # closed under us: what smtplib itself raises then
            raise smtplib.SMTPServerDisconnected("the connection to the relay is closed")
        sock.sendall(data)

    def abandon(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()

    def send(self, message: Outgoing | LazyOutgoing) -> SendResult:
        """Send one message; a stale reused connection is reopened once before anything is sent."""
        reused = self.client is not None and self.sent > 0
        data = message.data
        try:
            if self.client is None:
                self.open()
            return self._transaction(message, data)
        except _Stale as stale:
            self.abandon()
            if not reused:
                return dropped(stale.__cause__ or stale)
        except _DISCONNECTED as error:
            self.abandon()
            return dropped(error)
        try:
            self.open()
            return self._transaction(message, data)
        except (_Stale, *_DISCONNECTED) as error:
            self.abandon()
            return dropped(error)

    def _transaction(self, message: Outgoing | LazyOutgoing, data: bytes) -> SendResult:
        if _UNSAFE_ADDRESS.search(message.sender + message.recipient):
            return SendResult("failed", None, "5.1.3", f"refused to send: bad address {message.recipient!r}")
        client = self.session
        envelope = f"MAIL FROM:<{message.sender}>\r\nRCPT TO:<{message.recipient}>\r\nDATA\r\n".encode()
        try:
            if self.pipelining:
                self._write(envelope)
                replies = [client.getreply() for _ in range(3)]
            else:
                replies = []
                for line in envelope.split(b"\r\n")[:3]:
                    self._write(line + b"\r\n")
                    replies.append(client.getreply())
                    if replies[-1][0] >= 400:
                        break
        except _DISCONNECTED as error:
            raise _Stale() from error  # nothing was accepted: safe to try again on a fresh session
        self.sent += 1
        refused = next((reply for reply in replies[:2] if reply[0] >= 300), None)
        if replies[-1][0] == 354:
            if refused is None:
                self._write(dot_stuffed(data))
                self._settle_previous()
            self._write(b".\r\n")
            final = client.getreply()
            if refused is None:
                return self._finish(final)
        return self._finish(refused or replies[-1], reset=True)

    def _settle_previous(self) -> None:
        settle, self.settle = self.settle, None
        if settle is not None:
            settle()

    def _finish(self, reply: tuple[int, bytes], *, reset: bool = False) -> SendResult:
        code, text = reply
        if code == 421:
            self.abandon()
        elif reset or code >= 400:
            try:
                self.session.rset()
            except (*_DISCONNECTED, smtplib.SMTPException):
                self.abandon()
        return result_from_reply(code, text)


def _translated(error: BaseException, settings: SmtpSettings) -> BaseException:
    """Opening a session failed: configuration problems become a DeliveryError, the rest a drop."""
    where = f"delivery.smtp: {settings.host}:{settings.port}"
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return DeliveryError(
            f"{where} refused the login for {settings.username!r} ({error.smtp_code}); "
            f"check username and PUBLISHER_SMTP_PASSWORD"
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        return DeliveryError(f"{where}: TLS certificate not trusted: {error.verify_message}")
    if isinstance(error, smtplib.SMTPConnectError):  # a 4xx/5xx greeting: try again later
        return smtplib.SMTPServerDisconnected(f"greeting refused: {error.smtp_code}")
    if isinstance(error, OSError) and not isinstance(error, smtplib.SMTPException):
        return _unreachable(error, settings)
    if isinstance(error, smtplib.SMTPServerDisconnected) or not isinstance(error, smtplib.SMTPException):
        return error
    return DeliveryError(f"{where}: {error}")


def _login(client: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH PLAIN when offered (one round trip, and no retrying other mechanisms on a refusal)."""
    if "plain" in client.esmtp_features.get("auth", "").lower().split():
        client.user, client.password = username, password
        code, reply = client.auth("PLAIN", client.auth_plain)
        if code != 235:  # pragma: no cover - smtplib.auth raises on anything else
            raise smtplib.SMTPAuthenticationError(code, reply)
    else:
        client.login(username, password)


class _Stale(Exception):
    """The session died before the relay accepted anything for this message."""


class RateLimiter:
    """At most `rate` acquisitions a second across threads (0 means unlimited)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next_at)
            self.next_at = at + self.interval
        if at > now:
            time.sleep(at - now)


class _Batch:
    """One `send_each` call: its messages, their results as they arrive, and who is told."""

    def __init__(self, messages: Sequence[Outgoing | LazyOutgoing], on_result: OnResult | None) -> None:
        self.messages = messages
        self.on_result = on_result
        self.results: list[SendResult | None] = [None] * len(messages)
        self.remaining = len(messages)
        self.busy = 0  # messages of this batch a connection is sending now
        self.error: BaseException | None = None


class SmtpTransport:
    """A pool of `connections` SMTP sessions to one relay, one worker thread each.

    Every session takes the next message of any recipient: the relay queues and fans out to the
    receiving domains itself. `per_domain_connections` (0: no limit) caps the sessions carrying
    mail for one domain at a time, for relays that ask for it. Several `send_each` calls may run
    at once (dispatch keeps the next batch queued behind the current one, so no session idles at
    the end of a batch).
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.limiter = RateLimiter(settings.rate_limit)
        self.per_domain = max(0, settings.per_domain_connections)
        self.cond = threading.Condition()
        self.queue: deque[tuple[_Batch, int]] = deque()
        self.active: dict[str, int] = {}
        self.workers: list[threading.Thread] = []
        self.connections: list[SmtpConnection] = []
        self.closing = False

    def send(self, message: Outgoing | LazyOutgoing) -> SendResult:
        return self.send_many([message])[0]

    def send_many(self, messages: Sequence[Outgoing | LazyOutgoing]) -> list[SendResult]:
        return self.send_each(messages)

    def send_each(
        self, messages: Sequence[Outgoing | LazyOutgoing], on_result: OnResult | None = None
    ) -> list[SendResult]:
        """Send a batch; `on_result(index, result)` hears each reply as it arrives.

        `on_result` may return a callable that returns once the result is safely stored: the
        session that sent the message calls it before the relay may accept its next message, so
        at most one message per session is accepted and not yet stored.
        """
        if not messages:
            return []
        batch = _Batch(messages, on_result)
        with self.cond:
            self._start()
            self.queue.extend((batch, index) for index in range(len(messages)))
            self.cond.notify_all()
            while (batch.remaining and batch.error is None) or batch.busy:
                self.cond.wait()
            if batch.error is not None:
                self.queue = deque(item for item in self.queue if item[0] is not batch)
                raise batch.error
        return [result for result in batch.results if result is not None]

    def _start(self) -> None:
        if self.workers:
            return
        for number in range(max(1, self.settings.connections)):
            connection = SmtpConnection(self.settings)
            worker = threading.Thread(target=self._work, args=(connection,), name=f"smtp-{number}", daemon=True)
            self.connections.append(connection)
            self.workers.append(worker)
            worker.start()

    def _take(self) -> tuple[_Batch, int] | None:
        """The next message (of a domain with a free session, when limited); holding the condition."""
        while not self.closing:
            for position, (batch, index) in enumerate(self.queue):
                if batch.error is not None:
                    continue
                domain = batch.messages[index].domain if self.per_domain else ""
                if not self.per_domain or self.active.get(domain, 0) < self.per_domain:
                    del self.queue[position]
                    self.active[domain] = self.active.get(domain, 0) + 1
                    batch.busy += 1
                    return batch, index
            self.cond.wait()
        return None

    def _work(self, connection: SmtpConnection) -> None:
        while True:
            with self.cond:
                taken = self._take()
            if taken is None:
                connection.close()
                return
            batch, index = taken
            message = batch.messages[index]
            try:
                self.limiter.wait()
                result = connection.send(message)
                if batch.on_result is not None:
                    connection.settle = batch.on_result(index, result)
            except BaseException as error:
                connection.abandon()
                self._done(batch, message, error=error)
                continue
            batch.results[index] = result
            self._done(batch, message)

    def _done(self, batch: _Batch, message: Outgoing | LazyOutgoing, error: BaseException | None = None) -> None:
        with self.cond:
            if error is not None:
                batch.error = batch.error or error
            else:
                batch.remaining -= 1
            batch.busy -= 1
            self.active[message.domain if self.per_domain else ""] -= 1
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        for worker in self.workers:
            worker.join(timeout=self.settings.timeout)
        self.workers.clear()
        self.connections.clear()
        self.closing = False
