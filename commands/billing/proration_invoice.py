"""`"proration": "always_invoice"`: the prorations of a change billed at once.

The immediate invoice holds the pending proration lines, the subscription's coupons on them
and their tax, and is finalized now; its id derives from the change's event, so a retried
command never bills twice.
"""

from __future__ import annotations

from commands.billing.compose import BillingPorts, finish
from commands.billing.issue import issue_invoice
from commands.unit_of_work import UnitOfWork
from domain.base import stable_id
from domain.billing import proration_lines
from domain.invoice import Invoice
from domain.subscription import Subscription


def invoice_prorations_now(
    uow: UnitOfWork, subscription: Subscription, ports: BillingPorts | None = None
) -> Invoice | None:
    """Bill the pending prorations on an invoice of their own (None when there are none),
    taxed by the plan's (else the settings') TaxCalculator."""
    state = subscription.state
    charges = proration_lines(state)
    if not charges:
        return None
    source = state.pending_prorations[-1].source_event_ids[0]
    invoice_id = stable_id("proration-invoice", state.app_id, str(subscription.id), source)
    ports = ports or BillingPorts()
    lines = finish(uow, subscription, charges, invoice_id, counts_period=False, ports=ports)
    subscription.record_invoice(invoice_id, uow.cause, None, len(state.pending_prorations))
    return issue_invoice(
        uow,
        subscription,
        invoice_id,
        lines,
        period=state.current_period,
        origin="proration",
        finalize=True,
    )
