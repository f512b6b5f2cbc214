"""The SMTP relay transport: a pool of reused connections with a rate limit.

`SmtpTransport.send_each` spreads a batch over up to `connections` connections shared by every
recipient (at most `per_domain_connections` at a time per receiving domain when set, for relays
that ask for it) and at most `rate_limit` messages a second overall, and reports one `SendResult`
per message from the server's replies, each as it arrives. Where the relay offers PIPELINING, a
message's final `.` and the next message's MAIL, RCPT and DATA go in one write: one round trip a
message, plus the write of its bytes.
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import cast

from publisher.config import SmtpSettings
from publisher.errors import DeliveryError
from publisher.transports import LazyOutgoing, OnResult, Outgoing, RelayUnreachable, SendResult

log = logging.getLogger("publisher.smtp")
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


def _unreachable(error: OSError, settings: SmtpSettings) -> RelayUnreachable:
    what = "refused the connection" if isinstance(error, ConnectionRefusedError) else "could not be reached"
    relay = f"relay {settings.host}:{settings.port}"
    return RelayUnreachable(f"{relay} {what}", f"{error or type(error).__name__}", relay)


class Relay:
    """What the pool has learnt about its relay during a run: whether its PIPELINING can be trusted."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.pipelining = True  # false once the relay mishandled a pipelined exchange
        self.lock = threading.Lock()

    def distrust_pipelining(self, why: str) -> None:
        """Send without PIPELINING for the rest of the run; logged once."""
        with self.lock:
            if not self.pipelining:
                return
            self.pipelining = False
        log.warning(
            "relay %s:%d advertises PIPELINING but mishandles it (%s); sending without it for the rest of this run",
            self.settings.host,
            self.settings.port,
            why,
        )


UNKNOWN_OUTCOME = SendResult(
    "deferred", None, "4.5.0", "outcome unknown: the relay answered a pipelined exchange out of sequence"
)


def dot_stuffed(data: bytes) -> bytes:
    """The message as it goes after DATA: CRLF-terminated, leading dots doubled (RFC 5321 4.5.2)."""
    if data.startswith(b"."):
        data = b"." + data
    if b"\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
    return data if data.endswith(b"\r\n") else data + b"\r\n"


