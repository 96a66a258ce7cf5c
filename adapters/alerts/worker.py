"""`tally worker alerts`: the alert evaluator on the real stack, one active at a time.

The evaluator reads the event log itself (never past the usage read model's position) and
records what fired as AlertTriggered events, so this worker needs no NATS consumer: it holds
the instance lock (as the relay does; others wait to take over) and evaluates whenever the
log or the usage read model moved, every `poll_seconds`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from adapters.alerts.evaluator import AlertEvaluator
from adapters.nats.singleton import InstanceLock, sleep_unless, wait_for_lock

log = structlog.get_logger(__name__)


class AlertsWorker:
    """Runs the evaluator while it holds the lock, until `stop` is set."""

    def __init__(
        self, evaluator: AlertEvaluator, lock: InstanceLock, poll_seconds: float = 0.5
    ) -> None:
        self.evaluator, self.lock, self.poll_seconds = evaluator, lock, poll_seconds

    def stop(self) -> None:
        """Nothing to interrupt: `run` ends when its stop event is set."""

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not await wait_for_lock(self.lock, stop, self.poll_seconds):
                return
            await self._evaluate_while_held(stop)
        await asyncio.to_thread(self.lock.release)

    async def _evaluate_while_held(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and await asyncio.to_thread(self.lock.still_held):
            try:
                fired = await asyncio.to_thread(self.evaluator.evaluate)
                if fired:
                    log.info("alerts_fired", count=fired)
            except Exception as error:  # a database hiccup: log, wait, evaluate again
                log.warning("alerts_evaluation_failed", error=str(error))
            await sleep_unless(stop, self.poll_seconds)


def evaluator_of(system: Any) -> AlertEvaluator:
    alerts = getattr(system.runner, "alerts", None)
    if not isinstance(alerts, AlertEvaluator):
        raise ValueError("this system has no alert evaluator")
    return alerts
