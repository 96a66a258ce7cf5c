"""The billing engine's UsageReader on the usage read model (`billable_usage_many`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from adapters.readmodels.sql_store import ViewStore
from commands.billing.ports import UsageReader
from domain.billing import UsageTotal
from domain.errors import Conflict
from domain.period import Period
from projections.queries import QueryContext
from projections.usage.projector import UsageProjector
from projections.usage.queries import billable_usage_many


class UsageLagging(Conflict):
    """The usage read model has not applied the log up to the billing cut-off in time."""

    code = "usage_read_model_lagging"


class ViewUsageReader(UsageReader):
    """Reads usage facts from the usage read model, up to a log position."""

    def __init__(self, views: ViewStore, now: Callable[[], datetime]) -> None:
        self.views, self.now = views, now
        self._prefetched: dict[tuple[Any, ...], dict[str, Any]] = {}

    def prefetch(self, app_id: str, wanted: Sequence[Wanted], cutoff: int | None) -> None:
        """Answer many (tenant, features, period) at once ahead of the commands that will
        ask (a billing run's batch); `forget` drops them. An answer up to a cut-off never
        changes, so a reader that asks the same gets the same."""
        requests = [
            _request(tenant, key, meter, period)
            for tenant, features, period in wanted
            for key, meter in features
        ]
        if not requests:
            return
        answers = billable_usage_many(self._ctx(), app_id, requests, max_position=cutoff)
        for request, answer in zip(requests, answers, strict=True):
            self._prefetched[_key(app_id, request, cutoff)] = answer

    def forget(self) -> None:
        self._prefetched.clear()

    def _ctx(self) -> QueryContext:
        return QueryContext(views=self.views, now=self.now)

    def safe_cutoff(self) -> int:
        return self.views.position(UsageProjector.NAME)

    def totals(
        self,
        app_id: str,
        tenant_id: str,
        features: Sequence[tuple[str, str]],
        period: Period,
        cutoff: int | None,
    ) -> dict[str, UsageTotal]:
        requests = [_request(tenant_id, key, meter, period) for key, meter in features]
        found = [self._prefetched.get(_key(app_id, r, cutoff)) for r in requests]
        answers = [a for a in found if a is not None]
        if len(answers) < len(requests):
            answers = billable_usage_many(self._ctx(), app_id, requests, max_position=cutoff)
        return {
            key: UsageTotal(feature_key=key, meter=meter, cutoff_position=cutoff, **answer)
            for (key, meter), answer in zip(features, answers, strict=True)
        }

    def wait_for(self, position: int, timeout: float) -> int:
        """Wait until the read model has applied `position`; returns the cut-off to use."""
        deadline = time.monotonic() + timeout
        while (reached := self.safe_cutoff()) < position:
            if time.monotonic() > deadline:
                raise UsageLagging(
                    f"the usage read model is at position {reached}, the billing cut-off is "
                    f"{position}: retry the billing run when the projector has caught up",
                    field="until",
                )
            time.sleep(0.01)
        return position


Wanted = tuple[str, Sequence[tuple[str, str]], Period]  # tenant, (feature, meter)s, period


def _request(tenant_id: str, key: str, meter: str, period: Period) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "feature_key": key,
        "meter": meter,
        "start": period.start,
        "end": period.end,
    }


def _key(app_id: str, request: dict[str, Any], cutoff: int | None) -> tuple[Any, ...]:
    return (app_id, *request.values(), cutoff)
