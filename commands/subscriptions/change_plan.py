"""Move a subscription to another plan: now (prorated) or at the period end.

`proration`: "create_prorations" (default) puts the credit for the unused old price and the
charge for the rest of the period on the next invoice; "always_invoice" bills them at once on
an invoice of their own; "none" skips them. The unit (second or day) is the app's setting.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.billing.compose import BillingPorts, settings_of
from commands.billing.proration_invoice import invoice_prorations_now
from commands.invoices.view import invoice_view
from commands.quotas.sync_from_plan import follow_subscription
from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork
from domain.catalog import KEY_PATTERN, PlanTerms
from domain.plan import Plan, plan_id
from domain.proration import ProrationMode
from domain.subscription import ChangeTiming, Subscription


class ChangePlan(SubscriptionCommand):
    plan_key: str = Field(pattern=KEY_PATTERN)
    plan_version: int | None = Field(default=None, ge=1, description="default: latest")
    timing: ChangeTiming = "now"
    proration: ProrationMode = "create_prorations"


def change_plan(
    command: ChangePlan, uow: UnitOfWork, ports: BillingPorts | None = None
) -> dict[str, Any]:
    subscription = command.load(uow)
    previous = subscription.state.terms
    unit = settings_of(uow, command.app_id).proration_unit
    subscription.change_plan(
        _target_terms(command, uow),
        uow.cause,
        command.timing,
        proration=command.proration,
        unit=unit,
    )
    if command.timing == "now":
        follow_subscription(uow, subscription, previous)
    return with_proration_invoice(uow, subscription, command.proration, ports)


def with_proration_invoice(
    uow: UnitOfWork,
    subscription: Subscription,
    proration: ProrationMode,
    ports: BillingPorts | None = None,
) -> dict[str, Any]:
    """The subscription's view, and the immediate invoice when one was asked for."""
    view = subscription_view(subscription)
    if proration == "always_invoice":
        invoice = invoice_prorations_now(uow, subscription, ports)
        view = {
            **subscription_view(subscription),
            "invoice": invoice_view(invoice) if invoice else None,
        }
    return view


def _target_terms(command: ChangePlan, uow: UnitOfWork) -> PlanTerms:
    plan = uow.get(
        Plan,
        plan_id(command.app_id, command.plan_key),
        field="plan_key",
        app_id=command.app_id,
        named=command.plan_key,
    )
    latest = plan.terms_for_new_subscriber(command.load(uow).state.tenant_id)  # archived? custom?
    return latest if command.plan_version is None else plan.terms(command.plan_version)
