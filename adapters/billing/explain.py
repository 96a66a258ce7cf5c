"""Invoice explain: every line of an invoice with the events behind it.

A line cites event ids (`source_event_ids`): the subscription's events that shaped its
period (start, renewal, plan and seat changes), the coupon attachments, and for usage lines
the usage events counted (up to 1,000, with the range and count of all of them in `usage`,
and the cut-off position the billing run read usage up to). Explain finds those events in
the histories of the aggregates the invoice draws on and answers each with its id, global
position, type, occurred_at, aggregate and version.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

import orjson

from adapters.eventstore.positions import positions_of
from domain.discount import SubscriptionDiscounts, subscription_discounts_id
from domain.invoice import Invoice, InvoiceLine
from domain.quota import quota_id

MAX_EVENTS_PER_LINE = 1000


def explain_invoice(ledger: Any, invoice: Invoice) -> dict[str, Any]:
    """The invoice's lines, each with the events behind it (see the module docstring)."""
    found = _events_by_id(ledger, _sources_of(ledger, invoice))
    state = invoice.state
    return {
        "invoice_id": str(invoice.id),
        "number_text": state.number_text,
        "status": state.status.value,
        "origin": state.origin,
        "usage_cutoff": state.usage_cutoff,
        "total": invoice.totals.total.model_dump(),
        "lines": [_line(line, found) for line in state.lines],
    }


def _line(line: InvoiceLine, found: dict[str, dict[str, Any]]) -> dict[str, Any]:
    events = [found[i] for i in line.source_event_ids[:MAX_EVENTS_PER_LINE] if i in found]
    return {
        **line.model_dump(mode="json"),
        "events": events,
        "unresolved_event_ids": [i for i in line.source_event_ids if i not in found],
    }


def _sources_of(ledger: Any, invoice: Invoice) -> list[UUID]:
    """The aggregates whose events an invoice's lines may cite."""
    state = invoice.state
    ids: list[UUID] = []
    if state.subscription_id is not None:
        ids.append(state.subscription_id)
        discounts_id = subscription_discounts_id(state.app_id, state.subscription_id)
        discounts = ledger.get(discounts_id)
        if isinstance(discounts, SubscriptionDiscounts):
            ids.append(discounts_id)
    features = {line.usage.feature_key for line in state.lines if line.usage is not None}
    ids += [quota_id(state.app_id, state.tenant_id, key) for key in sorted(features)]
    return ids


def _events_by_id(ledger: Any, aggregate_ids: Iterable[UUID]) -> dict[str, dict[str, Any]]:
    recorder = ledger.recorder
    found: dict[str, dict[str, Any]] = {}
    for aggregate_id in aggregate_ids:
        positions = positions_of(recorder, aggregate_id)
        for stored in recorder.select_events(aggregate_id):
            data = orjson.loads(stored.state)
            entry = {
                "id": str(data["event_id"]),
                "position": positions.get(stored.originator_version),
                "type": stored.topic,
                "occurred_at": data["timestamp"],
                "aggregate_id": str(aggregate_id),
                "version": stored.originator_version,
            }
            found[entry["id"]] = entry
            found.update(_facts_of(entry, data))
    return found


def _facts_of(entry: dict[str, Any], data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The usage facts a batch event (UsageRecorded) carries, each citable as
    "<event id>:<index>" (the id the usage read model gives it), with its own time."""
    facts = [*data.get("facts", ()), *data.get("late_facts", ())]
    return {
        f"{entry['id']}:{index}": {
            **entry,
            "id": f"{entry['id']}:{index}",
            "occurred_at": fact["at"],
            "idempotency_key": fact["key"],
            "value": fact["value"],
        }
        for index, fact in enumerate(facts)
    }
