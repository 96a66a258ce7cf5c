"""The tenant's provider customer: created from its billing profile the first time it is
needed (the profile is saved, a session is asked for, an invoice is collected), then kept
in step with the profile (name, email, country, tax id)."""

from __future__ import annotations

from commands.payments.context import ACTOR, PaymentContext
from commands.payments.link_payment_customer import LinkPaymentCustomer
from commands.payments.ports import CustomerDetails
from commands.payments.record_customer_sync import RecordCustomerSync
from domain.errors import Conflict
from domain.profile import BillingProfile, billing_profile_id

SYNCED_FIELDS = ["name", "email", "country", "tax_id"]


class NoBillingProfile(Conflict):
    """A provider customer is made from the billing profile: there is none yet."""

    code = "no_billing_profile"


def customer_details(ctx: PaymentContext, app_id: str, tenant_id: str) -> CustomerDetails:
    profile = ctx.find(BillingProfile, billing_profile_id(app_id, tenant_id), app_id)
    if profile is None:
        raise NoBillingProfile(
            f"tenant {tenant_id} has no billing profile: PUT /v1/tenants/{tenant_id}/profile "
            "first (the Stripe customer is made from it)",
            field="tenant_id",
        )
    terms = profile.terms
    return CustomerDetails(
        app_id=app_id,
        tenant_id=tenant_id,
        name=terms.name,
        email=terms.email,
        country=terms.country,
        tax_id=terms.tax_id,
    )


def ensure_customer(ctx: PaymentContext, app_id: str, tenant_id: str) -> str:
    """The tenant's provider customer id, created or brought up to date first."""
    details = customer_details(ctx, app_id, tenant_id)
    account = ctx.account(app_id, tenant_id)
    if account is None:
        customer_id = ctx.provider.create_customer(details)
        ctx.run(_link(app_id, tenant_id, customer_id, details.digest()))
        return customer_id
    if account.state.customer_digest != details.digest():
        ctx.provider.update_customer(account.customer_id, details)
        ctx.run(
            RecordCustomerSync(
                app_id=app_id,
                tenant_id=tenant_id,
                digest=details.digest(),
                fields=SYNCED_FIELDS,
                actor=ACTOR,
            )
        )
    return account.customer_id


def _link(app_id: str, tenant_id: str, customer_id: str, digest: str) -> LinkPaymentCustomer:
    return LinkPaymentCustomer(
        app_id=app_id,
        tenant_id=tenant_id,
        customer_id=customer_id,
        digest=digest,
        actor=ACTOR,
        command_id=f"stripe-customer-{tenant_id}"[:128],
    )
