"""The composition root: builds the whole system from settings. Opens nothing at import."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from adapters.eventstore.history import state_as_of
from adapters.eventstore.ledger import Ledger, open_ledger
from adapters.settings import Settings
from commands.base import Command
from commands.bus import CommandBus, CommandResult
from commands.registry import HANDLERS
from domain.clock import Clock, SettableClock, SystemClock


@dataclass
class System:
    """Tally in one process: `handle` runs commands, `query` reads."""

    settings: Settings
    clock: Clock
    ledger: Ledger
    bus: CommandBus

    def handle(self, command: Command) -> CommandResult:
        return self.bus.handle(command)

    def dispatch(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.bus.dispatch(name, payload)

    def aggregate(
        self, aggregate_id: UUID, *, version: int | None = None, as_of: datetime | None = None
    ) -> Any:
        """An aggregate now, at a version, or as it was at a past instant (None if absent)."""
        if as_of is not None:
            return state_as_of(self.ledger, aggregate_id, as_of)
        return self.ledger.get(aggregate_id, version=version)

    def close(self) -> None:
        self.ledger.close()


def bootstrap(
    settings: Settings | None = None, clock: Clock | None = None, *, schema: str | None = None
) -> System:
    """Wire settings -> clock -> event store -> command bus."""
    settings = settings or Settings()
    clock = clock or (SettableClock() if settings.clock == "settable" else SystemClock())
    ledger = open_ledger(settings, schema)
    bus = CommandBus(
        store=ledger, clock=clock, handlers=HANDLERS, max_attempts=settings.command_retries
    )
    return System(settings=settings, clock=clock, ledger=ledger, bus=bus)
