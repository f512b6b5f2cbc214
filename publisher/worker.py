"""`publisher worker`: a delivery-only process, as many as the relay can take.

A worker runs no timetable and no web app. It sends whatever issue is `sending` (started by
`publisher run`, `digest send` or `announce`) and the deferred recipients of sent issues whose
retry time has come, then looks again every `poll` seconds. Any number of workers, on any number
of hosts against one PostgreSQL, share an issue's ledger: each leases its own rows (SKIP LOCKED),
and when one dies the others take its rows at once (`lock.WorkerLock`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING

from publisher import redact
from publisher.errors import PublisherError
from publisher.model import IssueState

if TYPE_CHECKING:
    from publisher.dispatch import SendReport
    from publisher.model import Issue
    from publisher.publication import Publication, StopCheck

log = logging.getLogger("publisher.worker")
POLL = 1.0  # seconds between looks for work when there was none


def waiting(pub: Publication) -> list[Issue]:
    """Issues with work for a worker now: sending ones, and sent ones with retries due, oldest first."""
    store, now, found = pub.store, pub.now(), []
    for name in pub.settings.newsletters:
        for issue in store.issues.list(name, states=(IssueState.SENDING, IssueState.SENT)):
            if (
                issue.state == IssueState.SENDING
                or store.deliveries.counts(issue.id).get("sending")  # a retry whose sender may have died
                or store.deliveries.due_retries(issue.id, now)
            ):
                found.append(issue)
    return found


def deliver_waiting(pub: Publication, should_stop: StopCheck) -> list[tuple[Issue, SendReport]]:
    """One round: send each issue with work waiting; returns what each send did."""
    done = []
    for issue in waiting(pub):
        if should_stop():
            break
        report = pub.deliver_started(issue, should_stop=should_stop)
        done.append((issue, report))
        run = report.run
        if any(run.values()):
            log.info(
                "%s #%d: %d delivered, %d failed, %d deferred, %d taken over from dead workers",
                issue.newsletter,
                issue.number,
                run.get("delivered", 0),
                run.get("failed", 0),
                run.get("deferred", 0),
                run.get("taken_over", 0),
            )
    return done


def serve(pub: Publication, stop: threading.Event, poll: float = POLL) -> None:
    """Deliver until `stop` is set; a stop finishes the messages handed to the relay and records them."""
    log.info(
        "worker started on %s:%d, database %s: sending issues that are sending or due for retry "
        "(each send round owns its ledger rows under a fresh worker id)",
        socket.gethostname(),
        os.getpid(),
        redact.url(pub.settings.database.url),
    )
    while not stop.is_set():
        try:
            busy = any(any(report.run.values()) for _, report in deliver_waiting(pub, stop.is_set))
        except PublisherError as error:
            log.error("worker: %s", error)
            busy = False
        if not busy:
            stop.wait(poll)
    log.info("worker stopped")
