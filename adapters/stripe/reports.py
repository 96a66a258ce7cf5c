"""The last reconciliation report of each app, in the views database (its own table: not a
read model, never replayed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import orjson

from adapters.readmodels.sql_store import SqlViewTx, ViewStore
from projections.base import Projector

REPORTS = "stripe_reconciliations"


class ReportTables(Projector):
    NAME: ClassVar[str] = "stripe_reconciler"
    TABLES: ClassVar[dict[str, tuple[Sequence[str], Sequence[str]]]] = {
        REPORTS: (
            ["app_id TEXT NOT NULL", "ran_at TEXT NOT NULL", "report TEXT NOT NULL"],
            ["app_id"],
        ),
    }


class ViewReportStore:
    """ReportStore on the views database."""

    def __init__(self, views: ViewStore) -> None:
        self.views = views
        views.ensure(ReportTables())

    def save(self, app_id: str, report: dict[str, Any]) -> None:
        with self.views.transaction() as conn:
            tx = SqlViewTx(self.views, conn)
            tx.upsert(
                REPORTS,
                {"app_id": app_id},
                {"ran_at": report["ran_at"], "report": orjson.dumps(report).decode()},
            )
            tx.flush()

    def last(self, app_id: str) -> dict[str, Any] | None:
        rows = self.views.query(
            f"SELECT report FROM {{{REPORTS}}} WHERE app_id = :app", {"app": app_id}
        )
        return orjson.loads(rows[0]["report"]) if rows else None
