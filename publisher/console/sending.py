"""Sends started from the console run in a thread of their own, one per newsletter at a time,
while the issue's page refreshes its counts from the ledger."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from publisher.errors import PublisherError

log = logging.getLogger(__name__)


class Sends:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.threads: dict[str, threading.Thread] = {}
        self.errors: dict[str, str] = {}

    def running(self, newsletter: str) -> bool:
        with self.lock:
            thread = self.threads.get(newsletter)
            return thread is not None and thread.is_alive()

    def last_error(self, newsletter: str) -> str:
        with self.lock:
            return self.errors.get(newsletter, "")

    def start(self, newsletter: str, work: Callable[[], object]) -> bool:
        """Run `work` (a `Publication` send) in the background; False when one is running already."""
        with self.lock:
            thread = self.threads.get(newsletter)
            if thread is not None and thread.is_alive():
                return False
            self.errors.pop(newsletter, None)
            thread = threading.Thread(
                target=self._run, args=(newsletter, work), name=f"console-send-{newsletter}", daemon=True
            )
            self.threads[newsletter] = thread
            thread.start()
        return True

    def _run(self, newsletter: str, work: Callable[[], object]) -> None:
        try:
            work()
        except PublisherError as error:
            log.error("console send of %s stopped: %s", newsletter, error)
            with self.lock:
                self.errors[newsletter] = str(error)
        except Exception:
            log.exception("console send of %s crashed", newsletter)
            with self.lock:
                self.errors[newsletter] = "the send stopped on an unexpected error: see the server's log"

    def wait(self, timeout: float = 30.0) -> None:
        """Wait for every running send (at shutdown, and in tests)."""
        with self.lock:
            threads = list(self.threads.values())
        for thread in threads:
            thread.join(timeout)
