"""Asking pending addresses to confirm (re-permission after an import), exactly once each.

`send_confirmations` queues every pending address not asked before into the confirm-pending
ledger, then leases rows in batches of `[delivery] batch_size`, sends each a confirmation mail
through `[delivery]`'s transport (so its `rate_limit` applies) and records each answer only after
the server gave it. A run that stops on an error gives its batch back (sent again next run; if the
transport raised half-way through a batch, its first messages may go twice); a run that is killed
leaves at most one batch `sending`, sent again once `[delivery] lease` runs out. Nobody else is
ever sent twice, and an address is never queued twice. `again` queues once more the addresses
asked longer ago than `[web] confirm_expiry` (their link has expired) that are still pending: each
gets one more mail from that run, and a run right after asks nobody again.
The link in the mail is the web sign-up's confirmation link: opening it confirms the address.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from publisher import tokens
from publisher.clock import Clock, system_clock
from publisher.config import DeliverySettings, Settings
from publisher.signup import Mailer, human_duration
from publisher.store import Store
from publisher.store.reconfirmations import Answer, Asking, Standing
from publisher.transports import Outgoing, SendResult, Transport, make_transport


@dataclass(frozen=True)
class Failure:
    """A confirmation mail that could not be delivered: to whom, the server's answer, and whether
    the address is now suppressed (a 5xx)."""

    email: str
    code: int | None
    detail: str
    suppressed: bool


@dataclass
class ReconfirmReport:
    """What one `confirm-pending --send` run did, and where the ledger stands."""

    queued: int = 0  # addresses added to the ledger by this run
    asked_again: int = 0  # addresses queued once more by `again`
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    failures: list[Failure] = field(default_factory=list)
    ledger: dict[str, int] = field(default_factory=dict)  # rows per state after the run
    standing: Standing | None = None  # where the pending addresses stand after the run

    @property
    def open(self) -> int:
        return sum(self.ledger.get(state, 0) for state in ("pending", "sending", "deferred"))


def decide(row: Asking, result: SendResult, delivery: DeliverySettings, now: datetime) -> Answer:
    """The ledger entry for one server answer: sent, failed (5xx, or retried too long), or deferred."""
    from publisher.dispatch import backoff

    answer = partial(Answer, row.subscriber_id, row.token, code=result.code, detail=result.detail)
    if result.outcome == "delivered":
        return answer(state="sent")
    if result.outcome == "failed" or now - row.queued_at >= delivery.give_up_after:
        return answer(state="failed")
    return answer(state="deferred", next_attempt_at=now + backoff(row.attempts, delivery))


def compose(settings: Settings, mailer: Mailer, row: Asking, now: datetime) -> Outgoing:
    payload = {
        "s": row.subscriber_id,
        "n": row.nonce,
        "l": list(row.newsletters),
        "t": json.loads(row.topics_json),
        "m": row.name,
    }
    data = mailer.build(
        "reconfirm",
        row.email,
        row.newsletters,
        now,
        name=row.name,
        confirm_url=tokens.confirm_url(settings.site.url, settings.secret_keys, payload),
        expiry=human_duration(settings.web.confirm_expiry, settings.site.language),
        titles=[settings.newsletters[name].title for name in row.newsletters if name in settings.newsletters],
    )
    return Outgoing(mailer.envelope(row.newsletters, row.subscriber_id), row.email, data)


def standing(settings: Settings, store: Store, newsletter: str | None, now: datetime) -> Standing:
    """Where the pending addresses stand: never asked, asked and waiting (and how many of those
    links have expired), confirmed since asked, failed."""
    return store.reconfirmations.standing(newsletter, asked_before=now - settings.web.confirm_expiry)


def send_confirmations(
    settings: Settings,
    store: Store,
    *,
    newsletter: str | None = None,
    again: bool = False,
    transport: Transport | None = None,
    clock: Clock = system_clock,
    progress: Callable[[int], None] | None = None,
) -> ReconfirmReport:
    """Queue the pending addresses not asked before (and, `again`, those asked longer ago than
    `[web] confirm_expiry` who have not confirmed), then send every due confirmation mail."""
    delivery, mailer = settings.delivery, Mailer(settings)
    now = clock()
    report = ReconfirmReport(queued=store.reconfirmations.queue(newsletter, now))
    if again:
        report.asked_again = store.reconfirmations.ask_again(
            newsletter, asked_before=now - settings.web.confirm_expiry, now=now
        )
    own = transport is None
    transport = transport or make_transport(delivery)
    try:
        while batch := store.reconfirmations.lease(
            newsletter, limit=delivery.batch_size, now=clock(), lease_for=delivery.lease
        ):
            _send_batch(settings, store, mailer, transport, batch, clock, report)
            if progress is not None:
                progress(len(batch))
    finally:
        if own:
            transport.close()
    report.ledger = store.reconfirmations.counts()
    report.standing = standing(settings, store, newsletter, clock())
    return report


def _send_batch(
    settings: Settings,
    store: Store,
    mailer: Mailer,
    transport: Transport,
    batch: list[Asking],
    clock: Clock,
    report: ReconfirmReport,
) -> None:
    try:
        now = clock()
        results = transport.send_many([compose(settings, mailer, row, now) for row in batch])
    except BaseException:
        store.reconfirmations.release(batch, clock())  # no answers recorded: the next run asks these again
        raise
    now = clock()
    answers = [decide(row, result, settings.delivery, now) for row, result in zip(batch, results, strict=True)]
    store.reconfirmations.record(answers, now)
    report.sent += sum(answer.state == "sent" for answer in answers)
    report.failed += sum(answer.state == "failed" for answer in answers)
    report.deferred += sum(answer.state == "deferred" for answer in answers)
    report.failures += [
        Failure(row.email, answer.code, answer.detail, (answer.code or 0) >= 500)
        for row, answer in zip(batch, answers, strict=True)
        if answer.state == "failed"
    ]
