"""The command bus's observer: each command counted by name and outcome and timed, a span
around it, and its name, command_id and correlation id on every log line it writes."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import structlog

from adapters.observability import tracing
from adapters.observability.logs import bound
from adapters.observability.metrics import SystemMetrics
from commands.base import Command
from domain.errors import DomainError

log = structlog.get_logger(__name__)


class _Watch:
    def __init__(self) -> None:
        self.outcomes: Sequence[str] | None = None

    def settled(self, outcomes: Sequence[str]) -> None:
        self.outcomes = outcomes


class CommandTelemetry:
    """Metrics, a span and log context for each command or group commit the bus runs."""

    def __init__(self, metrics: SystemMetrics) -> None:
        self.metrics = metrics

    @contextmanager
    def watch(self, commands: Sequence[Command]) -> Iterator[_Watch]:
        watch, started = _Watch(), time.perf_counter()
        first = commands[0] if commands else None
        with _context(first, len(commands)):
            try:
                with _span(first, len(commands)):
                    yield watch
            except DomainError as error:
                watch.outcomes = [error.code] * len(commands)
                raise
            except Exception:
                watch.outcomes = ["internal_error"] * len(commands)
                raise
            finally:
                self._count(commands, watch.outcomes or (), time.perf_counter() - started)

    def _count(self, commands: Sequence[Command], outcomes: Sequence[str], took: float) -> None:
        for command, outcome in zip(commands, outcomes, strict=False):
            self.metrics.command(command.NAME, outcome, took)
        if outcomes:  # off unless TALLY_LOG_LEVEL=debug
            log.debug("command_done", outcome=outcomes[0], ms=round(took * 1000, 3))


def _context(command: Command | None, count: int) -> AbstractContextManager[None]:
    if command is None or count != 1:
        return bound(commands=count)
    context = {
        "command": command.NAME,
        "command_id": command.command_id,
        "correlation_id": command.correlation_id or command.command_id,
    }
    return bound(**{key: value for key, value in context.items() if value})


def _span(command: Command | None, count: int) -> AbstractContextManager[Any]:
    if not tracing.enabled():
        return tracing.span("")  # a no-op
    if command is None or count != 1:
        return tracing.span("commands.batch", {"tally.command.count": count})
    attributes = {"tally.command": command.NAME, "tally.app_id": command.app_id}
    if command.command_id:
        attributes["tally.command_id"] = command.command_id
    return tracing.span(f"command {command.NAME}", attributes)
