"""Collection: a finalized invoice with an amount due goes to the provider as an invoice of
the same amount (its charge lines, then discounts, tax and credits applied as items), and
is charged with the customer's default payment method. The charge is the invoice's first
payment attempt (`retry_invoice_payment` with attempt 1), so its outcome pays the invoice or
starts dunning exactly as a retry does; the provider's webhook of the same outcome then
finds it recorded. Dunning retries charge the same provider invoice again."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
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
    ProviderUnavailable,
)
from domain.errors import Conflict
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
    """Bring the invoice's Stripe side to its state; returns what it did. Open: pushed once
    (again, voiding the old one, when a credit note changed the amount due) and charged once;
    void in Tally: voided there; paid in Tally, not through Stripe: paid out of band there
    (or voided when nothing was paid, e.g. a credit note settled it)."""
    state = invoice.state
    account = ctx.account(state.app_id, state.tenant_id)
    linked = account.provider_invoice(invoice.id) if account else None
    if invoice.status is InvoiceStatus.OPEN and invoice.amount_due.amount > 0:
        return _collect_open(ctx, invoice, linked)
    if linked is None:
        return "nothing to collect"
    if invoice.status is InvoiceStatus.VOID or (
        invoice.status is InvoiceStatus.OPEN and invoice.amount_due.amount <= 0
    ):
        return _void_there(ctx, linked)
    if invoice.status is InvoiceStatus.PAID:
        return _paid_there(ctx, invoice, linked)
    return f"nothing to do for a {invoice.status.value} invoice"


def _collect_open(ctx: PaymentContext, invoice: Invoice, linked: str | None) -> str:
    state = invoice.state
    customer = ensure_customer(ctx, state.app_id, state.tenant_id)
    if linked is None:
        linked = ctx.provider.push_invoice(customer, to_collect(invoice))
        ctx.run(_link(invoice, linked))
    else:
        at_stripe = ctx.provider.get_invoice(linked)
        if at_stripe is not None and at_stripe.status == "paid":
            return "paid at Stripe (its webhook or the reconciliation records it)"
        if at_stripe is not None and at_stripe.amount_due != invoice.amount_due.amount:
            linked = replace_invoice(ctx, invoice, customer, linked)
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


def replace_invoice(ctx: PaymentContext, invoice: Invoice, customer: str, old: str) -> str:
    """A new Stripe invoice for the invoice (its amount due changed, or its customer was
    made again): the old one voided where Stripe still lets it be, the new one linked."""
    with contextlib.suppress(ProviderRefused):  # e.g. the old customer was deleted
        ctx.provider.void_invoice(old)
    pushed = ctx.provider.push_invoice(customer, replace(to_collect(invoice), replaces=old))
    ctx.run(_link(invoice, pushed, replaces=old))
    return pushed


def _void_there(ctx: PaymentContext, linked: str) -> str:
    at_stripe = ctx.provider.get_invoice(linked)
    if at_stripe is None or at_stripe.status in ("void", "paid"):
        return f"nothing to void ({at_stripe.status if at_stripe else 'gone'} at Stripe)"
    ctx.provider.void_invoice(linked)
    return "voided at Stripe"


def _paid_there(ctx: PaymentContext, invoice: Invoice, linked: str) -> str:
    if invoice.state.payment_reference == linked:
        return "paid through Stripe"
    paid = invoice.state.amount_paid
    if paid is None or paid.amount <= 0:
        return _void_there(ctx, linked)  # settled without a payment: nothing is owed there
    at_stripe = ctx.provider.get_invoice(linked)
    if at_stripe is None or at_stripe.status != "open":
        return "nothing to mark"
    ctx.provider.mark_invoice_paid(linked)
    return "marked paid at Stripe (paid outside it)"


def _link(invoice: Invoice, provider_id: str, replaces: str | None = None) -> LinkProviderInvoice:
    suffix = f"-after-{replaces}" if replaces else ""
    return LinkProviderInvoice(
        app_id=invoice.state.app_id,
        tenant_id=invoice.state.tenant_id,
        invoice_id=invoice.id,
        provider_invoice_id=provider_id,
        replaces=replaces,
        actor=ACTOR,
        command_id=f"stripe-invoice-{invoice.id}{suffix}"[:128],
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
            self._require_same_amount(invoice, linked)
            outcome = self.provider.charge_invoice(linked)
        except ProviderRefused as refused:
            return CollectionOutcome(succeeded=False, reason=f"Stripe refused: {refused}")
        except ProviderUnavailable as down:  # not an attempt: the retry stays due
            raise CollectionUnavailable(f"Stripe is unavailable: {down}") from down
        return CollectionOutcome(succeeded=outcome.paid, reference=linked, reason=outcome.reason)

    def _require_same_amount(self, invoice: Invoice, linked: str) -> None:
        """A credit note changed the amount due and the Stripe worker has not replaced the
        Stripe invoice yet: charging it now would take the old amount."""
        at_stripe = self.provider.get_invoice(linked)
        if at_stripe is not None and at_stripe.amount_due != invoice.amount_due.amount:
            raise CollectionUnavailable(
                f"the Stripe invoice {linked} is for {at_stripe.amount_due}, the amount due is "
                f"{invoice.amount_due.amount}: the Stripe worker replaces it first"
            )


class CollectionUnavailable(Conflict):
    """The payment provider cannot take this attempt now; the retry stays due (dunning
    counts no attempt), and the next billing run tries again."""

    code = "payment_provider_unavailable"
