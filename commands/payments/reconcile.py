"""Reconciliation: Stripe against the ledger for one app, and the repairs of what drifted.

Compared per tenant with a payment account: the customer (deleted at Stripe?), each linked
subscription (ended on one side only?), each finalized invoice with an amount due (pushed?
paid, voided or of another amount at Stripe?), and Stripe's customers, subscriptions and
invoices naming the app that the ledger does not link (extra); an invoice Tally gave up on
(uncollectible) is compared too, as Stripe may still collect it. With `repair`, each drift
that has a repair is fixed through commands and recorded as a PaymentDriftRepaired event
naming it (never silently): a deleted customer is created again from the profile and
relinked, a payment made at Stripe pays the invoice, an invoice voided (or lost) at Stripe
is pushed again, an invoice never pushed is collected, a mirror canceled at Stripe cancels
the subscription (as the webhook would have), a mirror still running after the subscription
ended is canceled at Stripe. A mirror missing from the customer's subscriptions (e.g. left
with a deleted customer) is only reported: nothing says the subscription ended.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from commands.invoices.pay_invoice import PayInvoice
from commands.payments.collect import collect_invoice, to_collect
from commands.payments.context import ACTOR, PaymentContext
from commands.payments.customers import customer_details
from commands.payments.drift import Drift, invoice_drift, subscription_drift
from commands.payments.link_payment_customer import LinkPaymentCustomer
from commands.payments.ports import ProviderRefused
from commands.payments.record_payment_repair import RecordPaymentRepair
from commands.payments.relink import carry_over
from commands.subscriptions.cancel_subscription import CancelSubscription
from domain.errors import DomainError
from domain.invoice import Invoice, InvoiceStatus
from domain.payment_account import PaymentAccount
from domain.subscription import TERMINAL, Subscription

Ids = Callable[[str, str, str | None], list[UUID]]  # (app, aggregate kind, tenant) -> ids
PUSH_GRACE = timedelta(hours=1)
COLLECTED = frozenset(
    {InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE}
)


class ReportStore(Protocol):
    """Port: the last reconciliation report of each app."""

    def save(self, app_id: str, report: dict[str, Any]) -> None: ...

    def last(self, app_id: str) -> dict[str, Any] | None: ...


@dataclass
class Reconciler:
    """Finds the drift of one app and, with `repair`, repairs what it can."""

    ctx: PaymentContext
    ids: Ids
    reports: ReportStore
    now: Callable[[], datetime]

    def last(self, app_id: str) -> dict[str, Any] | None:
        return self.reports.last(app_id)

    def reconcile(self, app_id: str, *, repair: bool = False) -> dict[str, Any]:
        drifts: list[Drift] = []
        for account_id in self.ids(app_id, PaymentAccount.TYPE, None):
            account = self.ctx.find(PaymentAccount, account_id, app_id)
            if account is not None:
                drifts += self._account_drift(app_id, account)
        drifts += self._extra_customers(app_id)
        outcomes = [self._repair(app_id, d) if repair and d.repair else None for d in drifts]
        report = _report(app_id, self.now(), repair, drifts, outcomes)
        self.reports.save(app_id, report)
        return report

    def daily(self, app_id: str) -> dict[str, Any] | None:
        """Reconcile (reporting only) unless the app's last report is from today."""
        last = self.reports.last(app_id)
        today = self.now().date().isoformat()
        if last is not None and str(last.get("ran_at", ""))[:10] == today:
            return None
        return self.reconcile(app_id)

    # -- finding ---------------------------------------------------------------------------

    def _account_drift(self, app_id: str, account: PaymentAccount) -> list[Drift]:
        tenant = account.state.tenant_id
        if self.ctx.provider.get_customer(account.customer_id) is None:
            return [
                Drift(
                    "missing",
                    "customer",
                    tenant,
                    tenant,
                    account.customer_id,
                    "the Stripe customer was deleted",
                    "relink_customer",
                )
            ]
        return [
            *self._subscription_drift(app_id, account),
            *self._invoice_drift(app_id, account),
        ]

    def _subscription_drift(self, app_id: str, account: PaymentAccount) -> list[Drift]:
        tenant = account.state.tenant_id
        at_stripe = {s.id: s for s in self.ctx.provider.list_subscriptions(account.customer_id)}
        found: list[Drift] = []
        for tally_id, provider_id in account.state.subscriptions.items():
            subscription = self.ctx.find(Subscription, UUID(tally_id), app_id)
            # paused and unpaid subscriptions keep their mirror: only an end ends it
            live = subscription is not None and subscription.state.status not in TERMINAL
            drift = subscription_drift(tenant, tally_id, live, at_stripe.pop(provider_id, None))
            found += [drift] if drift else []
        found += [
            Drift("extra", "subscription", tenant, s.id, s.id, "not linked in Tally")
            for s in at_stripe.values()
            if s.status not in ("canceled", "incomplete_expired")
        ]
        return found

    def _invoice_drift(self, app_id: str, account: PaymentAccount) -> list[Drift]:
        tenant = account.state.tenant_id
        at_stripe = {i.id: i for i in self.ctx.provider.list_invoices(account.customer_id)}
        found: list[Drift] = []
        for invoice_id in self.ids(app_id, Invoice.TYPE, tenant):
            invoice = self.ctx.find(Invoice, invoice_id, app_id)
            if invoice is None or invoice.status not in COLLECTED:
                continue
            drift = self._one_invoice(tenant, account, invoice, at_stripe)
            found += [drift] if drift else []
        found += [
            Drift("extra", "invoice", tenant, i.id, i.id, f"{i.status} at Stripe, not linked")
            for i in at_stripe.values()
            if i.metadata.get("tally_app_id") == app_id and i.status != "void"
        ]
        return found

    def _one_invoice(
        self, tenant: str, account: PaymentAccount, invoice: Invoice, at_stripe: dict[str, Any]
    ) -> Drift | None:
        linked = account.provider_invoice(invoice.id)
        due = invoice.amount_due.amount
        if linked is None:
            if invoice.status is not InvoiceStatus.OPEN or due <= 0 or self._just_now(invoice):
                return None
            return Drift(
                "missing", "invoice", tenant, str(invoice.id), None, "never pushed", "collect"
            )
        provider = at_stripe.pop(linked, None) or self.ctx.provider.get_invoice(linked)
        drift = invoice_drift(tenant, str(invoice.id), invoice.status.value, due, provider)
        if drift is not None and drift.provider_id is None:
            # the linked invoice is gone: name it, so a re-push replaces it (a new key)
            return dataclasses.replace(drift, provider_id=linked)
        return drift

    def _just_now(self, invoice: Invoice) -> bool:
        """Finalized within PUSH_GRACE: the Stripe worker is still on it, not a drift."""
        finalized = invoice.state.finalized_at
        return finalized is not None and self.now() - finalized < PUSH_GRACE

    def _extra_customers(self, app_id: str) -> list[Drift]:
        found = []
        for customer in self.ctx.provider.list_customers(app_id):
            tenant = customer.metadata.get("tally_tenant_id", "")
            account = self.ctx.account(app_id, tenant) if tenant else None
            if account is not None and account.customer_id == customer.id:
                continue
            repair = "link_customer" if tenant and account is None else None
            detail = "not linked in Tally" + ("" if repair else " (the tenant has another)")
            found.append(
                Drift("extra", "customer", tenant, customer.id, customer.id, detail, repair)
            )
        return found

    # -- repairing -------------------------------------------------------------------------

    def _repair(self, app_id: str, drift: Drift) -> str:
        try:
            action = REPAIRS[drift.repair or ""](self, app_id, drift)
        except (DomainError, ProviderRefused) as error:
            return f"not repaired: {error}"
        return action

    def _record(self, app_id: str, drift: Drift, action: str, **links: Any) -> None:
        self.ctx.run(
            RecordPaymentRepair(
                app_id=app_id,
                tenant_id=drift.tenant_id,
                drift=drift.drift,
                object=drift.object,
                object_id=drift.object_id,
                detail=drift.detail,
                action=action,
                actor=ACTOR,
                **links,
            )
        )

    def relink_customer(self, app_id: str, drift: Drift) -> str:
        customer = self.ctx.provider.create_customer(
            customer_details(self.ctx, app_id, drift.tenant_id)
        )
        action = f"created customer {customer} from the billing profile"
        self._record(app_id, drift, action, customer_id=customer)
        moved = carry_over(self.ctx, self.ids, app_id, drift.tenant_id)
        return "; ".join([action, *moved])

    def link_customer(self, app_id: str, drift: Drift) -> str:
        self.ctx.run(
            LinkPaymentCustomer(
                app_id=app_id, tenant_id=drift.tenant_id, customer_id=drift.object_id, actor=ACTOR
            )
        )
        action = f"linked customer {drift.object_id}"
        self._record(app_id, drift, action)
        return action

    def pay_in_tally(self, app_id: str, drift: Drift) -> str:
        self.ctx.run(
            PayInvoice(
                app_id=app_id,
                invoice_id=UUID(drift.object_id),
                payment_reference=drift.provider_id,
                actor=ACTOR,
            )
        )
        action = f"recorded the payment made at Stripe ({drift.provider_id})"
        self._record(app_id, drift, action)
        return action

    def push_again(self, app_id: str, drift: Drift) -> str:
        invoice = self.ctx.find(Invoice, UUID(drift.object_id), app_id)
        account = self.ctx.account(app_id, drift.tenant_id)
        if invoice is None or account is None:
            return "not repaired: the invoice or the account is gone"
        replacing = dataclasses.replace(to_collect(invoice), replaces=drift.provider_id)
        pushed = self.ctx.provider.push_invoice(account.customer_id, replacing)
        if pushed == account.provider_invoice(invoice.id):
            return f"not repaired: Stripe answered with {pushed}, the invoice linked already"
        action = f"pushed again as {pushed}"
        self._record(app_id, drift, action, invoice_id=invoice.id, provider_invoice_id=pushed)
        return action

    def collect(self, app_id: str, drift: Drift) -> str:
        invoice = self.ctx.find(Invoice, UUID(drift.object_id), app_id)
        if invoice is None:
            return "not repaired: the invoice is gone"
        action = collect_invoice(self.ctx, invoice)
        self._record(app_id, drift, action)
        return action

    def cancel_in_tally(self, app_id: str, drift: Drift) -> str:
        self.ctx.run(
            CancelSubscription(
                app_id=app_id,
                subscription_id=UUID(drift.object_id),
                reason="its Stripe subscription ended",
                actor=ACTOR,
            )
        )
        action = "canceled the subscription (its Stripe subscription ended)"
        self._record(app_id, drift, action)
        return action

    def cancel_at_stripe(self, app_id: str, drift: Drift) -> str:
        if drift.provider_id is None:
            return "not repaired: no Stripe subscription"
        self.ctx.provider.cancel_subscription(drift.provider_id)
        action = f"canceled Stripe subscription {drift.provider_id}"
        self._record(app_id, drift, action)
        return action


REPAIRS: dict[str, Callable[[Reconciler, str, Drift], str]] = {
    "relink_customer": Reconciler.relink_customer,
    "link_customer": Reconciler.link_customer,
    "pay_in_tally": Reconciler.pay_in_tally,
    "push_again": Reconciler.push_again,
    "collect": Reconciler.collect,
    "cancel_in_tally": Reconciler.cancel_in_tally,
    "cancel_at_stripe": Reconciler.cancel_at_stripe,
}


def _report(
    app_id: str,
    ran_at: datetime,
    repair: bool,
    drifts: list[Drift],
    outcomes: list[str | None],
) -> dict[str, Any]:
    rows = [
        {**drift.as_dict(), "repaired": outcome}
        for drift, outcome in zip(drifts, outcomes, strict=True)
    ]
    return {
        "app_id": app_id,
        "ran_at": ran_at.isoformat(),
        "repair": repair,
        "in_step": not drifts,
        "drift_count": len(drifts),
        "drifts": rows,
    }
