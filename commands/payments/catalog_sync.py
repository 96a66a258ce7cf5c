"""Plans at the provider: one product per plan, one recurring price per version (a revision
makes a new price; the old one stays for subscribers on it), Tally's ids in the metadata; an
archived plan's product and prices are deactivated."""

from __future__ import annotations

from commands.payments.context import ACTOR, PaymentContext
from commands.payments.link_plan_price import LinkPlanPrice, RecordPlanPricesDeactivated
from commands.payments.ports import PlanPrice
from domain.catalog import PlanTerms
from domain.errors import NotFound
from domain.plan import Plan, plan_id


def plan_price(app_id: str, terms: PlanTerms) -> PlanPrice:
    return PlanPrice(
        app_id=app_id,
        plan_key=terms.plan_key,
        version=terms.version,
        name=terms.name,
        amount=terms.base_price.amount,
        currency=terms.base_price.currency,
        interval=terms.interval.value,
    )


def ensure_price(ctx: PaymentContext, app_id: str, terms: PlanTerms) -> str:
    """The provider price of this plan version, created (with its product) when missing."""
    catalog = ctx.catalog(app_id)
    known = catalog.price(terms.plan_key, terms.version) if catalog else None
    if known is not None:
        return known
    product = catalog.product(terms.plan_key) if catalog else None
    made = ctx.provider.sync_price(plan_price(app_id, terms), product)
    ctx.run(
        LinkPlanPrice(
            app_id=app_id,
            plan_key=terms.plan_key,
            version=terms.version,
            product_id=made.product_id,
            price_id=made.price_id,
            actor=ACTOR,
        )
    )
    return made.price_id


def sync_plan(ctx: PaymentContext, app_id: str, plan_key: str) -> str:
    """Bring one plan's product and prices to what the catalog says; returns what it did."""
    plan = ctx.find(Plan, plan_id(app_id, plan_key), app_id)
    if plan is None:
        raise NotFound(f"plan {plan_key} not found", field="plan_key")
    if plan.state.archived:
        return _deactivate(ctx, app_id, plan_key)
    for terms in plan.state.versions:
        ensure_price(ctx, app_id, terms)
    return f"{len(plan.state.versions)} price(s) in place"


def _deactivate(ctx: PaymentContext, app_id: str, plan_key: str) -> str:
    catalog = ctx.catalog(app_id)
    product = catalog.product(plan_key) if catalog else None
    if catalog is None or product is None or catalog.is_archived(plan_key):
        return "nothing to deactivate"
    ctx.provider.deactivate_prices(product, catalog.prices_of(plan_key))
    ctx.run(RecordPlanPricesDeactivated(app_id=app_id, plan_key=plan_key, actor=ACTOR))
    return "deactivated"
