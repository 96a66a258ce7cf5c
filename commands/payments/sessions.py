"""Checkout and portal sessions: a URL at the provider for the tenant's customer (made from
its billing profile first when there is none)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from commands.base import ID_PATTERN
from commands.payments.catalog_sync import ensure_price
from commands.payments.context import PaymentContext, tally_metadata
from commands.payments.customers import ensure_customer
from domain.errors import NotFound
from domain.plan import Plan, plan_id

URL = Field(min_length=8, max_length=2000, pattern=r"^https?://\S+$")


class CheckoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    tenant_id: str = Field(pattern=ID_PATTERN)
    plan_key: str = Field(min_length=1, max_length=128)
    success_url: str = URL
    cancel_url: str = URL


class PortalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    tenant_id: str = Field(pattern=ID_PATTERN)
    return_url: str = URL


def checkout_session(ctx: PaymentContext, app_id: str, request: CheckoutRequest) -> str:
    """A subscription-mode checkout for the plan's current version. Stripe's trial of at
    least a day makes Checkout collect the payment method without charging: Tally charges
    from its own invoices (ADR 0015)."""
    plan = ctx.find(Plan, plan_id(app_id, request.plan_key), app_id)
    if plan is None:
        raise NotFound(f"plan {request.plan_key} not found", field="plan_key")
    terms = plan.terms_for_new_subscriber(request.tenant_id)
    customer = ensure_customer(ctx, app_id, request.tenant_id)
    price = ensure_price(ctx, app_id, terms)
    metadata = tally_metadata(
        app_id,
        request.tenant_id,
        tally_plan_key=terms.plan_key,
        tally_plan_version=str(terms.version),
    )
    return ctx.provider.create_checkout_session(
        customer,
        price,
        request.success_url,
        request.cancel_url,
        metadata,
        trial_days=max(terms.trial_days, 1),
    )


def portal_session(ctx: PaymentContext, app_id: str, request: PortalRequest) -> str:
    customer = ensure_customer(ctx, app_id, request.tenant_id)
    return ctx.provider.create_portal_session(customer, request.return_url)
