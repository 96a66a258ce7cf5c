"""Late usage on the next invoice (domain/recompute.py): each usage feature an earlier
invoice billed is re-read up to this invoice's cut-off; a positive difference is an
`adjustment` line here; a negative one (late usage under `latest` or `max` can lower a
quantity) is a credit note on the invoice that billed too much (to the tenant's credit
balance, or lowering its amount due while it is open), or, when that invoice can no longer be
credited (a draft, void or uncollectible), a negative adjustment line here. A preview
(no invoice id) shows the negative difference as a line and records nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from commands.billing.ports import UsageReader
from commands.billing.strategies import DomainPricing, PricingStrategy
from commands.unit_of_work import UnitOfWork
from domain.base import stable_id
from domain.billed_usage import BilledUsage, UsageAdjustment
from domain.billing import UsageTotal
from domain.credit_note import CreditRequest
from domain.errors import DomainError
from domain.invoice import CreditMethod, Invoice, InvoiceLine, InvoiceStatus, LineKind
from domain.money import Money
from domain.recompute import adjustment_line, invoice_corrections
from domain.subscription import Subscription

REASON = "late usage recomputed: the period was billed too much"


@dataclass
class LateUsage:
    """The lines for this invoice, and the corrections made by credit notes instead."""

    lines: list[InvoiceLine] = field(default_factory=list)
    credited: list[UsageAdjustment] = field(default_factory=list)


def late_usage(
    uow: UnitOfWork,
    reader: UsageReader,
    subscription: Subscription,
    cutoff: int | None,
    invoice_id: UUID | None,
    pricing: PricingStrategy | None = None,
) -> LateUsage:
    """The corrections of the billed periods' late usage, re-rated with `pricing`."""
    rate = (pricing or DomainPricing()).rate_feature
    state = subscription.state
    found = LateUsage()
    for group in _by_invoice(state.billed_usage):
        totals = [_total(reader, state.app_id, state.tenant_id, b, cutoff) for b in group]
        for billed, total, amount in zip(
            group, totals, invoice_corrections(group, totals, rate), strict=True
        ):
            if amount.amount == 0:
                continue
            if (
                amount.amount < 0
                and invoice_id is not None
                and _credited(uow, billed, -amount, invoice_id)
            ):
                found.credited.append(_adjustment(billed, amount))
            else:
                found.lines.append(adjustment_line(billed, amount, total, rate))
    return found


def _by_invoice(billed: Sequence[BilledUsage]) -> list[list[BilledUsage]]:
    """The billed features grouped by the invoice that billed them, in order."""
    groups: dict[UUID, list[BilledUsage]] = {}
    for item in billed:
        groups.setdefault(item.invoice_id, []).append(item)
    return list(groups.values())


def _total(
    reader: UsageReader, app_id: str, tenant_id: str, billed: BilledUsage, cutoff: int | None
) -> UsageTotal:
    features = [(billed.feature_key, billed.meter)]
    return reader.totals(app_id, tenant_id, features, billed.period, cutoff)[billed.feature_key]


def _adjustment(billed: BilledUsage, amount: Money) -> UsageAdjustment:
    return UsageAdjustment(
        invoice_id=billed.invoice_id, feature_key=billed.feature_key, amount=amount
    )


def _credited(uow: UnitOfWork, billed: BilledUsage, amount: Money, invoice_id: UUID) -> bool:
    """Credit `amount` of the feature's usage lines on the invoice that billed them (the
    note's id follows from the invoice being drafted: a rerun finds it made)."""
    # imported here: the credit notes reach back to the billing settings of compose
    from commands.credit_notes.issue_credit_note import IssueCreditNote, issue_credit_note_handler

    invoice = uow.find(Invoice, billed.invoice_id)
    if invoice is None or invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PAID):
        return False
    requests = _requests(invoice, billed.feature_key, amount)
    if requests is None:
        return False
    due = invoice.state.amount_due
    method = CreditMethod.CREDIT_BALANCE
    if invoice.status is InvoiceStatus.OPEN and due is not None and due.amount >= amount.amount:
        method = CreditMethod.REDUCE_AMOUNT_DUE
    command = IssueCreditNote(
        app_id=invoice.state.app_id,
        invoice_id=invoice.id,
        reason=REASON,
        method=method,
        lines=requests,
        credit_note_id=stable_id(
            "late-usage-credit", str(invoice_id), str(invoice.id), billed.feature_key
        ),
        actor=uow.cause.actor,
    )
    try:
        issue_credit_note_handler()(command, uow)
    except DomainError:
        return False
    return True


def _requests(invoice: Invoice, feature_key: str, amount: Money) -> list[CreditRequest] | None:
    """The amount spread over the feature's usage lines, last tier first; None if they do
    not hold that much any more."""
    requests: list[CreditRequest] = []
    left = amount.amount
    for line in reversed(invoice.state.lines):
        usage = line.usage
        if line.kind is not LineKind.USAGE or usage is None or usage.feature_key != feature_key:
            continue
        take = min(left, invoice.creditable_amount(line.line_id).amount)
        if take > 0:
            requests.append(
                CreditRequest(
                    line_id=line.line_id, amount=Money(amount=take, currency=amount.currency)
                )
            )
            left -= take
        if left == 0:
            return requests
    return None
