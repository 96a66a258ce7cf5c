"""A Tally subscription mirrored at the provider: created with its plan version's price (and
never collecting by itself: Tally's invoices are what is charged, ADR 0015), moved to the
new price on a plan change, cancel-at-period-end kept in step, canceled when Tally's ends."""

from __future__ import annotations

from commands.payments.catalog_sync import ensure_price
from commands.payments.context import ACTOR, PaymentContext, tally_metadata
from commands.payments.customers import ensure_customer
from commands.payments.link_provider_objects import LinkProviderSubscription
from domain.subscription import TERMINAL, Subscription


def mirror_subscription(ctx: PaymentContext, subscription: Subscription) -> str:
    """Bring the provider's copy to the subscription's state; returns what it did."""
    state = subscription.state
    customer = ensure_customer(ctx, state.app_id, state.tenant_id)
    account = ctx.account(state.app_id, state.tenant_id)
    linked = account.provider_subscription(subscription.id) if account else None
    if state.status in TERMINAL:
        if linked is None:
            return "nothing to cancel"
        ctx.provider.cancel_subscription(linked)
        return "canceled"
    price = ensure_price(ctx, state.app_id, state.terms)
    if linked is None:
        return _create(ctx, subscription, customer, price)
    ctx.provider.update_subscription(
        linked, price_id=price, cancel_at_period_end=state.cancel_at_period_end
    )
    return "updated"


def _create(ctx: PaymentContext, subscription: Subscription, customer: str, price: str) -> str:
    state = subscription.state
    metadata = tally_metadata(
        state.app_id,
        state.tenant_id,
        tally_subscription_id=str(subscription.id),
        tally_plan_key=state.terms.plan_key,
    )
    provider_id = ctx.provider.create_subscription(
        customer,
        price,
        metadata,
        idempotency_key=f"tally-subscription-{subscription.id}-{customer}",
    )
    ctx.run(
        LinkProviderSubscription(
            app_id=state.app_id,
            tenant_id=state.tenant_id,
            subscription_id=subscription.id,
            provider_subscription_id=provider_id,
            actor=ACTOR,
            command_id=f"stripe-subscription-{subscription.id}-{provider_id}"[:128],
        )
    )
    if state.cancel_at_period_end:
        ctx.provider.update_subscription(provider_id, price_id=None, cancel_at_period_end=True)
    return "mirrored"
