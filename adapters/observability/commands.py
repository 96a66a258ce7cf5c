"""The command bus's observer: each command counted by name and outcome and timed, a span
around it, and its name, command_id and correlation id on every log line it writes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import structlog

from adapters.observability import tracing
from adapters.observability.logs import bound
from adapters.observability.metrics import SystemMetrics
from commands.base import Command
from domain.errors import DomainError

log = structlog.get_logger(__name__)


class _Watch:
    """One watched command or group commit (a plain class: cheaper than a generator)."""

    __slots__ = ("_context", "_span", "commands", "outcomes", "started", "telemetry")

    def __init__(self, telemetry: CommandTelemetry, commands: Sequence[Command]) -> None:
        self.telemetry, self.commands = telemetry, commands
        self.outcomes: Sequence[str] = ()
        first = commands[0] if commands else None
        self._context = _context(first, len(commands))
        self._span = _span(first, len(commands))
        self.started = 0.0

    def settled(self, outcomes: Sequence[str]) -> None:
        self.outcomes = outcomes

    def __enter__(self) -> _Watch:
        self.started = time.perf_counter()
        self._context.__enter__()
        self._span.__enter__()
        return self

    def __exit__(self, kind: Any, error: BaseException | None, trace: Any) -> None:
        try:
            if isinstance(error, DomainError):
                self.outcomes = [error.code] * len(self.commands)
            elif isinstance(error, Exception):
                self.outcomes = ["internal_error"] * len(self.commands)
            self._span.__exit__(kind, error, trace)
            self.telemetry.count(self.commands, self.outcomes, time.perf_counter() - self.started)
        finally:
            self._context.__exit__(kind, error, trace)


class CommandTelemetry:
    """Metrics, a span and log context for each command or group commit the bus runs."""

    def __init__(self, metrics: SystemMetrics) -> None:
        self.metrics = metrics
        self.log = log.bind()  # resolved once: a filtered debug line then costs nothing

    def watch(self, commands: Sequence[Command]) -> _Watch:
        return _Watch(self, commands)

    def count(self, commands: Sequence[Command], outcomes: Sequence[str], took: float) -> None:
        for command, outcome in zip(commands, outcomes, strict=False):
            self.metrics.command(command.NAME, outcome, took)
        if outcomes:  # off unless TALLY_LOG_LEVEL=debug
            self.log.debug("command_done", outcome=outcomes[0], ms=round(took * 1000, 3))


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
        return _NO_SPAN
    if command is None or count != 1:
        return tracing.span("commands.batch", {"tally.command.count": count})
    attributes = {"tally.command": command.NAME, "tally.app_id": command.app_id}
    if command.command_id:
        attributes["tally.command_id"] = command.command_id
    return tracing.span(f"command {command.NAME}", attributes)


_NO_SPAN = nullcontext()
