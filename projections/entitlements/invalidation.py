"""What a commit invalidates in the hot cache of entitlement rows, and doing it safely.

A subscription event touches every feature of its tenant, a quota or grant event one feature.
A cache error is logged, never raised: the read model is the truth and readers fall back to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from projections.entitlements.routing import SUBSCRIPTION_EVENTS
from projections.envelope import EventEnvelope
from projections.ports import EntitlementCache

log = structlog.get_logger(__name__)

Target = tuple[str, str, str | None]


def targets(events: Sequence[EventEnvelope]) -> list[Target]:
    """(app, tenant, feature or None for the whole tenant) for each thing the events changed."""
    tenants: set[tuple[str, str]] = set()
    features: set[tuple[str, str, str]] = set()
    for event in events:
        if event.tenant_id is None:
            continue
        if event.type in SUBSCRIPTION_EVENTS:
            tenants.add((event.app_id, event.tenant_id))
        else:
            features.add((event.app_id, event.tenant_id, str(event.data["feature_key"])))
    found: list[Target] = [(a, t, None) for a, t in sorted(tenants)]
    return found + [(a, t, f) for a, t, f in sorted(features) if (a, t) not in tenants]


def invalidate(cache: EntitlementCache, events: Sequence[EventEnvelope]) -> None:
    """Drop what the committed events changed from the cache."""
    for app_id, tenant_id, feature_key in targets(events):
        try:
            cache.invalidate(app_id, tenant_id, feature_key)
        except Exception as error:  # the read model is the truth; readers fall back
            log.warning(
                "entitlement_cache_invalidate_failed",
                app_id=app_id,
                tenant_id=tenant_id,
                feature_key=feature_key,
                error=repr(error),
            )


def invalidate_all(cache: EntitlementCache) -> None:
    """Drop everything (a replay swapped in a rebuilt model)."""
    try:
        cache.invalidate_all()
    except Exception as error:
        log.warning("entitlement_cache_invalidate_all_failed", error=repr(error))
