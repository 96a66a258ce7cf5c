"""The workers `tally serve` runs beside the API, in a process of their own, for P2 and P11.

`python -m benchmarks.tally_workers [--without NAME ...]` runs every projector worker (but
the ones named), the alerts worker and the sealer in one process, as `tally serve` would
with NATS, until SIGTERM. The benchmarks run the API with TALLY_SERVE_WORKERS=false, the
relay and the usage projector as `tally worker relay` and `tally worker projector usage`
(each its own process, as docker-compose runs them), and this for the rest: the API process
then keeps its core for the requests (in the server, the projectors took 19% of its GIL).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any


def workers(system: Any, without: Sequence[str]) -> list[Any]:
    """The projector workers (but `without`), the alerts worker and the sealer."""
    from adapters.eventstore.seal_worker import build_sealer_worker
    from adapters.nats.workers import build_alerts_worker, build_projector_worker

    built: list[Any] = [
        build_projector_worker(system, projector.NAME, projector)
        for projector in system.runner.projectors
        if projector.NAME not in without
    ]
    return [*built, build_alerts_worker(system), build_sealer_worker(system)]


def main(argv: Sequence[str]) -> None:
    from adapters.entrypoints import run_until_signalled, worker_system

    without = list(argv[1:]) if argv[:1] == ["--without"] else []
    with worker_system() as system:
        running = workers(system, without)

        async def run_all(stop: asyncio.Event) -> None:
            await asyncio.gather(*(worker.run(stop) for worker in running))

        run_until_signalled(run_all)


if __name__ == "__main__":
    main(sys.argv[1:])
