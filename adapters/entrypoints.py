"""Every process Tally runs, in one place: `tally serve` and each `tally worker ...`.

Each builds the system from settings (adapters/bootstrap.py), runs until SIGTERM/SIGINT and
stops gracefully, then closes the system:

- `serve`: the HTTP API under uvicorn, with the workers the configuration needs
  (adapters/http/serve.py; its lifespan closes the system);
- `run_relay`, `run_projector`, `run_alerts`, `run_plugins`, `run_mailer`: the JetStream
  relay and workers (built by adapters/nats/workers.py), the store's event delivery off;
- `run_command_bus`: the NATS command and query bus (adapters/nats/command_bus.py);
- `run_sealer`, `run_stripe`: the hash-chain sealer and the Stripe workers (their modules
  build them).
"""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from adapters.observability.worker_metrics import serve_worker_metrics

if TYPE_CHECKING:
    from adapters.bootstrap import System

Run = Callable[[asyncio.Event], Awaitable[None]]


def run_until_signalled(run: Run) -> None:
    """Run a worker's `run(stop_event)`; SIGTERM/SIGINT set the event (graceful stop)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(stop)

    asyncio.run(main())


def settle_heap() -> None:
    """Once a process has started (imports done, system built): collect, then freeze what
    is left, so the collector never walks those objects again. The hot paths allocate a lot
    (usage ingest: several objects per event) and each full collection walked the whole
    start-up heap: about a third of the API's CPU per usage event (docs/benchmarks.md, P2).
    The collector is back on from here (`pause_collector`)."""
    gc.collect()
    gc.freeze()
    gc.enable()


def pause_collector() -> None:
    """No collection until `settle_heap`: what the start allocates (modules, classes, models,
    routes) lives on, so the collections the imports trigger walk an ever larger heap for
    nothing (TARGETS.md P9: about a fifth of the start's CPU); `settle_heap` collects once."""
    gc.disable()


@contextmanager
def worker_system() -> Iterator[System]:
    """The system of a worker process (no in-process delivery: NATS delivers), closed after."""
    pause_collector()
    from adapters.bootstrap import bootstrap

    system = bootstrap(deliver_in_process=False)
    settle_heap()
    stop_metrics = serve_worker_metrics(system)  # GET /metrics when TALLY_METRICS_PORT is set
    try:
        yield system
    finally:
        stop_metrics()
        system.close()


def _worker(build: Callable[[System], Any]) -> None:
    """Run the worker `build(system)` makes until a signal stops it."""
    with worker_system() as system:
        run_until_signalled(build(system).run)


def serve(host: str = "127.0.0.1", port: int = 8000, graceful_seconds: float = 30.0) -> None:
    """`tally serve`."""
    pause_collector()
    from adapters.bootstrap import bootstrap
    from adapters.http.serve import serve_system

    system = bootstrap()
    settle_heap()
    serve_system(system, host=host, port=port, graceful_seconds=graceful_seconds)


def run_relay() -> None:
    """`tally worker relay`."""
    from adapters.nats.workers import build_relay

    _worker(build_relay)


def run_projector(name: str) -> None:
    """`tally worker projector NAME` (KeyError naming the known ones for another name)."""
    from adapters.nats.workers import build_projector_worker

    _worker(lambda system: build_projector_worker(system, name))


def run_alerts() -> None:
    """`tally worker alerts`."""
    from adapters.nats.workers import build_alerts_worker

    _worker(build_alerts_worker)


def run_plugins() -> None:
    """`tally worker plugins`."""
    from adapters.nats.workers import build_plugins_worker

    _worker(build_plugins_worker)


def run_mailer() -> None:
    """`tally worker mailer`."""
    from adapters.nats.workers import build_mailer_worker

    _worker(build_mailer_worker)


def run_command_bus(**options: Any) -> None:
    """`tally worker command-bus`: `options` go to CommandBusServer (prefix, max_batch, ...)."""
    from adapters.bootstrap import bootstrap
    from adapters.nats.command_bus import serve_command_bus

    system = bootstrap()
    stop_metrics = serve_worker_metrics(system)  # GET /metrics when TALLY_METRICS_PORT is set
    try:
        url = system.settings.nats_url
        if not url:
            raise ValueError("TALLY_NATS_URL is not set: the command bus needs NATS")
        run_until_signalled(lambda stop: serve_command_bus(system, url, stop, **options))
    finally:
        stop_metrics()
        system.close()


def run_sealer() -> None:
    """`tally worker sealer`."""
    from adapters.eventstore.seal_worker import run_sealer as sealer

    sealer()


def run_stripe() -> None:
    """`tally worker stripe`."""
    from adapters.stripe.worker import run_stripe as stripe

    stripe()