class SmtpConnection:
    """One session with the relay, reused for many messages.

    A message's data goes out as soon as the relay says 354, but its final `.` waits: the next
    `step` first waits until the previous message's outcome is stored (`settle`), then sends that
    `.`. Where the relay offers PIPELINING, the `.` travels in one write with the next message's
    MAIL, RCPT and DATA, so a message costs one round trip and one write of its bytes.
    """

    def __init__(self, settings: SmtpSettings, relay: Relay | None = None) -> None:
        self.settings = settings
        self.relay = relay or Relay(settings)
        self.client: smtplib.SMTP | None = None
        self.offers_pipelining = False
        self.sent = 0
        # Returns once the latest outcome reported is stored; called before the relay may accept the next message.
        self.settle: Callable[[], None] | None = None
        # The message whose data went out and whose final "." has not yet, with its tag.
        self.open_message: tuple[Outgoing | LazyOutgoing, object] | None = None

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
        self.offers_pipelining = client.has_extn("pipelining")
        self.sent = 0

    @property
    def pipelining(self) -> bool:
        """The relay offers PIPELINING and has not mishandled it in this run."""
        return self.offers_pipelining and self.relay.pipelining

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

    def step(self, message: Outgoing | LazyOutgoing | None, tag: object, report: Report) -> None:
        """Finish the open message (its final `.`, once the previous outcome is stored), then start
        `message` (None: only finish). `report(tag, result)` hears each outcome as its reply arrives
        and returns the wait for it to be stored."""
        opened, self.open_message = self.open_message, None
        if opened is not None:
            then = message if message is not None and self.pipelining and not _unsafe(message) else None
            if self._finish_open(opened[1], report, then) and then is not None:
                try:
                    self._begin(then, tag, report, chained=True)
                except _DISCONNECTED as error:
                    self.abandon()
                    self._report(report, tag, dropped(error))
                return
        if message is not None:
            self._start(message, tag, report)

    def flush(self) -> None:
        """Wait for the latest outcome to be stored (an error there is the recorder's to report)."""
        settle, self.settle = self.settle, None
        if settle is not None:
            with contextlib.suppress(Exception):
                settle()

    def _report(self, report: Report, tag: object, result: SendResult) -> None:
        self.settle = report(tag, result)

    def _start(self, message: Outgoing | LazyOutgoing, tag: object, report: Report) -> None:
        """Send the envelope and the data of `message` on this session (opened if need be); a stale
        reused session, or one whose relay mishandled PIPELINING, is reopened once before anything
        is sent. An unreachable relay raises `RelayUnreachable` (nothing was sent)."""
        if _unsafe(message):
            self._report(
                report, tag, SendResult("failed", None, "5.1.3", f"refused to send: bad address {message.recipient!r}")
            )
            return
        reused = self.client is not None and self.sent > 0
        try:
            if self.client is None:
                self.open()
            self._begin(message, tag, report)
            return
        except _Broken as broken:  # nothing was accepted: again without pipelining
            self.relay.distrust_pipelining(str(broken))
            self.abandon()
        except _Stale as stale:
            self.abandon()
            if not reused:
                self._report(report, tag, dropped(stale.__cause__ or stale))
                return
        except _DISCONNECTED as error:
            self.abandon()
            self._report(report, tag, dropped(error))
            return
        try:
            self.open()
            self._begin(message, tag, report)
        except (_Stale, _Broken, *_DISCONNECTED) as error:
            self.abandon()
            self._report(report, tag, dropped(error.__cause__ or error))

    def _begin(self, message: Outgoing | LazyOutgoing, tag: object, report: Report, *, chained: bool = False) -> None:
        """MAIL, RCPT and DATA (already written when `chained`), then the data without its final `.`."""
        client = self.session
        try:
            if chained:  # the first reply of this pipelined group was the previous message's final one
                replies = _pipelined_replies(client, answered=1)
            elif self.pipelining:
                self._write(_envelope(message))
                replies = _pipelined_replies(client, answered=0)
            else:
                replies = []
                for line in _envelope(message).split(b"\r\n")[:3]:
                    self._write(line + b"\r\n")
                    replies.append(client.getreply())
                    if replies[-1][0] >= 400:
                        break
        except _Broken as broken:
            if not chained:
                raise
            self.relay.distrust_pipelining(str(broken))  # nothing was accepted: again, without pipelining
            self.abandon()
            self._start(message, tag, report)
            return
        except _DISCONNECTED as error:
            if chained:  # nothing was accepted: try once more on a new session
                self.abandon()
                self._start(message, tag, report)
                return
            raise _Stale() from error
        self.sent += 1
        refused = next((reply for reply in replies[:2] if reply[0] >= 300), None)
        if replies[-1][0] == 354:
            if refused is None:
                try:
                    data = message.data  # built only now: a message never built never reached the relay
                    safe = getattr(message, "safe", False) and data.endswith(b"\r\n")
                    self._write(data if safe else dot_stuffed(data))
                except _DISCONNECTED as error:
                    self.abandon()
                    self._report(report, tag, dropped(error))
                    return
                self.open_message = (message, tag)
                return
            self._write(b".\r\n")
            client.getreply()
        self._report(report, tag, self._finish(refused or replies[-1], reset=True))

    def _finish_open(self, tag: object, report: Report, then: Outgoing | LazyOutgoing | None) -> bool:
        """Send the open message's final `.` (with `then`'s envelope after it) once the previous
        outcome is stored, and report its reply. True when `then`'s envelope went on this session."""
        settle, self.settle = self.settle, None
        if settle is not None:
            settle()
        try:
            self._write(b".\r\n" + _envelope(then) if then is not None else b".\r\n")
            final = self.session.getreply()
        except _DISCONNECTED as error:
            self.abandon()
            self._report(report, tag, dropped(error))
            return False
        if then is not None and not _is_final(final[0]):
            # a reply that cannot end a message: the relay answered the pipelined group out of
            # order, so which reply was this message's is unknown; it is retried, never guessed
            self.relay.distrust_pipelining(f"it answered {final[0]} to the end of a message")
            self.abandon()
            self._report(report, tag, UNKNOWN_OUTCOME)
            return False
        if then is None or final[0] == 421:
            self._report(report, tag, self._finish(final))
            return False
        # the transaction is over whatever the reply: the pipelined MAIL starts the next one
        self._report(report, tag, result_from_reply(*final))
        return True

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


Report = Callable[[object, SendResult], Callable[[], None] | None]


def _unsafe(message: Outgoing | LazyOutgoing) -> bool:
    return bool(_UNSAFE_ADDRESS.search(message.sender + message.recipient))


def _envelope(message: Outgoing | LazyOutgoing) -> bytes:
    return f"MAIL FROM:<{message.sender}>\r\nRCPT TO:<{message.recipient}>\r\nDATA\r\n".encode()


def _is_final(code: int) -> bool:
    """A reply that can end a transaction: 2xx, 4xx or 5xx (never 354 or another 1xx/3xx)."""
    return 200 <= code < 300 or 400 <= code < 600


def _pipelined_replies(client: smtplib.SMTP, *, answered: int) -> list[tuple[int, bytes]]:
    """The replies to a pipelined MAIL, RCPT and DATA (`answered`: replies of the same write read
    before them). Raises `_Broken` when the relay drops some of them (it answered part of the
    write, then nothing within the timeout) or answers out of sequence."""
    replies: list[tuple[int, bytes]] = []
    for _ in range(3):
        try:
            replies.append(client.getreply())
        except smtplib.SMTPServerDisconnected as error:
            if answered + len(replies) and _timed_out(error):
                raise _Broken(f"no reply to pipelined command {answered + len(replies) + 1} of the write") from error
            raise
    if why := _out_of_sequence([code for code, _ in replies]):
        raise _Broken(why)
    return replies


