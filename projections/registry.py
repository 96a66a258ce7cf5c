"""Every projector and query module, listed once; projectors built with the ports they need."""

from __future__ import annotations

from projections.alerts.projector import AlertsProjector
from projections.base import Projector
from projections.credits.projector import CreditsProjector
from projections.entitlements.projector import EntitlementsProjector
from projections.outbox.projector import OutboxProjector
from projections.ports import EntitlementCache
from projections.revenue.projector import RevenueProjector
from projections.stripe_sync.projector import StripeSyncProjector
from projections.usage.projector import UsageProjector


def build_projectors(cache: EntitlementCache | None = None) -> list[Projector]:
    """All read-model projectors (the entitlement projector refreshes the hot cache)."""
    projectors: list[Projector] = []
    projectors.append(EntitlementsProjector(cache))
    projectors.append(UsageProjector())
    projectors.append(RevenueProjector())
    projectors.append(AlertsProjector())
    projectors.append(OutboxProjector())
    projectors.append(CreditsProjector())
    projectors.append(StripeSyncProjector())
    return projectors


def load_queries() -> None:
    """Import every query module so their @query registrations exist."""
    import projections.alerts.queries
    import projections.credits.queries
    import projections.entitlements.queries
    import projections.outbox.queries
    import projections.revenue.queries
    import projections.usage.queries  # noqa: F401
