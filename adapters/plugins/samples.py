"""UsageSamples on the usage read model: the facts a UsageAggregator plugin aggregates.

The rows are the ones billing already counts (`usage_facts`, written by the usage projector
from QuotaConsumed and UsageRecorded): one per consume or recorded fact, with its value, its
time, its event id (`<event id>:<index>` for a batch's facts) and the log position of the
event that carried it. Read-only; the projector owns the table.
"""

from __future__ import annotations

from adapters.readmodels.sql_store import ViewStore
from commands.billing.strategies import UsageSample
from domain.period import Period
from projections.usage.projector import FACTS, instant_text

_SAMPLES = (
    f"SELECT value, occurred_at, event_id, position FROM {{{FACTS}}} "
    "WHERE app_id = :app_id AND tenant_id = :tenant_id AND feature_key = :feature_key "
    "AND occurred_at >= :start_at AND occurred_at < :end_at"
)


class FactSamples:
    """One feature's usage facts over [start, end), up to a log position, oldest first."""

    def __init__(self, views: ViewStore) -> None:
        self.views = views

    def samples(
        self, app_id: str, tenant_id: str, feature_key: str, period: Period, cutoff: int | None
    ) -> list[UsageSample]:
        params = {
            "app_id": app_id,
            "tenant_id": tenant_id,
            "feature_key": feature_key,
            "start_at": instant_text(period.start),
            "end_at": instant_text(period.end),
            "max_position": cutoff,
        }
        cut = " AND position <= :max_position" if cutoff is not None else ""
        rows = self.views.query(f"{_SAMPLES}{cut} ORDER BY occurred_at, position", params)
        return [
            UsageSample(
                quantity=int(row["value"]),
                occurred_at=str(row["occurred_at"]),
                event_id=str(row["event_id"]),
                position=int(row["position"]),
            )
            for row in rows
        ]
