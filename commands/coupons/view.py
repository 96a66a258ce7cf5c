"""The replies of the coupon commands: a coupon's state now, and a subscription's coupons."""

from __future__ import annotations

from typing import Any

from domain.coupon import Coupon, percent_json
from domain.discount import AttachedCoupon, SubscriptionDiscounts


def coupon_view(coupon: Coupon) -> dict[str, Any]:
    """Ids as strings, Money as {"amount", "currency"}, percent_off as an integer or a decimal
    string ("12.5"); not the list of redeeming tenants."""
    state = coupon.state
    return {
        "coupon_id": str(coupon.id),
        "code": state.code,
        "percent_off": percent_json(state.percent_off) if state.percent_off is not None else None,
        "amount_off": state.amount_off.model_dump() if state.amount_off else None,
        "duration": state.duration.value,
        "duration_in_periods": state.duration_in_periods,
        "max_redemptions": state.max_redemptions,
        "redemption_count": state.redemption_count,
        "valid_from": state.valid_from.isoformat() if state.valid_from else None,
        "valid_until": state.valid_until.isoformat() if state.valid_until else None,
        "carry_forward": state.carry_forward,
        "active": state.active,
        "version": coupon.version,
    }


def subscription_discounts_view(discounts: SubscriptionDiscounts) -> dict[str, Any]:
    """The coupons attached to a subscription, in attach order, with what is left of each."""
    return {
        "subscription_id": str(discounts.state.subscription_id),
        "tenant_id": discounts.state.tenant_id,
        "currency": discounts.state.currency,
        "coupons": [attached_coupon_view(entry) for entry in discounts.coupons],
        "version": discounts.version,
    }


def attached_coupon_view(entry: AttachedCoupon) -> dict[str, Any]:
    terms, carried = entry.terms, entry.carried_forward
    return {
        "code": terms.code,
        "description": terms.describe(),
        "percent_off": percent_json(terms.percent_off) if terms.percent_off is not None else None,
        "amount_off": terms.amount_off.model_dump() if terms.amount_off else None,
        "duration": terms.duration.value,
        "duration_in_periods": terms.duration_in_periods,
        "carry_forward": terms.carry_forward,
        "attached_at": entry.attached_at.isoformat(),
        "invoices_applied": entry.invoices_applied,
        "periods_remaining": entry.periods_remaining(),
        "discounted": entry.discounted.model_dump(),
        "carried_forward": carried.model_dump() if carried is not None else None,
        "active": not entry.is_spent(),
    }
