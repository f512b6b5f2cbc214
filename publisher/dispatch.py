"""Dispatch decides *what* to send and *to whom*; a `Transport` decides how.

Starting an issue freezes its audience into the deliveries ledger. `send_issue` then leases rows
in batches, hands each batch to the transport and writes each outcome only after the server
answered. Each recipient's message is built from the compiled issue just ahead of the transport
(a small window, so memory does not grow with the batch). While one batch is on the wire the
next is leased, so a worker holds at most two batches (2 × batch_size rows) in `sending`: after a
crash those, and only those, may be sent again once their lease expires.

Deferred recipients come back after an exponential backoff (retry_first, doubling up to
retry_max) until give_up_after has passed since the audience was frozen; then they fail as a
soft bounce. A 5xx is a hard bounce.
"""

from __future__ import annotations

import contextlib
import threading
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
    SendResult,
    Transport,
    make_transport,
)
from publisher.verp import UNSUBSCRIBE, make_token
from publisher.verp import address as verp_address

Compose = Callable[[Any, datetime], Outgoing | LazyOutgoing]


@dataclass(frozen=True)
class Progress:
    """What one recorded batch changed, for a progress bar."""

    delivered: int = 0
    failed: int = 0
    deferred: int = 0
    total: int | None = None  # set on the first step of a send: how many recipients it has to try


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
        return LazyOutgoing(verp(leased) or compiled.sender, leased.email, partial(build, leased, now, message))

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


@dataclass
class _Batch:
    leased: list[Leased]
    future: Future
    messages: list = field(default_factory=list)


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
) -> SendReport:
    """Send every recipient of a started issue that is due now; mark the issue sent when none is left.

    Returns when nothing more is due now: finished, paused or cancelled, or only deferred rows
    (and leases held by other workers) remain, due at `next_attempt_at`. When `should_stop()`
    turns true (the service is shutting down), the batch on the wire is finished and recorded,
    nothing more is leased, and the issue stays `sending` for the next start to resume.
    """
    ahead = _Ahead(max(8, 2 * delivery.smtp.connections))
    with ThreadPoolExecutor(1, thread_name_prefix="send") as wire:
        in_flight: _Batch | None = None
        waiting: list[Leased] = []  # leased, not yet handed to the transport
        try:
            while True:
                now = clock()
                waiting = (
                    []
                    if should_stop()
                    else store.deliveries.lease(issue.id, limit=delivery.batch_size, now=now, lease_for=delivery.lease)
                )
                outgoing = [ahead.wrap(compose(row, now)) for row in waiting]
                if in_flight is None and not waiting:
                    break
                results = in_flight.future.result() if in_flight is not None else []
                done, in_flight = in_flight, None
                if waiting:
                    in_flight, waiting = _Batch(waiting, wire.submit(transport.send_many, outgoing)), []
                if done is not None:  # recorded while the next batch is on the wire
                    ahead.discard(done.messages)
                    _record(store, issue.id, done.leased, results, delivery, clock(), progress)
                if in_flight is not None:
                    in_flight.messages = outgoing
                    ahead.prepare(outgoing, in_flight.future)
        except BaseException:
            _settle(store, issue.id, waiting, in_flight, delivery, clock, progress)
            raise
    return report(store, issue, clock())


class _Built:
    """The bytes of one lazy message: built ahead by dispatch, or by the transport if it gets there first."""

    __slots__ = ("lock", "make", "ready", "slots", "taken")

    def __init__(self, make: Callable[[], bytes], slots: threading.Semaphore) -> None:
        self.make, self.slots, self.lock = make, slots, threading.Lock()
        self.ready: bytes | None = None
        self.taken = False

    def __call__(self) -> bytes:
        with self.lock:
            data, self.ready, self.taken = self.ready, None, True
        if data is None:
            return self.make()
        self.slots.release()
        return data

    def prepare(self, wire: Future) -> bool:
        """Build now, once a slot in the window is free; False if the batch ended meanwhile."""
        while not self.slots.acquire(timeout=0.05):
            if wire.done():
                return False
        with self.lock:
            taken = self.taken
        data = None if taken else self.make()
        with self.lock:
            if not self.taken:
                self.ready = data
                return True
        self.slots.release()
        return True

    def discard(self) -> None:
        with self.lock:
            data, self.ready, self.taken = self.ready, None, True
        if data is not None:
            self.slots.release()


