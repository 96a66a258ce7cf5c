"""The reply of the alert commands: an alert's terms now."""

from __future__ import annotations

from typing import Any

from domain.alert import Alert


def alert_view(alert: Alert) -> dict[str, Any]:
    """Ids as strings, thresholds as given (`{"percent": 80}`, Money as {"amount", "currency"})."""
    state = alert.state
    return {
        "alert_id": str(alert.id),
        "alert_key": state.alert_key,
        "kind": state.kind.value,
        "tenant_id": state.tenant_id,
        "feature_key": state.feature_key,
        "thresholds": [t.model_dump(mode="json") for t in state.thresholds],
        "deleted": state.deleted,
        "created_at": alert.created_on.isoformat(),
        "version": alert.version,
    }
