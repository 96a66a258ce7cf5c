"""The reply of the profile command and route: the tenant's billing profile now."""

from __future__ import annotations

from typing import Any

from domain.profile import BillingProfile


def profile_view(profile: BillingProfile) -> dict[str, Any]:
    """The profile body's fields, plus its id, version and last change (by the clock)."""
    state = profile.state
    return {
        "billing_profile_id": str(profile.id),
        "tenant_id": state.tenant_id,
        **state.terms.model_dump(mode="json"),
        "version": profile.version,
        "created_at": profile.created_on.isoformat(),
        "updated_at": profile.modified_on.isoformat(),
    }
