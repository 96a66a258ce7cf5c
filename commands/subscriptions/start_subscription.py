"""Start a tenant's subscription to a plan (with the plan's trial unless told otherwise),
optionally with a coupon attached in the same unit of work (a bad coupon refuses the start)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from pydantic import Field

from commands.base import ID_PATTERN, TENANT_FIELD, Command
from commands.billing.strategies import CouponValidator
from commands.coupons.attach_coupon import attach_to_subscription
from commands.coupons.view import subscription_discounts_view
from commands.profiles.lookup import profile_terms
from commands.quotas.sync_from_plan import sync_quotas_from_plan
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork
from domain.catalog import KEY_PATTERN, PlanTerms
from domain.errors import AlreadyExists
from domain.plan import Plan, plan_id
from domain.subscription import MAX_SEATS, Subscription, TenantSlot, tenant_slot_id


class StartSubscription(Command):
    tenant_id: str = TENANT_FIELD
    plan_key: str = Field(pattern=KEY_PATTERN)
    plan_version: int | None = Field(default=None, ge=1, description="default: latest")
    trial: bool = Field(default=True, description="start with the plan's trial days, if any")
    pricing_zone: str | None = Field(default=None, pattern=ID_PATTERN)
    subscription_id: UUID | None = None
    coupon: str | None = Field(
        default=None, pattern=KEY_PATTERN, description="a coupon code to redeem and attach"
    )
    seats: int = Field(default=1, ge=1, le=MAX_SEATS, strict=True, description="seats billed")


def start_subscription(
    command: StartSubscription, uow: UnitOfWork, coupons: CouponValidator | None = None
) -> dict[str, Any]:
    plan = uow.get(
        Plan,
        plan_id(command.app_id, command.plan_key),
        field="plan_key",
        app_id=command.app_id,
        named=command.plan_key,
    )
    terms = plan.terms_for_new_subscriber(command.tenant_id)
    if command.plan_version is not None:
        terms = plan.terms(command.plan_version)
    subscription_id = command.subscription_id or uuid4()
    if command.subscription_id is not None and uow.exists(subscription_id):
        raise AlreadyExists(f"{subscription_id} is already taken", field="subscription_id")
    previous = _claim_tenant_slot(command, subscription_id, uow)
    timezone, zone = _customer(command, terms, uow)
    subscription = uow.add(
        Subscription.start(
            subscription_id,
            command.app_id,
            command.tenant_id,
            terms,
            uow.cause,
            trial=command.trial,
            pricing_zone=zone,
            timezone=timezone,
            seats=command.seats,
        )
    )
    sync_quotas_from_plan(
        uow,
        app_id=command.app_id,
        tenant_id=command.tenant_id,
        subscription_id=subscription_id,
        terms=terms,
        anchor=subscription.state.current_period.start,
        previous=previous.state.terms if previous is not None else None,
    )
    if command.coupon is None:
        return subscription_view(subscription)
    discounts = attach_to_subscription(
        uow, subscription, command.coupon, field="coupon", coupons=coupons
    )
    coupons = subscription_discounts_view(discounts)["coupons"]
    return {**subscription_view(subscription), "coupons": coupons}


def _customer(
    command: StartSubscription, terms: PlanTerms, uow: UnitOfWork
) -> tuple[str, str | None]:
    """The tenant's timezone (its billing profile, else UTC) and pricing zone (the one
    asked for, else the profile's country when the plan prices it)."""
    profile = profile_terms(uow, command.app_id, command.tenant_id)
    if profile is None:
        return "UTC", command.pricing_zone
    zone = command.pricing_zone
    if zone is None and profile.country in terms.price_overrides:
        zone = profile.country
    return profile.timezone, zone


def _claim_tenant_slot(
    command: StartSubscription, subscription_id: UUID, uow: UnitOfWork
) -> Subscription | None:
    """One live subscription per tenant per app: the slot serializes concurrent starts.
    Returns the tenant's previous subscription, if any."""
    slot = uow.find(TenantSlot, tenant_slot_id(command.app_id, command.tenant_id))
    if slot is None:
        uow.add(TenantSlot.open(command.app_id, command.tenant_id, subscription_id, uow.cause))
        return None
    current = uow.find(Subscription, slot.state.subscription_id)
    slot.reassign(current, subscription_id, uow.cause)
    return current
