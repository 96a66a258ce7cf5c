"""Run the billing engine on a System: the cut-off, the candidates and the commands.

The cut-off is the event log's head when the run starts; the usage read model is caught up
to it first (in process: synchronously; on the real stack: waited for, bounded), so every
usage event recorded before the run is billed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from commands.base import Command
from commands.billing.run import BillingRun, Execute, Owned, due_command
from domain.clock import SettableClock

if TYPE_CHECKING:
    from adapters.bootstrap import System

CATCH_UP_SECONDS = 10.0

Build = Callable[[str, str, Any, int], Command]  # (app, action, aggregate, cutoff)


def usage_cutoff(system: System, timeout: float = CATCH_UP_SECONDS) -> int:
    """The log head now, once the usage read model has applied it."""
    head = system.ledger.recorder.max_notification_id() or 0
    if system.delivery is not None or system.settings.nats_url is None:
        system.sync()
    return system.usage_reader.wait_for(head, timeout)


def run_billing(
    system: System,
    owned: Owned,
    app_id: str,
    clock: SettableClock,
    until: datetime,
    *,
    execute: Execute | None = None,
    build: Build | None = None,
    max_actions: int | None = None,
) -> dict[str, Any]:
    """One app's billing run up to `until` (commands/billing/run.py)."""
    cutoff = usage_cutoff(system)
    make = build or (
        lambda app, action, aggregate, cut: due_command(app, action, aggregate, cutoff=cut)
    )
    run = BillingRun(
        load=system.aggregate,
        owned=owned,
        execute=execute or system.handle,
        clock=clock,
        build=lambda app, action, aggregate: make(app, action, aggregate, cutoff),
    )
    if max_actions is not None:
        run.max_actions = max_actions
    return {**run.run(app_id, until), "usage_cutoff": cutoff}
