"""`tally worker sealer` (and, in `tally serve`, beside the API): the sealer, one active at a
time. It holds the instance lock `tally:<read-model prefix>:sealer` (as the relay does; others
wait to take over) and seals what was committed every `poll_seconds`. It needs no NATS: a
NATS outage never stops sealing, and sealing never slows a command."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from adapters.eventstore.seal import Sealer, SealStore
from adapters.nats.singleton import InstanceLock, instance_lock, sleep_unless, wait_for_lock

if TYPE_CHECKING:
    from adapters.bootstrap import System

log = structlog.get_logger(__name__)

POLL_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 5.0


class SealerWorker:
    """Runs the sealer while it holds the lock, until `stop` is set."""

    def __init__(self, sealer: Sealer, lock: InstanceLock, poll_seconds: float = POLL_SECONDS):
        self.sealer, self.lock, self.poll_seconds = sealer, lock, poll_seconds

    def stop(self) -> None:
        """Nothing to interrupt: `run` ends when its stop event is set (after its pass)."""

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not await wait_for_lock(self.lock, stop, self.poll_seconds):
                return
            await self._seal_while_held(stop)
        await asyncio.to_thread(self.lock.release)

    async def _seal_while_held(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set() and await asyncio.to_thread(self.lock.still_held):
            try:
                sealed = await asyncio.to_thread(self.sealer.seal_pending)
            except Exception as error:  # the store is down or busy: back off, try again
                failures += 1
                delay = min(MAX_BACKOFF_SECONDS, self.poll_seconds * 2**failures)
                log.warning("sealer_failed_will_retry", error=repr(error), retry_in=delay)
                await sleep_unless(stop, delay)
                continue
            failures = 0
            if sealed:
                log.debug("sealer_sealed", count=sealed, total=self.sealer.sealed)
            await sleep_unless(stop, self.poll_seconds)


def sealer_lock(system: System) -> InstanceLock:
    """The one-active-sealer lock, where the read models (and the relay's lock) live."""
    dialect, target = system.settings.views_target
    return instance_lock(dialect, target, f"tally:{system.views.prefix}:sealer")


def build_sealer_worker(system: System) -> SealerWorker:
    """The sealer of this system's event store."""
    return SealerWorker(Sealer(SealStore(system.ledger.recorder)), sealer_lock(system))


def run_sealer() -> None:
    """`tally worker sealer`."""
    from adapters.bootstrap import bootstrap
    from adapters.nats.workers import run_until_signalled

    system = bootstrap(deliver_in_process=False)
    try:
        run_until_signalled(build_sealer_worker(system).run)
    finally:
        system.close()
