"""Recompute an invoice from the events, any time, recording nothing: each usage feature
it billed, re-read from the usage facts as they stand now and re-rated with the feature as
it was priced, beside what was billed (`tally invoices recompute`, GET
/v1/invoices/{id}/recompute). Late usage shows as a difference here until the next invoice
corrects it (domain/recompute.py).

The strategies are the ones billing uses: the PricingStrategy and UsageAggregator the
subscription's plan terms name, else the settings' (docs/plugins.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from commands.billing.compose import BillingPorts
from commands.billing.ports import UsageReader
from commands.billing.strategies import DomainPricing, PricingStrategy
from domain.billed_usage import BilledUsage
from domain.invoice import Invoice
from domain.recompute import billed_usage, recomputed_amount
from domain.subscription import Subscription


def recompute_with(
    invoice: Invoice, ports: BillingPorts, load: Callable[[UUID], Any]
) -> dict[str, Any]:
    """`recompute_invoice` with the strategies of the subscription's plan terms now."""
    subscription_id = invoice.state.subscription_id
    subscription = load(subscription_id) if subscription_id is not None else None
    if isinstance(subscription, Subscription):
        ports = ports.for_terms(subscription.state.terms)
    return recompute_invoice(invoice, ports.usage, ports.pricing)


def recompute_invoice(
    invoice: Invoice, reader: UsageReader, pricing: PricingStrategy | None = None
) -> dict[str, Any]:
    """The billed and the recomputed usage of each feature, and their difference."""
    state = invoice.state
    features = billed_usage(invoice.id, state.lines, state.usage_cutoff)
    rated = pricing or DomainPricing()
    return {
        "invoice_id": str(invoice.id),
        "number_text": state.number_text,
        "status": state.status.value,
        "usage_cutoff": state.usage_cutoff,
        "features": [_feature(invoice, billed, reader, rated) for billed in features],
    }


def _feature(
    invoice: Invoice, billed: BilledUsage, reader: UsageReader, pricing: PricingStrategy
) -> dict[str, Any]:
    state = invoice.state
    wanted = [(billed.feature_key, billed.meter)]
    total = reader.totals(state.app_id, state.tenant_id, wanted, billed.period, None)
    now = total[billed.feature_key]
    recomputed = recomputed_amount(billed, now, pricing.rate_feature)
    billed_ids = {
        event_id
        for line in state.lines
        if line.usage is not None and line.usage.feature_key == billed.feature_key
        for event_id in line.source_event_ids
    }
    return {
        "feature_key": billed.feature_key,
        "period": billed.period.model_dump(mode="json"),
        "billed": billed.amount.model_dump(),
        "recomputed": recomputed.model_dump(),
        "difference": (recomputed - billed.amount).model_dump(),
        "quantity": now.quantity,
        "events": now.events,
        "late_event_ids": [i for i in now.event_ids if i not in billed_ids],
    }
