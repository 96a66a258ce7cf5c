"""Ports the read side depends on, implemented in adapters/."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

Row = dict[str, Any]


class ViewReader(Protocol):
    """Runs read-only SQL over the read models ({logical} table names, :name parameters)."""

    def query(self, text: str, params: Mapping[str, Any] | None = None) -> list[Row]: ...


class EntitlementCache(Protocol):
    """The hot copy of entitlement rows (Redis); every method may fail and callers fall back."""

    def get(self, app_id: str, tenant_id: str, feature_key: str) -> Row | None: ...

    def put_many(self, rows: Sequence[Row]) -> None: ...

    def invalidate(self, app_id: str, tenant_id: str, feature_key: str | None = None) -> None: ...

    def invalidate_all(self) -> None:
        """Forget every cached row (after a replay rebuilt the read model)."""
        ...