class _Ahead:
    """Builds the messages of the batch on the wire just ahead of the transport.

    Composing overlaps the network, while at most `window` built messages wait in memory: the
    memory a send needs does not grow with the batch, let alone the audience.
    """

    def __init__(self, window: int) -> None:
        self.slots = threading.Semaphore(window)

    def wrap(self, message: Outgoing | LazyOutgoing) -> Outgoing | LazyOutgoing:
        if isinstance(message, LazyOutgoing):
            return LazyOutgoing(message.sender, message.recipient, _Built(message.build, self.slots))
        return message

    @staticmethod
    def prepare(messages: list, wire: Future) -> None:
        for message in messages:
            built = getattr(message, "build", None)
            if isinstance(built, _Built) and not built.prepare(wire):
                return

    @staticmethod
    def discard(messages: list) -> None:
        for message in messages:
            built = getattr(message, "build", None)
            if isinstance(built, _Built):
                built.discard()


def _settle(
    store: Store,
    issue_id: int,
    waiting: list[Leased],
    in_flight: _Batch | None,
    delivery: DeliverySettings,
    clock: Clock,
    progress: Callable[[Progress], None] | None,
) -> None:
    """On the way out after an error or Ctrl-C: give back rows never sent, record the batch on the wire.

    Whatever cannot be settled stays `sending` and is sent again when its lease runs out.
    """
    try:
        store.deliveries.release(issue_id, waiting, clock())
        if in_flight is not None and in_flight.future.exception() is None:
            _record(store, issue_id, in_flight.leased, in_flight.future.result(), delivery, clock(), progress)
    except Exception:  # noqa: S110 - already unwinding from an error; the lease is the backstop
        pass


def _record(
    store: Store,
    issue_id: int,
    leased: list[Leased],
    results: list[SendResult],
    delivery: DeliverySettings,
    now: datetime,
    progress: Callable[[Progress], None] | None,
) -> None:
    if len(results) != len(leased):
        raise DeliveryError(f"the transport answered {len(results)} times for {len(leased)} messages")
    outcomes = [decide(row, result, delivery, now) for row, result in zip(leased, results, strict=False)]
    store.deliveries.record(issue_id, outcomes, now, soft_bounce_limit=delivery.soft_bounce_limit)
    if progress is not None:
        progress(
            Progress(
                delivered=sum(o.state == "delivered" for o in outcomes),
                failed=sum(o.state == "failed" for o in outcomes),
                deferred=sum(o.state == "deferred" for o in outcomes),
            )
        )


def report(store: Store, issue: Issue, now: datetime) -> SendReport:
    """Counts per state; a started issue with nothing left open becomes `sent`."""
    counts = store.deliveries.counts(issue.id)
    current = store.issues.get(issue.newsletter, issue.number)
    state = current.state if current else issue.state
    result = SendReport(issue.id, counts, state, store.deliveries.next_attempt(issue.id))
    if state == "sending" and result.first_pass_done:
        # another worker may have finished it first, or an operator paused it meanwhile
        with contextlib.suppress(DigestError):
            result.issue_state = store.issues.transition(issue.newsletter, issue.number, "sent", now).state
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
) -> SendReport:
    """Start the issue if it has not started (freezing its audience), then send what is due now.

    Renders the issue and opens `[delivery]`'s transport unless given them; safe to call again
    (it resumes: delivered rows are never sent again). `started`: the caller started it already.
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
            store, issue, compose, transport, settings.delivery, clock=clock, progress=progress, should_stop=should_stop
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
    """The `publisher digest send NAME --json` object (product.md), plus the per-state counts."""
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
