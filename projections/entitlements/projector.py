"""The entitlements projector: keeps one row per (app, tenant, feature) from subscription,
quota and feature-grant events (schema.py), each event changing the row's inputs
(changes.py), the answer as of the event stored beside them (rules.py), and the touched
entries of the hot cache invalidated after each commit (invalidation.py).

Projectors never load aggregates: this one reads only event data and its own rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import ClassVar

from projections.base import Projector, Row, ViewTx
from projections.entitlements import invalidation
from projections.entitlements.changes import (
    feature_key,
    grant_change,
    plan_features,
    quota_change,
    set_plan_feature,
    tenant_change,
)
from projections.entitlements.routing import (
    GRANT_EVENTS,
    QUOTA_EVENTS,
    SUBSCRIPTION_EVENTS,
)
from projections.entitlements.rules import evaluate, required_instant
from projections.entitlements.schema import (
    COLUMNS,
    KEY,
    SUBSCRIPTION_COLUMNS,
    TABLE,
    TENANT_COLUMNS,
    TENANT_KEY,
    TENANTS,
    blank_row,
)
from projections.envelope import EventEnvelope
from projections.ports import EntitlementCache

RowChange = Callable[[Row, EventEnvelope], None]

__all__ = ["TABLE", "EntitlementsProjector"]


class EntitlementsProjector(Projector):
    """Keeps the entitlement rows; after each commit, invalidates the touched tenants' (or
    features') entries in the hot cache. A cache error is logged, never raised: the read model
    is the truth and readers fall back to it."""

    NAME: ClassVar[str] = "entitlements"
    TABLES: ClassVar[dict[str, tuple[Sequence[str], Sequence[str]]]] = {
        TABLE: (COLUMNS, KEY),
        TENANTS: (TENANT_COLUMNS, TENANT_KEY),
    }
    HANDLES: ClassVar[frozenset[str]] = SUBSCRIPTION_EVENTS | QUOTA_EVENTS | GRANT_EVENTS

    def __init__(self, cache: EntitlementCache | None = None) -> None:
        self.cache = cache
        # per batch (set by prefetch): the last position at which each feature row is saved
        self._last_save: dict[tuple[str, str, str], int] = {}

    # --- events -> rows ---------------------------------------------------------------

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        if event.tenant_id is None:
            return
        if event.type in SUBSCRIPTION_EVENTS:
            self._subscription(event, tx)
        elif event.type in QUOTA_EVENTS:
            self._feature(event, tx, quota_change)
        elif event.type in GRANT_EVENTS:
            self._feature(event, tx, grant_change)

    def _subscription(self, event: EventEnvelope, tx: ViewTx) -> None:
        app_id, tenant_id = event.app_id, str(event.tenant_id)
        tenant_key = {"app_id": app_id, "tenant_id": tenant_id}
        tenant = tenant_change(tx.get(TENANTS, tenant_key), event)
        if tenant is None:
            return  # not the tenant's current subscription
        tx.upsert(TENANTS, tenant_key, {**tenant, "updated_position": event.position})
        features = plan_features(event)
        rows = {row["feature_key"]: dict(row) for row in tx.select(TABLE, tenant_key)}
        now = required_instant(event.occurred_at)
        for key in sorted(set(rows) | set(features or ())):
            row = rows.get(key) or blank_row(app_id, tenant_id, key)
            row.update(tenant)
            if features is not None:
                set_plan_feature(row, features.get(key))
            _save(tx, row, event, now)

    def prefetch(self, events: Sequence[EventEnvelope], tx: ViewTx) -> None:
        """The feature rows (and their tenants) the batch's quota and grant events read."""
        features = [e for e in events if e.type in QUOTA_EVENTS or e.type in GRANT_EVENTS]
        self._last_save = {_row_of(e): e.position for e in features}  # positions ascend
        if not features:
            return
        tx.prefetch(TABLE, [feature_key(e) for e in features])
        tenants = {(e.app_id, str(e.tenant_id)) for e in features}
        tx.prefetch(TENANTS, [{"app_id": a, "tenant_id": t} for a, t in sorted(tenants)])

    def _feature(self, event: EventEnvelope, tx: ViewTx, change: RowChange) -> None:
        app_id, tenant_id = event.app_id, str(event.tenant_id)
        key = feature_key(event)
        found = tx.get(TABLE, key)
        if found is None:
            row = blank_row(app_id, tenant_id, key["feature_key"])
            tenant = tx.get(TENANTS, {"app_id": app_id, "tenant_id": tenant_id})
            if tenant is not None:
                for column in SUBSCRIPTION_COLUMNS:
                    row[column] = tenant[column]
        else:
            row = dict(found)
        change(row, event)
        if event.position < self._last_save.get(_row_of(event), 0):
            _save_inputs(tx, row, event)  # a later event of the batch saves it again
            return
        _save(tx, row, event, required_instant(event.occurred_at))

    # --- the hot cache ---------------------------------------------------------------

    def after_commit(self, events: Sequence[EventEnvelope]) -> None:
        """Invalidate what the committed events changed."""
        if self.cache is not None:
            invalidation.invalidate(self.cache, events)

    def after_rebuild(self) -> None:
        """A replay swapped in a rebuilt model: nothing cached from the old one may answer."""
        if self.cache is not None:
            invalidation.invalidate_all(self.cache)


def _save(tx: ViewTx, row: Row, event: EventEnvelope, now: datetime) -> None:
    """The row with its answer as of the event (for SQL readers; checks re-derive it)."""
    answer = evaluate(row, now)
    row.update(
        allowed=answer["allowed"],
        effective_limit=answer["limit"],
        remaining=answer["remaining"],
        soft_limit=answer["soft_limit"],
        source=answer["source"],
        valid_until=answer["valid_until"],
        reason=answer["reason"],
    )
    _save_inputs(tx, row, event)


def _save_inputs(tx: ViewTx, row: Row, event: EventEnvelope) -> None:
    """The row as it stands; its answer is derived only at the last event of the batch that
    saves it (the transaction keeps the last write of a row, so nothing else is seen)."""
    row["updated_position"] = event.position
    key = {k: row[k] for k in KEY}
    tx.upsert(TABLE, key, {k: v for k, v in row.items() if k not in KEY})


def _row_of(event: EventEnvelope) -> tuple[str, str, str]:
    return event.app_id, str(event.tenant_id), str(event.data["feature_key"])
