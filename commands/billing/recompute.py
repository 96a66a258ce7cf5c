"""Recompute an invoice from the events, any time, recording nothing: each usage feature
it billed, re-read from the usage facts as they stand now and re-rated with the feature as
it was priced, beside what was billed (`tally invoices recompute`, GET
/v1/invoices/{id}/recompute). Late usage shows as a difference here until the next invoice
corrects it (domain/recompute.py)."""

from __future__ import annotations

from typing import Any

from commands.billing.ports import UsageReader
from domain.billed_usage import BilledUsage
from domain.invoice import Invoice
from domain.recompute import billed_usage, recomputed_amount


def recompute_invoice(invoice: Invoice, reader: UsageReader) -> dict[str, Any]:
    """The billed and the recomputed usage of each feature, and their difference."""
    state = invoice.state
    features = billed_usage(invoice.id, state.lines, state.usage_cutoff)
    return {
        "invoice_id": str(invoice.id),
        "number_text": state.number_text,
        "status": state.status.value,
        "usage_cutoff": state.usage_cutoff,
        "features": [_feature(invoice, billed, reader) for billed in features],
    }


def _feature(invoice: Invoice, billed: BilledUsage, reader: UsageReader) -> dict[str, Any]:
    state = invoice.state
    wanted = [(billed.feature_key, billed.meter)]
    total = reader.totals(state.app_id, state.tenant_id, wanted, billed.period, None)
    now = total[billed.feature_key]
    recomputed = recomputed_amount(billed, now)
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
