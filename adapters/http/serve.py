"""`tally serve`: the HTTP API under uvicorn, with the workers the configuration needs.

- Embedded default (no TALLY_NATS_URL): read models are fed in process after each commit
  (bootstrap's LocalDelivery thread); only the API runs here.
- With TALLY_NATS_URL: the relay (event store -> JetStream), one JetStream projector worker
  per read model and the alerts worker run in this process too, as asyncio tasks beside
  uvicorn (built with adapters/nats/workers.py). `tally worker relay|projector NAME` runs
  them separately instead (scale-out); the relay and each projector hold a lock, so extra
  copies wait as standbys.
- With TALLY_SMTP_URL (either way): the mailer, which sends the outbox's mails
  (docs/email.md); `tally worker mailer` runs it separately instead.
- Either way: the sealer, which seals committed events into each app's hash chain (ADR 0016);
  `tally worker sealer` runs it separately instead.

SIGTERM/SIGINT: uvicorn stops accepting connections and finishes the requests in flight
(up to `graceful_seconds`); then the lifespan's shutdown stops the workers (each finishes its
batch) and closes the system (in-process delivery catches read models up first). The process
then exits 0.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog
import uvicorn
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from adapters.http.app import create_app

if TYPE_CHECKING:
    from adapters.bootstrap import System

log = structlog.get_logger(__name__)


def _workers(system: System) -> list[Any]:
    """The relay, a projector worker per read model and the alerts worker, when NATS is
    configured; the mailer when SMTP is and the Stripe workers when Stripe is, and the
    sealer (with or without NATS)."""
    if not system.settings.serve_workers:
        return []  # workers run as `tally worker ...` (scale-out)
    from adapters.eventstore.seal_worker import build_sealer_worker
    from adapters.stripe.worker import build_stripe_workers

    mailer = _mailer(system) + build_stripe_workers(system) + [build_sealer_worker(system)]
    if not system.settings.nats_url:
        return mailer  # embedded delivery feeds the read models in process
    from adapters.nats.workers import (
        build_alerts_worker,
        build_plugins_worker,
        build_projector_worker,
        build_relay,
    )

    relay = build_relay(system)
    system.bus.on_commit.append(relay.wake)  # publish right after each commit here
    workers: list[Any] = [relay]
    workers += [
        build_projector_worker(system, projector.NAME, projector)
        for projector in system.runner.projectors
    ]
    if system.plugins.registry.hook_plugins():
        workers.append(build_plugins_worker(system))  # lifecycle hooks (docs/plugins.md)
    return [*workers, build_alerts_worker(system), *mailer]


def _mailer(system: System) -> list[Any]:
    """The mailer (sends the outbox), when TALLY_SMTP_URL is set."""
    if not system.settings.smtp_url:
        return []
    from adapters.nats.workers import build_mailer_worker

    return [build_mailer_worker(system)]


def build(system: System) -> FastAPI:
    """The app with a lifespan that runs the workers and closes the system at shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        workers = _workers(system)
        tasks = [asyncio.create_task(worker.run(stop)) for worker in workers]
        log.info(
            "tally_serving",
            store=system.settings.database_url.split("@")[-1],
            nats=bool(system.settings.nats_url),
            workers=len(tasks),
        )
        try:
            yield
        finally:
            stop.set()
            for worker in workers:
                worker.stop()
            for task, result in zip(
                tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True
            ):
                if isinstance(result, BaseException):
                    log.error("worker_failed", task=task.get_name(), error=repr(result))
            await run_in_threadpool(system.close)
            log.info("tally_stopped")

    return create_app(system, lifespan=lifespan)


def serve_system(
    system: System, host: str = "127.0.0.1", port: int = 8000, graceful_seconds: float = 30.0
) -> None:
    """Serve `system` until SIGTERM/SIGINT (the process: adapters/entrypoints.py `serve`)."""
    config = uvicorn.Config(
        build(system),
        host=host,
        port=port,
        lifespan="on",
        timeout_graceful_shutdown=int(graceful_seconds),
        log_level="info",
        access_log=False,  # ours: adapters/http/observe.py
        log_config=None,  # uvicorn's lines through our renderer (adapters/observability/logs.py)
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal it caught once it has shut down; with these no-op
    # handlers in place that ends the process normally (exit 0) after a graceful stop.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    asyncio.run(server.serve())
