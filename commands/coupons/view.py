"""The reply every coupon command returns: the coupon's state now."""

from __future__ import annotations

from typing import Any

from domain.coupon import Coupon


def coupon_view(coupon: Coupon) -> dict[str, Any]:
    """Ids as strings, Money as {"amount", "currency"}; not the list of redeeming tenants."""
    state = coupon.state
    return {
        "coupon_id": str(coupon.id),
        "code": state.code,
        "percent_off": state.percent_off,
        "amount_off": state.amount_off.model_dump() if state.amount_off else None,
        "duration": state.duration.value,
        "duration_in_periods": state.duration_in_periods,
        "max_redemptions": state.max_redemptions,
        "redemption_count": state.redemption_count,
        "valid_from": state.valid_from.isoformat() if state.valid_from else None,
        "valid_until": state.valid_until.isoformat() if state.valid_until else None,
        "active": state.active,
        "version": coupon.version,
    }
