"""Build the relay, projector, alerts, plugins and mailer workers from a System (the processes
that run them are in adapters/entrypoints.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from adapters.entrypoints import run_until_signalled as run_until_signalled  # (moved there)
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


def build_alerts_worker(system: System) -> Any:
    """The alert evaluator's worker (one active per read-model store)."""
    from adapters.alerts.worker import AlertsWorker, evaluator_of

    return AlertsWorker(evaluator_of(system), _lock(system, "alerts"), poll_seconds=0.25)


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


def build_mailer_worker(system: System, transport: Any = None) -> Any:
    """The mailer's worker: sends the outbox through TALLY_SMTP_URL (one active per
    read-model store)."""
    from adapters.smtp.worker import MailerWorker, build_sender

    sender = build_sender(system, transport)
    poll = system.settings.mailer_poll_seconds
    return MailerWorker(sender, _lock(system, "mailer"), poll_seconds=poll)
