"""The aggregates one writer keeps current in memory, checked against the store in one query.

The usage ingest saves the same quotas batch after batch. Loading each one through the
library's cache costs a fast-forward query per aggregate; instead, the aggregates this
writer saved last are kept here, and one query asks the store for the version of every
aggregate a batch needs: the ones still at the version kept are used as they are, the
others (changed by another writer or process) are loaded again, and kept too (the tenant
grants the ingest reads beside the quotas, which it never saves). The caller holds the
aggregates' tenant locks while it uses them, and calls `forget` when a save fails (the
objects may then hold changes that were never stored).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from adapters.eventstore.positions import latest_versions


class CurrentAggregates:
    """Port adapter: bulk loads of the aggregates a writer saved, current by version."""

    def __init__(self, ledger: Any, maxsize: int = 50_000) -> None:
        self.ledger, self.maxsize = ledger, maxsize
        self._kept: OrderedDict[UUID, Any] = OrderedDict()

    def load(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Any]:
        """The stored aggregates among these ids, each at its latest version."""
        versions = latest_versions(self.ledger.recorder, aggregate_ids)
        found: dict[UUID, Any] = {}
        for aggregate_id, version in versions.items():
            kept = self._kept.get(aggregate_id)
            if kept is None or kept.version != version:
                kept = self.ledger.get(aggregate_id)
            if kept is not None:
                found[aggregate_id] = kept
        self.saved(found.values())  # current now; `forget` drops any the caller changes
        return found

    def saved(self, aggregates: Iterable[Any]) -> None:
        """These aggregates were just saved: keep them as they are now."""
        for aggregate in aggregates:
            self._kept[aggregate.id] = aggregate
            self._kept.move_to_end(aggregate.id)
        while len(self._kept) > self.maxsize:
            self._kept.popitem(last=False)

    def forget(self, aggregate_ids: Iterable[UUID]) -> None:
        for aggregate_id in aggregate_ids:
            self._kept.pop(aggregate_id, None)
