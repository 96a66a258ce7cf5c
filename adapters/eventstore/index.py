"""Which aggregates each app owns, from the creation events in the event log (one per System).

The API lists plans and invoices and the billing run finds the subscriptions and quotas due
with it, until read models answer those lists. It reads only the creation events (a topic
filter in the database), incrementally: each refresh reads what was committed since the last
one, re-reading a trailing overlap of positions because a PostgreSQL position can commit after
a higher one. It keeps ids (and each one's tenant) in memory, per app and kind, in creation
order.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any
from uuid import UUID

import orjson

CREATION_TOPICS: dict[str, str] = {
    "PlanDefined": "plan",
    "SubscriptionStarted": "subscription",
    "InvoiceDrafted": "invoice",
    "QuotaConfigured": "quota",
    "CouponCreated": "coupon",
    "BillingProfileCreated": "billing_profile",
    "TaxRateSet": "tax_rate",  # also each later change of the rate: ids are kept once
}


class OwnershipIndex:
    def __init__(self, recorder: Any, overlap: int = 1000, batch: int = 5000) -> None:
        self.recorder, self.overlap, self.batch = recorder, overlap, batch
        self._position = 0
        self._ids: dict[tuple[str, str], dict[UUID, str | None]] = defaultdict(dict)
        self._lock = threading.Lock()

    def apps(self) -> list[str]:
        """Every app that owns something, in first-seen order."""
        self.refresh()
        with self._lock:
            return list(dict.fromkeys(app for app, _ in self._ids))

    def ids(self, app_id: str, kind: str, tenant_id: str | None = None) -> list[UUID]:
        """The app's aggregates of a kind, oldest first (optionally one tenant's)."""
        self.refresh()
        with self._lock:
            owned = self._ids.get((app_id, kind), {})
            return [i for i, tenant in owned.items() if tenant_id is None or tenant == tenant_id]

    def refresh(self) -> None:
        with self._lock:
            head = self.recorder.max_notification_id() or 0
            start = max(0, self._position - self.overlap)
            topics = tuple(CREATION_TOPICS)
            while start < head:
                notes = self.recorder.select_notifications(
                    start=start + 1, limit=self.batch, stop=head, topics=topics
                )
                if not notes:
                    break
                for note in notes:
                    state = orjson.loads(note.state)
                    key = (str(state.get("app_id")), CREATION_TOPICS[note.topic])
                    owned = self._ids[key]
                    if note.originator_id not in owned:
                        owned[note.originator_id] = state.get("tenant_id")
                start = notes[-1].id
            self._position = max(self._position, head)
