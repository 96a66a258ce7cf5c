"""Every projector and query module, listed once; projectors built with the ports they need."""

from __future__ import annotations

from projections.base import Projector
from projections.ports import EntitlementCache


def build_projectors(cache: EntitlementCache | None = None) -> list[Projector]:
    """All read-model projectors (the entitlement projector refreshes the hot cache)."""
    projectors: list[Projector] = []
    return projectors


def load_queries() -> None:
    """Import every query module so their @query registrations exist."""
