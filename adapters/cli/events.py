"""`tally events`: the audit trail as a table, optionally following new events."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table

from adapters.bootstrap import bootstrap
from adapters.eventstore.envelopes import read_envelopes
from projections.envelope import EventEnvelope


def run(*, aggregate: str | None, tenant: str | None, after: int, limit: int, follow: bool) -> None:
    console = Console()
    system = bootstrap()
    position = after
    try:
        while True:
            events = read_log(system, position, limit, aggregate, tenant)
            if events:
                console.print(log_table(events))
                position = events[-1].position
            if not follow:
                return
            time.sleep(0.5)
    except KeyboardInterrupt:
        return
    finally:
        system.close()


def read_log(
    system: Any, after: int, limit: int, aggregate: str | None, tenant: str | None
) -> list[EventEnvelope]:
    """Up to `limit` events after a position, optionally one aggregate's or one tenant's."""
    found: list[EventEnvelope] = []
    while len(found) < limit:
        batch = read_envelopes(system.ledger.recorder, after, 500)
        if not batch:
            break
        found += [
            e
            for e in batch
            if (not aggregate or str(e.aggregate_id) == aggregate)
            and (not tenant or e.tenant_id == tenant)
        ]
        after = batch[-1].position
    return found[:limit]


def log_table(events: list[EventEnvelope]) -> Table:
    table = Table("pos", "occurred at", "event", "v", "tenant", "actor", "command")
    for column in table.columns[:3]:
        column.no_wrap = True
    for event in events:
        table.add_row(
            str(event.position),
            event.occurred_at[5:16].replace("T", " "),
            event.type,
            str(event.version),
            event.tenant_id or "",
            event.actor or "",
            event.command_id or "",
        )
    return table
