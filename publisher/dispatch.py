"""Dispatch decides *what* to send and *to whom*; a `Transport` decides how.

Starting an issue freezes its audience into the deliveries ledger. `send_issue` then leases rows
in batches as one worker (`lock.WorkerLock`: its id owns the rows), hands each batch to the
transport, and stores each outcome as its reply arrives. Each recipient's message is built from
the compiled issue when the transport takes it, so memory holds the messages on the wire, not
batches. The next batch waits queued behind the one on the wire, so no connection idles.

A session waits for its previous outcome to be stored before the relay may accept its next
message: after a crash at most one message per connection was accepted and not recorded, and only
those can reach a reader twice. The rows a dead worker held are taken over at once by the next
run or another worker; a lease that runs out (a hung worker) is the backstop.

Deferred recipients come back after an exponential backoff (retry_first, doubling up to
retry_max) until give_up_after has passed since the audience was frozen; then they fail as a
soft bounce. A 5xx is a hard bounce.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from publisher.clock import Clock, running_from, system_clock
from publisher.config import DeliverySettings, NewsletterSettings, Settings
from publisher.editions import Editions, issue_editions
from publisher.errors import DeliveryError, DigestError
from publisher.lock import WorkerLock, make_worker_lock
from publisher.message import CompiledMessage, Signer, message_id
from publisher.message import compile_message as compile_message  # callers compile through dispatch too
from publisher.model import Issue, IssueState, PlannedIssue, RenderedIssue
from publisher.store import Store
from publisher.store.deliveries import OPEN_STATES, Leased, Outcome
from publisher.timetable import wave_time
from publisher.tokens import preferences_url, unsubscribe_url
from publisher.transports import (
    LazyOutgoing,
    Outgoing,
    RelayUnreachable,
    SendResult,
    Transport,
    make_transport,
    send_each,
)
from publisher.verp import UNSUBSCRIBE, make_token
from publisher.verp import address as verp_address

Compose = Callable[[Any, datetime], Outgoing | LazyOutgoing]
log = logging.getLogger("publisher.dispatch")


@dataclass(frozen=True)
class Progress:
    """What one recorded batch changed, for a progress bar."""

    delivered: int = 0
    failed: int = 0
    deferred: int = 0
    total: int | None = None  # set on the first step of a send: how many recipients it has to try
    notice: str = ""  # a line for the operator (the relay is unreachable, retrying in N s; it is back)


@dataclass
class SendReport:
    """Where an issue's ledger stands after a send run."""

    issue_id: int
    counts: dict[str, int] = field(default_factory=dict)
    issue_state: str = ""
    next_attempt_at: datetime | None = None
    frozen: int | None = None  # recipients frozen by this run (None: the issue had already started)
    renders: int = 0  # editions rendered by this run (one per distinct article set, never per reader)
    skipped_now: int = 0  # readers this run found nothing for in their topics (state `skipped`)
    run: dict[str, int] = field(default_factory=dict)  # what this run did: delivered, failed, deferred, taken_over
    joined: int = 0  # other live workers this run found sending the issue (it sent alongside, then waited for them)
    relay_down: str = ""  # the relay was unreachable when this run ended ("relay HOST:PORT refused the connection")

    @property
    def recipients(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> bool:
        """Everyone has an outcome (delivered, failed or cancelled)."""
        return not any(self.counts.get(state, 0) for state in OPEN_STATES)

    @property
    def first_pass_done(self) -> bool:
        """Everyone was tried at least once: the issue counts as sent; deferrals retry under it."""
        return not (self.counts.get("pending", 0) or self.counts.get("sending", 0))

    def get(self, state: str) -> int:
        return self.counts.get(state, 0)


# --- pure decisions ------------------------------------------------------------------------


def backoff(attempts: int, delivery: DeliverySettings) -> timedelta:
    """retry_first after the first deferral, doubling each time, never more than retry_max."""
    delay = delivery.retry_first * (2 ** max(0, min(attempts - 1, 30)))
    return min(delay, delivery.retry_max)


def decide(leased: Leased, result: SendResult, delivery: DeliverySettings, now: datetime) -> Outcome:
    """The ledger entry for one server answer."""
    outcome = partial(
        Outcome,
        subscriber_id=leased.subscriber_id,
        token=leased.token,
        bounce_count=leased.bounce_count,
        code=result.code,
        status=result.status,
        detail=result.detail,
    )
    if result.outcome == "delivered":
        return outcome(state="delivered")
    if result.outcome == "failed":
        return outcome(state="failed", bounce="hard")
    if now - leased.queued_at >= delivery.give_up_after:
        return outcome(state="failed", bounce="soft", detail=f"gave up: {result.detail}")
    return outcome(state="deferred", next_attempt_at=now + backoff(leased.attempts, delivery))


# --- composing -----------------------------------------------------------------------------


class Recipient(Protocol):
    """Who one message goes to: a leased ledger row, or an audience member in a dry run."""

    @property
    def subscriber_id(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def name(self) -> str: ...


def composer(
    compiled: CompiledMessage,
    settings: Settings,
    newsletter: NewsletterSettings,
    issue: PlannedIssue,
    editions: Callable[[str], CompiledMessage | None] | None = None,
) -> Compose:
    """Fill the compiled issue for one leased recipient (links signed, Message-ID stable per recipient).

    With `editions`, each recipient gets the edition their frozen topics give (`Leased.topics`);
    rows whose topics give none were marked skipped before leasing (`prepare_editions`).

    The bytes are built when the transport sends the message, so memory holds the messages on
    the wire rather than whole batches.

    A re-sent message keeps its Message-ID (newsletter, issue number, slot, subscriber), so mail
    clients that collapse duplicates hide a re-send after a crash.
    """
    site, keys, name = settings.site, settings.secret_keys, newsletter.name
    slot = int(issue.slot.timestamp())
    return_path = settings.delivery.return_path
    issue_id = issue.id if isinstance(issue, Issue) else 0  # a dry run's planned issue has no id yet

    def verp(leased: Recipient, purpose: str = "bounce") -> str:
        return (
            verp_address(return_path, make_token(keys, issue_id, leased.subscriber_id, purpose)) if return_path else ""
        )

    def build(leased: Recipient, now: datetime, message: CompiledMessage) -> bytes:
        return message.personalise(
            subscriber_id=leased.subscriber_id,
            email=leased.email,
            name=leased.name,
            unsubscribe_url=unsubscribe_url(site.url, keys, leased.subscriber_id, name),
            preferences_url=preferences_url(site.url, keys, leased.subscriber_id),
            message_id=message_id(site.domain, name, issue.number, slot, leased.subscriber_id),
            date=now,
            unsubscribe_mailto=verp(leased, UNSUBSCRIBE),
        )

    def compose(leased: Recipient, now: datetime) -> LazyOutgoing:
        message = (editions(getattr(leased, "topics", "[]")) if editions else None) or compiled
        build_one = partial(build, leased, now, message)
        return LazyOutgoing(verp(leased) or compiled.sender, leased.email, build_one, safe=True)

    return compose


# --- running -------------------------------------------------------------------------------


def start_issue(store: Store, issue: Issue, now: datetime, newsletter: NewsletterSettings | None = None) -> int | None:
    """Freeze the audience of an approved issue and mark it sending (None: already started).

    A local-time newsletter's digest (`deliver = "local"`) goes out in waves: each reader's row is
    due at the slot's wall-clock time in their own time zone (the newsletter's, when they set none).
    """
    if issue.state == IssueState.DRAFT:
        raise DigestError(f"{issue.newsletter} issue {issue.number} is a draft: approve it before sending")
    local = newsletter is not None and newsletter.local and not issue.is_announcement
    return store.deliveries.start(issue.id, now, partial(wave_due, issue.slot, newsletter) if local else None)


def wave_due(slot: datetime, newsletter: NewsletterSettings | None, zone: str) -> datetime | None:
    """When a reader in `zone` ("" or unknown: the newsletter's) is due the local-time `slot`."""
    if newsletter is None:
        return None
    try:
        where = ZoneInfo(zone) if zone else newsletter.zone
    except (ValueError, ZoneInfoNotFoundError):
        where = newsletter.zone
    return wave_time(slot, newsletter.slot_zone, where)


def prepare_editions(store: Store, issue: Issue, editions: Editions, now: datetime) -> int:
    """Mark skipped the rows whose topics hold none of the issue's articles; returns how many."""
    if not editions.selects:
        return 0
    empty = [raw for raw in store.deliveries.topic_sets(issue.id) if not editions.has_articles(raw)]
    return store.deliveries.skip(issue.id, empty, now)


class _Recorder:
    """Stores each outcome before the session that sent it lets the relay accept another message.

    `add` keeps the outcome and returns the wait for it to be stored. A ledger thread writes
    whatever has arrived as soon as it can, in one transaction (a group commit: SQLite WAL with
    synchronous=NORMAL and PostgreSQL both keep a committed row when the client is killed), while
    the session writes its next message. The session calls the wait before that message's final
    `.`: if its outcome is still unwritten and no write is running, it writes it itself rather than
    wait for the ledger thread to be scheduled. A crash therefore leaves at most one accepted,
    unrecorded message per session. `close` stores the rest.
    """

    def __init__(
        self,
        store: Store,
        issue_id: int,
        delivery: DeliverySettings,
        clock: Clock,
        progress: Callable[[Progress], None] | None,
    ) -> None:
        self.issue_id, self.delivery, self.clock, self.progress = issue_id, delivery, clock, progress
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)  # sessions waiting for a write to finish
        self.wake = threading.Condition(self.lock)  # the ledger thread waiting for outcomes
        self.arrived: list[tuple[Leased, SendResult]] = []
        self.added = self.stored = 0
        self.writing = self.closing = False
        self.error: BaseException | None = None
        self.totals: Counter[str] = Counter()
        self.writer = contextlib.ExitStack()
        self.write = self.writer.enter_context(store.deliveries.writer())  # used by one writer at a time
        self.thread = threading.Thread(target=self._run, name="ledger", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.lock:
            while not self.closing and self.error is None:
                if self.arrived and not self.writing:
                    try:
                        self._write_arrived()
                    except BaseException:
                        return
                else:
                    self.wake.wait()

    def add(self, row: Leased, result: SendResult) -> Callable[[], None]:
        with self.cond:
            self._raise()
            self.arrived.append((row, result))
            self.added += 1
            self.wake.notify()
            return partial(self.wait, self.added)

    def wait(self, number: int) -> None:
        """Return once the `number`th outcome is stored, storing what has arrived if nobody is."""
        with self.cond:
            while self.stored < number:
                self._raise()
                if self.writing:
                    self.cond.wait()
                else:
                    self._write_arrived()

    def _raise(self) -> None:
        if self.error is not None:
            raise DeliveryError(f"recording delivery outcomes failed: {self.error}") from self.error

    def _write_arrived(self) -> None:
        """Write every outcome that has arrived; called holding the condition, released while writing."""
        taken, self.arrived = self.arrived, []
        self.writing = True
        self.cond.release()
        try:
            step = _record(self.write, self.issue_id, taken, self.delivery, self.clock())
            if self.progress is not None:
                self.progress(step)
        except BaseException as error:  # the sessions waiting on it must hear, not hang
            self.cond.acquire()
            self.error, self.writing = error, False
            self.cond.notify_all()
            raise
        self.cond.acquire()
        self.writing = False
        self.stored += len(taken)
        self.totals.update(delivered=step.delivered, failed=step.failed, deferred=step.deferred)
        self.cond.notify_all()
        self.wake.notify()

    def counts(self) -> dict[str, int]:
        """What was recorded: delivered, failed, deferred."""
        return {key: self.totals[key] for key in ("delivered", "failed", "deferred")}

    def close(self) -> None:
        """Store what has arrived and let the writer go; raises if storing failed."""
        with self.lock:
            self.closing = True
            self.wake.notify()
        self.thread.join()
        try:
            with self.cond:
                while self.writing:
                    self.cond.wait()
                self._raise()
                if self.arrived:
                    self._write_arrived()
        finally:
            self.writer.close()


class _Batch:
    """One leased batch on its way: which messages the transport took, and which were answered."""

    def __init__(self, rows: list[Leased], recorder: _Recorder) -> None:
        self.rows, self.recorder = rows, recorder
        self.handed: set[int] = set()
        self.answered: set[int] = set()
        self.future: Future | None = None

    def track(self, index: int, message: Outgoing | LazyOutgoing) -> LazyOutgoing:
        build = message.build if isinstance(message, LazyOutgoing) else partial(getattr, message, "data")

        def handed() -> bytes:
            self.handed.add(index)
            return build()

        return LazyOutgoing(message.sender, message.recipient, handed, safe=getattr(message, "safe", False))

    def answer(self, index: int, result: SendResult) -> Callable[[], None]:
        self.answered.add(index)
        return self.recorder.add(self.rows[index], result)

    def wait(self) -> None:
        """Until the transport has answered every message (raises what the transport raised)."""
        if self.future is not None:
            self.future.result()

    def never_sent(self) -> list[Leased]:
        return [row for index, row in enumerate(self.rows) if index not in self.handed | self.answered]


TAKEOVER_EVERY = 1.0  # seconds between looks for rows of dead workers while sending


def send_issue(
    store: Store,
    issue: Issue,
    compose: Compose,
    transport: Transport,
    delivery: DeliverySettings,
    *,
    clock: Clock = system_clock,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    worker: WorkerLock | None = None,
    join: bool = False,
) -> SendReport:
    """Send every recipient of a started issue that is due now; mark the issue sent when none is left.

    Returns when nothing more is due now: finished, paused or cancelled, or only deferred rows
    remain, due at `next_attempt_at`. Rows of dead workers are taken over at once. With `join`
    (`digest send`), while other live workers still hold rows of the issue it waits for them
    (taking over any that dies), so it returns with the issue as far as every sender got; a
    service's worker returns at once instead. Each outcome is stored as its reply
    arrives. When `should_stop()` turns true (the service is shutting down), the batches handed
    to the transport are finished and recorded, nothing more is leased, and the issue stays
    `sending` for the next start to resume.

    When the relay cannot be reached, the run pauses instead of deferring every reader: the rows
    not sent go back to pending (no attempt counted), and it tries again after 1, 2, 4 … 30 s
    (`progress` hears each wait as a notice) until the relay answers. Once `retry_first` has
    passed with the relay still down, every reader left is deferred once, with the relay's reason.
    """
    worker = worker or make_worker_lock(store)
    worker.hold()
    leaser = _Leaser(store, issue.id, delivery, worker)
    recorder = _Recorder(store, issue.id, delivery, clock, progress)
    outage = _Outage(delivery, progress)
    in_flight: deque[_Batch] = deque()  # handed to the transport: the one on the wire, the next queued
    leasing: list[Leased] = []  # leased, not yet handed to the transport
    try:
        with ThreadPoolExecutor(2, thread_name_prefix="send") as wire:
            try:
                while True:
                    while len(in_flight) < 2 and not should_stop() and outage.error is None:
                        now = clock()
                        leasing = leaser.lease(now)
                        if not leasing:
                            break
                        batch = _Batch(leasing, recorder)
                        messages = [batch.track(index, compose(row, now)) for index, row in enumerate(leasing)]
                        batch.future, leasing = wire.submit(send_each, transport, messages, batch.answer), []
                        in_flight.append(batch)
                    if in_flight:
                        try:
                            in_flight[0].wait()
                            outage.over()
                        except RelayUnreachable as error:  # what it did not answer never reached the relay
                            outage.hit(error)
                            store.deliveries.release(issue.id, in_flight[0].never_sent(), clock())
                        in_flight.popleft()
                        continue
                    if should_stop():
                        break
                    if outage.error is not None:
                        if outage.wait(should_stop):
                            continue  # the next batch tries the relay again
                        if not should_stop():
                            _defer_left(leaser, recorder, outage.error, clock)
                        break
                    if join and (wait := leaser.wait_for_others(clock())):
                        _sleep(wait, should_stop)
                        continue
                    break
            except BaseException:
                _settle(store, issue.id, leasing, in_flight, recorder, clock)
                raise
        recorder.close()
    finally:
        worker.release()
    result = report(store, issue, clock())
    result.run = {**recorder.counts(), "taken_over": leaser.taken_over}
    result.joined = len(leaser.seen)
    result.relay_down = outage.error.what if outage.error is not None else ""
    return result


JOIN_POLL = 0.5  # seconds between looks at other workers' rows of the issue, once none is left to lease
LOCKED_POLL = 0.05  # seconds before leasing again when the due rows were locked by another worker's lease
LOCKED_WAIT_MAX = 10.0  # seconds of finding them locked before leaving them to whoever holds them
RELAY_WAIT_FIRST, RELAY_WAIT_MAX = 1.0, 30.0  # seconds: the first wait for an unreachable relay, the longest


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> bool:
    """Sleep, waking early when `should_stop()` turns true; True when it slept it all."""
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        if should_stop():
            return False
        time.sleep(min(left, 0.1))
    return not should_stop()


class _Outage:
    """The relay could not be reached: waits before the next try, 1, 2, 4 … 30 s, for up to
    `retry_first` in all; the operator hears each wait and the relay's return."""

    def __init__(self, delivery: DeliverySettings, progress: Callable[[Progress], None] | None) -> None:
        self.bound = delivery.retry_first.total_seconds()
        self.progress = progress
        self.error: RelayUnreachable | None = None  # set while the run waits for the relay
        self.relay = "the relay"
        self.since: float | None = None
        self.delay = RELAY_WAIT_FIRST

    def tell(self, text: str) -> None:
        if self.progress is not None:
            self.progress(Progress(notice=text))
        else:
            log.warning("%s", text)

    def hit(self, error: RelayUnreachable) -> None:
        self.error, self.relay = error, error.relay
        if self.since is None:
            self.since = time.monotonic()

    def over(self) -> None:
        """A batch went through: the relay is back."""
        if self.since is not None:
            self.tell(f"{self.relay} answers again; sending")
            self.since, self.delay = None, RELAY_WAIT_FIRST

    @property
    def what(self) -> str:
        return self.error.what if self.error is not None else "the relay"

    def wait(self, should_stop: Callable[[], bool]) -> bool:
        """Sleep before the next try; False when stopped, or once `retry_first` has gone by."""
        left = self.bound - (time.monotonic() - (self.since or time.monotonic()))
        if left <= 0:
            self.tell(f"{self.what} for {_duration(self.bound)}: deferring the readers left; they are retried later")
            return False
        delay = min(self.delay, max(left, 0.1))
        self.tell(f"{self.what}; retrying in {delay:.0f} s")
        if not _sleep(delay, should_stop):
            return False
        self.delay = min(self.delay * 2, RELAY_WAIT_MAX)
        self.error = None
        return True


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _defer_left(leaser: _Leaser, recorder: _Recorder, error: RelayUnreachable, clock: Clock) -> None:
    """The relay stayed unreachable: defer each reader left once, with its reason, without trying."""
    result = SendResult("deferred", None, "4.4.1", str(error))
    while rows := leaser.lease(clock()):
        for row in rows:
            recorder.add(row, result)


class _Leaser:
    """Leases the next batch for one worker, first taking over dead workers' rows (at most once a second)."""

    def __init__(self, store: Store, issue_id: int, delivery: DeliverySettings, worker: WorkerLock) -> None:
        self.store, self.issue_id, self.delivery, self.worker = store, issue_id, delivery, worker
        self.taken_over = 0
        self.checked = float("-inf")
        self.seen: set[str] = set()  # other live workers seen holding rows of the issue
        self.locked_since: float | None = None  # since when the due rows were found locked, leasing none

    def others(self, now: datetime) -> list[str]:
        """The other live workers holding rows of the issue; rows of dead ones are taken over."""
        return self._alive(self.store.deliveries.owners(self.issue_id, besides=self.worker.worker_id), now)

    def _alive(self, owners: list[str], now: datetime) -> list[str]:
        """Those of `owners` still alive; the rows of the dead ones are taken over."""
        dead = [owner for owner in owners if not self.worker.alive(owner)]
        if dead:
            self.taken_over += self.store.deliveries.reclaim(self.issue_id, dead, now)
        return [owner for owner in owners if owner not in dead]

    def wait_for_others(self, now: datetime) -> float:
        """With nothing leased: how long to wait before leasing again, 0 when nothing is left for
        this run. Other live workers holding rows: JOIN_POLL (theirs come back to us if they die,
        taken over here). Due rows that the lease skipped as locked: another worker's lease,
        committing in a moment, so LOCKED_POLL; after LOCKED_WAIT_MAX of that they are left to
        whoever holds them (a stuck session, say)."""
        owners, due = self.store.deliveries.holders(self.issue_id, now=now, owner=self.worker.worker_id)
        alive = self._alive(owners, now)
        if len(alive) < len(owners):
            return LOCKED_POLL  # the dead ones' rows are due again: the next lease takes them
        if alive:
            self.seen.update(alive)
            return JOIN_POLL
        if not due:
            return 0
        if self.locked_since is None:
            self.locked_since = time.monotonic()
        if time.monotonic() - self.locked_since < LOCKED_WAIT_MAX:
            return LOCKED_POLL
        log.warning("due rows of issue id %s stayed locked by another session; leaving them to it", self.issue_id)
        return 0

    def lease(self, now: datetime) -> list[Leased]:
        if time.monotonic() - self.checked >= TAKEOVER_EVERY:
            self.seen.update(self.others(now))
            self.checked = time.monotonic()
        leased = self.store.deliveries.lease(
            self.issue_id,
            limit=self.delivery.batch_size,
            now=now,
            lease_for=self.delivery.lease,
            owner=self.worker.worker_id,
        )
        if leased:
            self.locked_since = None
        return leased


def _settle(
    store: Store,
    issue_id: int,
    leasing: list[Leased],
    in_flight: deque[_Batch],
    recorder: _Recorder,
    clock: Clock,
) -> None:
    """On the way out after an error or Ctrl-C: finish and record what the transport took, give
    back rows never sent. Rows whose outcome is unknown stay `sending`, owned by this worker,
    which the next run takes over at once (they may have reached their reader)."""
    never_sent = list(leasing)
    for batch in in_flight:
        with contextlib.suppress(BaseException):
            batch.wait()
        never_sent.extend(batch.never_sent())
    with contextlib.suppress(BaseException):
        recorder.close()
    with contextlib.suppress(Exception):  # already unwinding from an error; takeover is the backstop
        store.deliveries.release(issue_id, never_sent, clock())


def _record(
    write: Callable[..., int],
    issue_id: int,
    answered: list[tuple[Leased, SendResult]],
    delivery: DeliverySettings,
    now: datetime,
) -> Progress:
    outcomes = [decide(row, result, delivery, now) for row, result in answered]
    write(issue_id, outcomes, now, soft_bounce_limit=delivery.soft_bounce_limit)
    return Progress(
        delivered=sum(o.state == "delivered" for o in outcomes),
        failed=sum(o.state == "failed" for o in outcomes),
        deferred=sum(o.state == "deferred" for o in outcomes),
    )


def report(store: Store, issue: Issue, now: datetime) -> SendReport:
    """Counts per state; a started issue with nothing left open becomes `sent`."""
    counts = store.deliveries.counts(issue.id)
    current = store.issues.get(issue.newsletter, issue.number)
    state = current.state if current else issue.state
    result = SendReport(issue.id, counts, state, store.deliveries.next_attempt(issue.id))
    if state == "sending" and result.first_pass_done:
        try:
            result.issue_state = store.issues.transition(issue.newsletter, issue.number, "sent", now).state
        except DigestError:  # another worker marked it sent a moment ago, or an operator paused it
            current = store.issues.get(issue.newsletter, issue.number)
            result.issue_state = current.state if current else state
    return result


def rendered_issue(store: Store, settings: Settings, issue: PlannedIssue) -> RenderedIssue:
    """The glue to the digest side: a stored issue rendered again (rendering is deterministic)."""
    from publisher.issues import render_issue

    return render_issue(store, settings, issue)


def deliver_issue(
    store: Store,
    settings: Settings,
    issue: Issue,
    now: datetime | None = None,
    *,
    rendered: RenderedIssue | None = None,
    transport: Transport | None = None,
    clock: Clock | None = None,
    progress: Callable[[Progress], None] | None = None,
    signer: Signer | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    started: bool = False,
    join: bool = False,
) -> SendReport:
    """Start the issue if it has not started (freezing its audience), then send what is due now.

    Renders the issue and opens `[delivery]`'s transport unless given them; safe to call again
    (it resumes: delivered rows are never sent again). `started`: the caller started it already.
    `join`: wait for other live workers sending the issue too (see `send_issue`).
    """
    clock = clock or (system_clock if now is None else running_from(now))
    newsletter = settings.newsletter(issue.newsletter)
    frozen = None if started else start_issue(store, issue, clock(), newsletter)
    signer = signer if signer is not None else Signer.from_settings(settings.delivery.dkim)
    editions = issue_editions(store, settings, issue, rendered=rendered, signer=signer)
    skipped = prepare_editions(store, issue, editions, clock())
    compose = composer(editions.full(), settings, newsletter, issue, editions.for_topics)
    own = transport is None
    transport = transport or make_transport(settings.delivery)
    try:
        result = send_issue(
            store,
            issue,
            compose,
            transport,
            settings.delivery,
            clock=clock,
            progress=progress,
            should_stop=should_stop,
            join=join,
        )
    finally:
        if own:
            transport.close()
    result.frozen = frozen
    result.renders, result.skipped_now = editions.renders, skipped
    return result


# --- operator actions ----------------------------------------------------------------------


def pause(store: Store, issue: Issue, now: datetime) -> Issue:
    """Stop leasing new rows; batches on the wire finish and are recorded."""
    return store.issues.transition(issue.newsletter, issue.number, "paused", now)


def resume(store: Store, issue: Issue, now: datetime) -> Issue:
    return store.issues.transition(issue.newsletter, issue.number, "sending", now)


def cancel(store: Store, issue: Issue, now: datetime) -> tuple[Issue, int]:
    """Cancel the issue and every recipient not yet sent; returns the issue and rows cancelled."""
    cancelled = store.issues.transition(issue.newsletter, issue.number, "cancelled", now)
    return cancelled, store.deliveries.cancel_open(issue.id, now)


def summary(result: SendReport, issue: PlannedIssue, status: str) -> dict:
    """The `publisher digest send NAME --json` object (product.md), plus the per-state counts.

    A run that found another run (or worker) sending the issue says `joined`, not `resumed` or
    `sent`: one that came to start it and found it started (it froze nothing), or one that
    resumed it while another live worker held rows of it."""
    if result.frozen is None and (status == "sent" or (status == "resumed" and result.joined)):
        status = "joined"  # it meant to start the issue (or resume it) and found another run sending it
    return {
        "status": status,
        "issue": issue.number,
        "newsletter": issue.newsletter,
        "articles": len(issue.article_ids),
        "recipients": result.recipients,
        "delivered": result.get("delivered"),
        "failed": result.get("failed"),
        "deferred": result.get("deferred"),
        "pending": result.get("pending") + result.get("sending"),
        "cancelled": result.get("cancelled"),
        "skipped": result.get("skipped"),
        "renders": result.renders,
        "state": result.issue_state,
        "next_attempt_at": result.next_attempt_at.isoformat() if result.next_attempt_at else None,
        "run": {
            "frozen": result.frozen or 0,
            **{key: result.run.get(key, 0) for key in ("delivered", "failed", "deferred", "taken_over")},
        },
        "relay_unreachable": result.relay_down or None,
    }


def dry_run(store: Store, settings: Settings, issue: PlannedIssue, transport: Transport, now: datetime) -> int:
    """Write every current recipient's message through `transport`; the ledger and the issue stay
    untouched. Returns the messages written."""
    newsletter = settings.newsletter(issue.newsletter)
    editions = issue_editions(store, settings, issue)
    compose = composer(editions.full(), settings, newsletter, issue, editions.for_topics)
    written = 0
    try:
        for person in store.deliveries.audience(issue.newsletter):
            if not editions.has_articles(person.topics):
                continue  # nothing in this issue for their topics
            transport.send(compose(person, now))
            written += 1
    finally:
        transport.close()
    return written
