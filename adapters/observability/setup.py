"""Observability wired into a process and a System (called by bootstrap)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from adapters.observability import tracing
from adapters.observability.commands import CommandTelemetry
from adapters.observability.logs import configure_logging
from adapters.settings import Settings

if TYPE_CHECKING:
    from adapters.bootstrap import System


def start_observing(settings: Settings) -> None:
    """Logs as the settings say (unless the process configured them already: the CLI, a
    test) and spans when OTEL_EXPORTER_OTLP_ENDPOINT is set. The standard library's logging
    is left to the program that embeds Tally (the CLI routes it, for uvicorn)."""
    if not structlog.is_configured():
        configure_logging(settings.log_format, settings.log_level, stdlib=False)
    tracing.install_from_environment()


def flush_traces() -> None:
    """Export the spans still buffered (a System closing)."""
    tracing.flush()


def observe_system(system: System) -> None:
    """Commands watched by the System's metrics; the lag gauges read from its stores."""
    system.bus.observer = CommandTelemetry(system.metrics)
    system.metrics.watch_lag(
        head=lambda: system.ledger.recorder.max_notification_id() or 0,
        positions=lambda: tracked_positions(system.views),
        projectors=[projector.NAME for projector in system.runner.projectors],
        relay=bool(system.settings.nats_url),
    )


def tracked_positions(views: Any) -> dict[str, int]:
    """Every reader's tracked position (projectors, the relay, hook runners), by name."""
    rows = views.query(f"SELECT projection, position FROM {views.physical('tracking')}")
    return {str(row["projection"]): int(row["position"]) for row in rows}
