"""Collection: a finalized invoice with an amount due goes to the provider as an invoice of
the same amount (its charge lines, then discounts, tax and credits applied as items), and
is charged with the customer's default payment method. The charge is the invoice's first
payment attempt (`retry_invoice_payment` with attempt 1), so its outcome pays the invoice or
starts dunning exactly as a retry does; the provider's webhook of the same outcome then
finds it recorded. Dunning retries charge the same provider invoice again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from commands.billing.ports import CollectionOutcome
from commands.invoices.retry_invoice_payment import RetryInvoicePayment
from commands.payments.context import ACTOR, PaymentContext
from commands.payments.customers import ensure_customer
from commands.payments.link_provider_objects import LinkProviderInvoice
from commands.payments.ports import (
    InvoiceItem,
    InvoiceToCollect,
    PaymentProvider,
    ProviderRefused,
)
from domain.invoice import NOT_IN_SUBTOTAL, Invoice, InvoiceStatus
from domain.money import Money
from domain.payment_account import PaymentAccount, payment_account_id

NOT_PUSHED = "the invoice is not at Stripe yet (the Stripe worker pushes it)"


def provider_items(invoice: Invoice) -> tuple[InvoiceItem, ...]:
    """Items summing to the amount due; one item of it when they would not (never wrong)."""
    state, totals = invoice.state, invoice.totals
    items = [
        InvoiceItem(line.description, line.amount.amount)
        for line in state.lines
        if line.kind not in NOT_IN_SUBTOTAL and line.amount.amount
    ]
    inclusive = totals.inclusive_tax.amount if totals.inclusive_tax else 0
    extra = [
        ("Discounts", -totals.discount_total.amount),
        ("Tax", totals.tax_total.amount - inclusive),
        ("Prepaid credits applied", -_amount(state.credits_applied)),
        ("Credit balance applied", -_amount(state.balance_applied)),
    ]
    items += [InvoiceItem(text, amount) for text, amount in extra if amount]
    due = invoice.amount_due.amount
    if sum(item.amount for item in items) != due:
        return (InvoiceItem(f"Invoice {state.number_text}", due),)
    return tuple(items)


def _amount(money: Money | None) -> int:
    return money.amount if money is not None else 0


def to_collect(invoice: Invoice) -> InvoiceToCollect:
    state = invoice.state
    return InvoiceToCollect(
        app_id=state.app_id,
        tenant_id=state.tenant_id,
        invoice_id=str(invoice.id),
        number=state.number_text or "",
        currency=state.currency,
        amount_due=invoice.amount_due.amount,
        items=provider_items(invoice),
    )


def collect_invoice(ctx: PaymentContext, invoice: Invoice) -> str:
    """Push the invoice (once) and make its first charge (once); returns what it did."""
    state = invoice.state
    if invoice.status is not InvoiceStatus.OPEN or invoice.amount_due.amount <= 0:
        return "nothing to collect"
    customer = ensure_customer(ctx, state.app_id, state.tenant_id)
    account = ctx.account(state.app_id, state.tenant_id)
    if account is None or account.provider_invoice(invoice.id) is None:
        provider_id = ctx.provider.push_invoice(customer, to_collect(invoice))
        ctx.run(_link(invoice, provider_id))
    if state.payment_attempts:
        return "pushed; dunning retries it"
    result = ctx.run(
        RetryInvoicePayment(
            app_id=state.app_id,
            invoice_id=invoice.id,
            attempt=1,
            actor=ACTOR,
            command_id=f"stripe-charge-{invoice.id}-1",
        )
    )
    return "charged: paid" if result.get("paid") else "charged: failed"


def _link(invoice: Invoice, provider_id: str) -> LinkProviderInvoice:
    return LinkProviderInvoice(
        app_id=invoice.state.app_id,
        tenant_id=invoice.state.tenant_id,
        invoice_id=invoice.id,
        provider_invoice_id=provider_id,
        actor=ACTOR,
        command_id=f"stripe-invoice-{invoice.id}",
    )


@dataclass
class ProviderCollector:
    """The billing engine's PaymentCollector on the provider: charges the invoice's provider
    invoice again (a charge of an invoice the provider already has paid counts as paid)."""

    provider: PaymentProvider
    load: Callable[[UUID], Any]

    def collect(self, invoice: Invoice) -> CollectionOutcome:
        state = invoice.state
        account = self.load(payment_account_id(state.app_id, state.tenant_id))
        owned = isinstance(account, PaymentAccount)
        linked = account.provider_invoice(invoice.id) if owned else None
        if linked is None:
            return CollectionOutcome(succeeded=False, reason=NOT_PUSHED)
        try:
            outcome = self.provider.charge_invoice(linked)
        except ProviderRefused as refused:
            return CollectionOutcome(succeeded=False, reason=f"Stripe refused: {refused}")
        return CollectionOutcome(succeeded=outcome.paid, reference=linked, reason=outcome.reason)
