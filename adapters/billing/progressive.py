"""Progressive billing on ingest: after usage of a tenant whose plan has thresholds is
committed, an interim invoice is checked for at once, off the request path.

The ingest tells which tenants it counted usage for; those with a progressive subscription
(the ownership index) are queued; a worker thread waits until the usage read model has
applied the commit (bounded), then sends `invoice_thresholds` with that cut-off. Billing runs
check every progressive subscription too, so a check missed here (a crash, the read model
lagging past the bound) is made by the next run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from commands.billing.invoice_thresholds import InvoiceThresholds
from domain.errors import DomainError

if TYPE_CHECKING:
    from uuid import UUID

    from adapters.bootstrap import System

log = structlog.get_logger(__name__)

WAIT_SECONDS = 5.0


class ProgressiveTrigger:
    """Queues threshold checks after usage commits; one worker thread sends them."""

    def __init__(self, system: System, wait_seconds: float = WAIT_SECONDS) -> None:
        self.system, self.wait_seconds = system, wait_seconds
        self._queue: queue.Queue[tuple[str, UUID, int] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def usage_committed(self, app_id: str, tenants: Sequence[str]) -> None:
        """The ingest's hook: queue a check for each progressive subscription of these tenants."""
        index = self.system.index
        subscriptions = index.ids(app_id, "subscription_progressive")
        if not subscriptions:
            return
        wanted = set(tenants)
        head = self.system.ledger.recorder.max_notification_id() or 0
        for subscription_id in subscriptions:
            if index.tenant_of(app_id, "subscription", subscription_id) in wanted:
                self._start()
                self._queue.put((app_id, subscription_id, head))

    def drain(self) -> None:
        """Wait until every queued check was made (tests)."""
        self._queue.join()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="progressive", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._check(*item)
            except Exception as error:  # a check is retried by the next billing run
                log.warning("progressive_check_failed", error=str(error))
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _check(self, app_id: str, subscription_id: UUID, head: int) -> None:
        cutoff = self.system.usage_reader.wait_for(head, self.wait_seconds)
        command = InvoiceThresholds(
            app_id=app_id, subscription_id=subscription_id, usage_cutoff=cutoff, actor="usage"
        )
        try:
            self.system.handle(command)
        except DomainError as error:
            log.info("progressive_check_refused", error=str(error))
