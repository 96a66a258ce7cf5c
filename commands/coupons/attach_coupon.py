"""Attach a coupon to a subscription: redeem it (cap, validity window, once per tenant) and
add it to the subscription's discounts, in one unit of work."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field

from commands.base import Command
from commands.billing.strategies import (
    AllowAllCoupons,
    CouponCheck,
    CouponValidator,
    require_coupon_allowed,
)
from commands.coupons.view import subscription_discounts_view
from commands.unit_of_work import UnitOfWork
from domain.catalog import KEY_PATTERN
from domain.coupon import Coupon, CouponRedeemed, coupon_id
from domain.discount import SubscriptionDiscounts, subscription_discounts_id
from domain.errors import DomainError, InvalidTransition, NotFound
from domain.subscription import TERMINAL, Subscription


class AttachCoupon(Command):
    subscription_id: UUID
    code: str = Field(pattern=KEY_PATTERN)


def attach_coupon(
    command: AttachCoupon, uow: UnitOfWork, coupons: CouponValidator | None = None
) -> dict[str, Any]:
    subscription = uow.get(
        Subscription, command.subscription_id, field="subscription_id", app_id=command.app_id
    )
    attached = attach_to_subscription(uow, subscription, command.code, coupons=coupons)
    return subscription_discounts_view(attached)


def attach_to_subscription(
    uow: UnitOfWork,
    subscription: Subscription,
    code: str,
    *,
    field: str = "code",
    coupons: CouponValidator | None = None,
) -> SubscriptionDiscounts:
    """Redeem the coupon for the subscription's tenant and attach it, once the app's
    CouponValidator allows it; errors about the coupon name `field` (the request's name)."""
    try:
        return _redeem_and_attach(uow, subscription, code, coupons or AllowAllCoupons())
    except DomainError as error:
        if error.field == "code":
            error.field = field
        raise


def _redeem_and_attach(
    uow: UnitOfWork, subscription: Subscription, code: str, coupons: CouponValidator
) -> SubscriptionDiscounts:
    state = subscription.state
    coupon = uow.find(Coupon, coupon_id(state.app_id, code))
    if coupon is None or coupon.state.app_id != state.app_id:
        raise NotFound(f"coupon {code} not found", field="code")
    if state.status in TERMINAL:
        raise InvalidTransition(
            f"subscription {subscription.id} is {state.status.value}", field="subscription_id"
        )
    discounts = _discounts_of(uow, subscription)
    terms = coupon.terms()
    discounts.require_attachable(terms)  # before redeeming: the precise refusal first
    check = CouponCheck(state.app_id, state.tenant_id, code, subscription.id)
    require_coupon_allowed(coupons, check)
    coupon.redeem(state.tenant_id, uow.cause, subscription.id)
    redeemed = coupon.pending_events[-1]
    assert isinstance(redeemed, CouponRedeemed)
    discounts.attach(terms, uow.cause, redemption_event_id=redeemed.event_id)
    return discounts


def _discounts_of(uow: UnitOfWork, subscription: Subscription) -> SubscriptionDiscounts:
    """The subscription's discounts, opened (in its currency) on the first attach."""
    state = subscription.state
    discounts_id = subscription_discounts_id(state.app_id, subscription.id)
    found = uow.find(SubscriptionDiscounts, discounts_id)
    if found is not None:
        return found
    opened = SubscriptionDiscounts.open(
        state.app_id, state.tenant_id, subscription.id, state.price.currency, uow.cause
    )
    return uow.add(opened)
