"""Ports the billing engine reads through: recorded usage, and the app's billing settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from domain.billing import UsageTotal
from domain.period import Period


class UsageReader(Protocol):
    """Port: metered quantities over a period, counting only facts up to a log position."""

    def totals(
        self,
        app_id: str,
        tenant_id: str,
        features: Sequence[tuple[str, str]],
        period: Period,
        cutoff: int | None,
    ) -> dict[str, UsageTotal]:
        """(feature_key, meter) pairs -> the feature's total over [start, end)."""
        ...

    def safe_cutoff(self) -> int:
        """The highest log position the usage read model has applied."""
        ...


class NoUsage:
    """A UsageReader for systems without a usage read model: nothing was used."""

    def totals(
        self,
        app_id: str,
        tenant_id: str,
        features: Sequence[tuple[str, str]],
        period: Period,
        cutoff: int | None,
    ) -> dict[str, UsageTotal]:
        return {}

    def safe_cutoff(self) -> int:
        return 0
