"""The reply every subscription command returns: the subscription's state now."""

from __future__ import annotations

from typing import Any

from domain.subscription import Subscription


def subscription_view(subscription: Subscription) -> dict[str, Any]:
    state = subscription.state
    return {
        "subscription_id": str(subscription.id),
        "tenant_id": state.tenant_id,
        "status": state.status.value,
        "plan_key": state.terms.plan_key,
        "plan_version": state.terms.version,
        "price": state.price.model_dump(),
        "current_period": state.current_period.model_dump(mode="json"),
        "trial_end": state.trial_end.isoformat() if state.trial_end else None,
        "cancel_at_period_end": state.cancel_at_period_end,
        "scheduled_plan": (
            {"plan_key": state.scheduled_terms.plan_key, "version": state.scheduled_terms.version}
            if state.scheduled_terms
            else None
        ),
        "seats": state.seats,
        "timezone": state.timezone,
        "pricing_zone": state.pricing_zone,
        "base_fee_timing": state.terms.base_fee_timing,
        "invoiced_through": state.invoiced_through.isoformat() if state.invoiced_through else None,
        "pending_prorations": [item.model_dump(mode="json") for item in state.pending_prorations],
        "version": subscription.version,
    }