def _out_of_sequence(codes: list[int]) -> str:
    """Why replies to MAIL, RCPT and DATA cannot be theirs ("" when they can)."""
    mail, rcpt, data = codes
    if any(not 200 <= code < 600 for code in codes):
        return f"replies {mail}, {rcpt}, {data} to MAIL, RCPT, DATA"
    if 354 in (mail, rcpt):
        return f"354 before DATA (replies {mail}, {rcpt}, {data})"
    accepted = mail < 300 and rcpt < 300
    if (mail < 300 and rcpt == 503) or (accepted and (data == 503 or (data < 400 and data != 354))):
        return f"replies {mail}, {rcpt}, {data} to MAIL, RCPT, DATA"
    return ""


def _timed_out(error: BaseException) -> bool:
    """smtplib turns a read timeout into SMTPServerDisconnected; the timeout is its context."""
    return isinstance(error.__context__, TimeoutError) or "timed out" in str(error)


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


class _Broken(Exception):
    """The relay mishandled a pipelined exchange before accepting anything for this message."""


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

    def __init__(
        self, messages: Sequence[Outgoing | LazyOutgoing], on_result: OnResult | None, relay_down: str = "defer"
    ) -> None:
        self.messages = messages
        self.on_result = on_result
        self.relay_down = relay_down  # "defer" each message when the relay is unreachable, or "raise"
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
        self.relay = Relay(settings)

    def send(self, message: Outgoing | LazyOutgoing) -> SendResult:
        return self.send_many([message])[0]

    def send_many(self, messages: Sequence[Outgoing | LazyOutgoing]) -> list[SendResult]:
        return self.send_each(messages)

    def send_each(
        self,
        messages: Sequence[Outgoing | LazyOutgoing],
        on_result: OnResult | None = None,
        relay_down: str = "defer",
    ) -> list[SendResult]:
        """Send a batch; `on_result(index, result)` hears each reply as it arrives.

        `on_result` may return a callable that returns once the result is safely stored: the
        session that sent the message calls it before the relay may accept its next message, so
        at most one message per session is accepted and not yet stored.

        When no session can be opened (the relay refused the connection or did not answer),
        each message is deferred, or with `relay_down="raise"` the batch raises `RelayUnreachable`
        once the messages already on the wire are answered: the rest never reached the relay.
        """
        if not messages:
            return []
        batch = _Batch(messages, on_result, relay_down)
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
            connection = SmtpConnection(self.settings, self.relay)
            worker = threading.Thread(target=self._work, args=(connection,), name=f"smtp-{number}", daemon=True)
            self.connections.append(connection)
            self.workers.append(worker)
            worker.start()

    def _take(self, *, wait: bool) -> tuple[_Batch, int] | None:
        """The next message (of a domain with a free session, when limited); holding the condition.

        None when closing, or when nothing can be taken now and `wait` is false."""
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
            if not wait:
                return None
            self.cond.wait()
        return None

    def _work(self, connection: SmtpConnection) -> None:
        """One session's loop: take a message, finish the open one and start this one; finish
        the open one alone when nothing else is waiting."""
        held: list[tuple[_Batch, int]] = []  # taken and not yet answered: the open message, the one starting

        def report(tag: object, result: SendResult) -> Callable[[], None] | None:
            batch, index = cast(tuple[_Batch, int], tag)
            settle = batch.on_result(index, result) if batch.on_result is not None else None
            held.remove((batch, index))
            batch.results[index] = result
            self._done(batch, batch.messages[index])
            return settle

        while True:
            with self.cond:
                taken = self._take(wait=False)
            if taken is None and connection.open_message is None:
                connection.flush()  # idle: store the last outcome now rather than at the next message
                with self.cond:
                    taken = self._take(wait=True)
                if taken is None:
                    connection.close()
                    return
            try:
                if taken is not None:
                    held.append(taken)
                    self.limiter.wait()
                    connection.step(taken[0].messages[taken[1]], taken, report)
                else:
                    connection.step(None, None, report)
            except RelayUnreachable as error:  # nothing of the message taken reached the relay
                connection.abandon()
                connection.flush()
                for batch, index in list(held):
                    if batch.relay_down == "raise":
                        held.remove((batch, index))
                        self._done(batch, batch.messages[index], error=error)
                    else:
                        report((batch, index), dropped(error))
            except BaseException as error:
                connection.abandon()
                connection.open_message = connection.settle = None
                for batch, index in held:
                    self._done(batch, batch.messages[index], error=error)
                held.clear()

    def _done(self, batch: _Batch, message: Outgoing | LazyOutgoing, error: BaseException | None = None) -> None:
        with self.cond:
            if error is not None:
                batch.error = batch.error or error
            else:
                batch.remaining -= 1
            batch.busy -= 1
            self.active[message.domain if self.per_domain else ""] -= 1
            if self.per_domain or batch.error is not None or not batch.remaining or not batch.busy:
                self.cond.notify_all()  # a session may take that domain now; send_each may return

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        for worker in self.workers:
            worker.join(timeout=self.settings.timeout)
        self.workers.clear()
        self.connections.clear()
        self.closing = False
        self.relay.pipelining = True  # a new run trusts the relay's PIPELINING again
