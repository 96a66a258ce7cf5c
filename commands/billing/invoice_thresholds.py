"""Progressive billing: issue an interim invoice when the open period's accrued usage
crossed a threshold of the subscription's plan (domain/progressive.py). Billing runs send it
for the subscriptions whose plan has thresholds, and so does the usage ingest after it
committed usage of such a tenant; a retry, or a run after the ingest, finds nothing new."""

from __future__ import annotations

from typing import Any

from commands.billing.compose import BillingPorts, finish, read_usage
from commands.billing.issue import issue_invoice
from commands.billing.ports import UsageCutoff
from commands.bus import Handler
from commands.subscriptions.target import SubscriptionCommand
from commands.unit_of_work import UnitOfWork
from domain.billing import BillingPoint, usage_lines
from domain.progressive import accrued, deduction_lines, interim_invoice_id, thresholds_crossed
from domain.subscription import Status, Subscription


class InvoiceThresholds(SubscriptionCommand):
    usage_cutoff: UsageCutoff = None


def invoice_thresholds_handler(ports: BillingPorts) -> Handler:
    """The handler, wired with the usage reader (bootstrap)."""

    def invoice_thresholds(command: InvoiceThresholds, uow: UnitOfWork) -> dict[str, Any]:
        subscription = command.load(uow)
        invoice = _interim_invoice(uow, subscription, ports, command.usage_cutoff)
        return {
            "subscription_id": str(subscription.id),
            "invoiced": invoice is not None,
            "invoice_id": str(invoice) if invoice else None,
        }

    return invoice_thresholds


def _interim_invoice(
    uow: UnitOfWork, subscription: Subscription, ports: BillingPorts, cutoff: int | None
) -> Any:
    state = subscription.state
    thresholds = state.terms.progressive_thresholds
    period = state.current_period
    if not thresholds or period is None or state.status not in (Status.ACTIVE, Status.PAST_DUE):
        return None
    point = BillingPoint(
        at=uow.now, usage_period=period, fee_terms=state.terms, usage_terms=state.terms
    )
    ports = ports.for_terms(state.terms)
    usage = usage_lines(
        point, read_usage(ports.usage, subscription, point, cutoff), ports.pricing.rate_feature
    )
    amount = accrued(usage, state.price.currency)
    crossed = thresholds_crossed(thresholds, amount)
    if crossed <= subscription.thresholds_invoiced(period):
        return None
    invoice_id = interim_invoice_id(state.app_id, subscription.id, period, crossed)
    charges = usage + deduction_lines(state, period)
    lines = finish(uow, subscription, charges, invoice_id, counts_period=False, ports=ports)
    subscription.record_interim_invoice(invoice_id, amount, crossed, uow.cause)
    issue_invoice(
        uow, subscription, invoice_id, lines, period=period, origin="interim", cutoff=cutoff
    )
    return invoice_id
