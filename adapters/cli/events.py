"""`tally events`: the audit trail as a table, optionally following new events."""

from __future__ import annotations

import time
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from adapters.bootstrap import bootstrap


def run(*, aggregate: str | None, tenant: str | None, after: int, limit: int, follow: bool) -> None:
    console = Console()
    system = bootstrap()
    position = after
    try:
        while True:
            rows = _read(system, position, limit, aggregate, tenant)
            if rows:
                console.print(_table(rows))
                position = rows[-1]["position"]
            if not follow:
                return
            time.sleep(0.5)
    except KeyboardInterrupt:
        return
    finally:
        system.close()


def _read(
    system: Any, after: int, limit: int, aggregate: str | None, tenant: str | None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    start = after + 1
    while len(rows) < limit:
        batch = system.ledger.recorder.select_notifications(start=start, limit=500)
        if not batch:
            break
        for note in batch:
            state = orjson.loads(note.state)
            if aggregate and str(note.originator_id) != aggregate:
                continue
            if tenant and state.get("tenant_id") != tenant:
                continue
            rows.append({"position": note.id, "note": note, "state": state})
        start = batch[-1].id + 1
    return rows[:limit]


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table("pos", "occurred at", "event", "v", "tenant", "actor", "command")
    for column in table.columns[:3]:
        column.no_wrap = True
    for row in rows:
        note, state = row["note"], row["state"]
        table.add_row(
            str(row["position"]),
            state.get("timestamp", "")[5:16].replace("T", " "),
            note.topic,
            str(note.originator_version),
            state.get("tenant_id") or "",
            state.get("actor") or "",
            state.get("command_id") or "",
        )
    return table
