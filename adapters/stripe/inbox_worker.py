"""The Stripe inbox worker: drains the webhook inbox every `poll_seconds`.

It retries the events whose processing failed (when their backoff passed) and processes
those a crash left pending. Any number may run (on PostgreSQL claims skip the rows another
process holds), so it needs no instance lock. Run it as a thread (`start`/`stop`) or as an
asyncio task beside the other workers (`run(stop_event)`, as `tally serve` runs them).
"""

from __future__ import annotations

import asyncio
import threading

import structlog

from adapters.nats.singleton import sleep_unless
from adapters.stripe.intake import WebhookIntake, error_text

log = structlog.get_logger(__name__)


class InboxWorker:
    """Calls `intake.drain()` until stopped; a failing round is logged and tried again."""

    def __init__(self, intake: WebhookIntake, poll_seconds: float = 1.0, batch: int = 100) -> None:
        self.intake, self.poll_seconds, self.batch = intake, poll_seconds, batch
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Drain in a background thread until `stop`."""
        if self._thread is not None:
            return
        self._stopped.clear()
        self._thread = threading.Thread(target=self._loop, name="stripe-inbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread (after its round) or the asyncio `run`; waits for the thread."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and not self._stopped.is_set():
            drained = await asyncio.to_thread(self.drain_once)
            if drained < self.batch:  # a full batch: more may be due at once
                await sleep_unless(stop, self.poll_seconds)

    def drain_once(self) -> int:
        """One round; returns how many rows it attempted (0 when the round failed)."""
        try:
            drained = self.intake.drain(self.batch)
        except Exception as error:  # the database down: the rows wait, try again later
            log.warning("stripe_inbox_drain_failed", error=error_text(error))
            return 0
        if drained:
            log.info("stripe_inbox_drained", attempted=drained)
        return drained

    def _loop(self) -> None:
        while not self._stopped.is_set():
            if self.drain_once() < self.batch:
                self._stopped.wait(self.poll_seconds)
