"""Audit exporter: every event appended as one JSON line (its envelope) to a file.

Delivery is at least once, so a line may repeat after a crash; `event_id` tells copies
apart. Setting: TALLY_AUDIT_EXPORT_PATH.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from projections.envelope import EventEnvelope


class AuditExporter:
    """Appends each event's envelope JSON to `path`, flushed per line."""

    name = "audit-export"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def on_event(self, event: EventEnvelope) -> None:
        line = event.model_dump_json() + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as export:
                export.write(line)
                export.flush()


def plugin() -> AuditExporter | None:
    """The entry point: configured by TALLY_AUDIT_EXPORT_PATH."""
    path = os.environ.get("TALLY_AUDIT_EXPORT_PATH")
    return AuditExporter(Path(path)) if path else None
