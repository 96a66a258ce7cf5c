"""`tally worker stripe` (and, in `tally serve`, beside the API): the Stripe sync, one active
at a time (it holds the instance lock; others wait to take over), every `poll_seconds`; and
the webhook inbox's drain (retries and what a crash left pending), which needs no lock."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

from adapters.nats.singleton import InstanceLock, sleep_unless, wait_for_lock
from adapters.stripe.sync import StripeSync

if TYPE_CHECKING:
    from adapters.bootstrap import System

log = structlog.get_logger(__name__)


class StripeWorker:
    """Runs the sync while it holds the lock, until `stop` is set."""

    def __init__(self, sync: StripeSync, lock: InstanceLock, poll_seconds: float = 1.0) -> None:
        self.sync, self.lock, self.poll_seconds = sync, lock, poll_seconds

    def stop(self) -> None:
        """Nothing to interrupt: `run` ends when its stop event is set (after its round)."""

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not await wait_for_lock(self.lock, stop, self.poll_seconds):
                return
            await self._sync_while_held(stop)
        await asyncio.to_thread(self.lock.release)

    async def _sync_while_held(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and await asyncio.to_thread(self.lock.still_held):
            try:
                report = await asyncio.to_thread(self.sync.run_due)
                if report.total:
                    log.info("stripe_sync", done=report.done, retrying=report.retrying)
                if report.total == self.sync.batch:
                    continue  # more may be due at once
            except Exception as error:  # a database hiccup: again next round
                log.warning("stripe_sync_failed", error=str(error))
            await sleep_unless(stop, self.poll_seconds)


def build_stripe_workers(system: System) -> list[Any]:
    """The sync worker and the inbox worker of a System with Stripe (none without)."""
    from adapters.nats.singleton import instance_lock
    from adapters.stripe.inbox_worker import InboxWorker

    services = system.stripe
    if services is None:
        return []
    dialect, target = system.settings.views_target
    lock = instance_lock(dialect, target, f"tally:{system.views.prefix}:stripe")
    poll = system.settings.stripe_poll_seconds
    workers: list[Any] = [StripeWorker(services.sync, lock, poll)]
    if services.intake is not None:
        workers.append(InboxWorker(services.intake, poll_seconds=max(poll, 5.0)))
    return workers


def run_stripe() -> None:
    """`tally worker stripe`."""
    from adapters.bootstrap import bootstrap
    from adapters.nats.workers import run_until_signalled

    system = bootstrap(deliver_in_process=False)
    try:
        workers = build_stripe_workers(system)

        async def run_all(stop: asyncio.Event) -> None:
            await asyncio.gather(*(worker.run(stop) for worker in workers))

        run_until_signalled(run_all)
    finally:
        system.close()
