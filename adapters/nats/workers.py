"""Build the relay and projector workers from a System, and run them until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog

from adapters.nats.projector_worker import ProjectorWorker
from adapters.nats.relay import Relay
from adapters.nats.singleton import instance_lock
from adapters.nats.stream import StreamSettings
from projections.base import Projector

if TYPE_CHECKING:
    from adapters.bootstrap import System

log = structlog.get_logger(__name__)


def _nats_url(system: System) -> str:
    url = system.settings.nats_url
    if not url:
        raise ValueError("TALLY_NATS_URL is not set: the workers need NATS JetStream")
    return url


def _lock(system: System, name: str) -> Any:
    """A lock where the tracking positions live, distinct per read-model store (prefix)."""
    dialect, target = system.settings.views_target
    return instance_lock(dialect, target, f"tally:{system.views.prefix}:{name}")


def build_relay(system: System, **options: Any) -> Relay:
    """The relay for this system's event store; `options` override Relay's defaults."""
    settings = system.settings
    kwargs: dict[str, Any] = {
        "recorder": system.ledger.recorder,
        "views": system.views,
        "lock": _lock(system, "relay"),
        "nats_url": _nats_url(system),
        "stream": StreamSettings.from_settings(settings),
        "batch": settings.relay_batch,
        "idle_seconds": settings.relay_idle_seconds,
    }
    kwargs.update(options)
    relay = Relay(**kwargs)
    relay.on_published.append(system.metrics.relay_published.inc)
    return relay


def find_projector(system: System, name: str) -> Projector:
    projectors = {p.NAME: p for p in system.runner.projectors}
    if name not in projectors:
        known = ", ".join(sorted(projectors)) or "none registered"
        raise KeyError(f"no projector named {name!r} (known: {known})")
    return projectors[name]


def build_projector_worker(
    system: System, name: str, projector: Projector | None = None, **options: Any
) -> ProjectorWorker:
    """The JetStream worker for one projector (by NAME, or the projector given)."""
    settings = system.settings
    projector = projector or find_projector(system, name)
    kwargs: dict[str, Any] = {
        "views": system.views,
        "projector": projector,
        "lock": _lock(system, f"proj-{projector.NAME}"),
        "nats_url": _nats_url(system),
        "stream": StreamSettings.from_settings(settings),
        "batch": settings.projector_batch,
        "wait_seconds": settings.projector_wait_seconds,
    }
    kwargs.update(options)
    return ProjectorWorker(**kwargs)


def run_until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run a worker's `run(stop_event)`; SIGTERM/SIGINT set the event (graceful stop)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(stop)

    asyncio.run(main())


def run_relay() -> None:
    """`tally worker relay`."""
    from adapters.bootstrap import bootstrap

    system = bootstrap(deliver_in_process=False)
    try:
        relay = build_relay(system)
        run_until_signalled(relay.run)
    finally:
        system.close()


def run_projector(name: str) -> None:
    """`tally worker projector NAME`."""
    from adapters.bootstrap import bootstrap

    system = bootstrap(deliver_in_process=False)
    try:
        worker = build_projector_worker(system, name)
        run_until_signalled(worker.run)
    finally:
        system.close()


def build_alerts_worker(system: System) -> Any:
    """The alert evaluator's worker (one active per read-model store)."""
    from adapters.alerts.worker import AlertsWorker, evaluator_of

    return AlertsWorker(evaluator_of(system), _lock(system, "alerts"), poll_seconds=0.25)


def run_alerts() -> None:
    """`tally worker alerts`."""
    from adapters.bootstrap import bootstrap

    system = bootstrap(deliver_in_process=False)
    try:
        run_until_signalled(build_alerts_worker(system).run)
    finally:
        system.close()


def build_plugins_worker(system: System, **options: Any) -> Any:
    """The plugins' hook runner fed from JetStream (durable consumer `plugins`)."""
    from adapters.plugins.wiring import hook_runner
    from adapters.plugins.worker import PluginsWorker

    kwargs: dict[str, Any] = {
        "runner": hook_runner(system),
        "views": system.views,
        "lock": _lock(system, "plugins"),
        "nats_url": _nats_url(system),
        "stream": StreamSettings.from_settings(system.settings),
        "batch": 20,  # hooks are slow next to projections: a short batch is acked sooner
        "ack_wait": 120.0,
    }
    kwargs.update(options)
    return PluginsWorker(**kwargs)


def run_plugins() -> None:
    """`tally worker plugins`."""
    from adapters.bootstrap import bootstrap

    system = bootstrap(deliver_in_process=False)
    try:
        run_until_signalled(build_plugins_worker(system).run)
    finally:
        system.close()


def build_mailer_worker(system: System, transport: Any = None) -> Any:
    """The mailer's worker: sends the outbox through TALLY_SMTP_URL (one active per
    read-model store)."""
    from adapters.smtp.worker import MailerWorker, build_sender

    sender = build_sender(system, transport)
    poll = system.settings.mailer_poll_seconds
    return MailerWorker(sender, _lock(system, "mailer"), poll_seconds=poll)


def run_mailer() -> None:
    """`tally worker mailer`."""
    from adapters.bootstrap import bootstrap

    system = bootstrap(deliver_in_process=False)
    try:
        run_until_signalled(build_mailer_worker(system).run)
    finally:
        system.close()
