"""Stripe events of an app, turned into Tally commands (the webhook intake calls `process`
once the event is verified and stored; see adapters/stripe/intake.py).

Every command carries a command_id derived from the Stripe event id, so processing an event
again (after a crash, or a redelivery the intake let through) changes nothing; an event
already audited answers its recorded outcome without reacting again. A refusal of the ledger
(the invoice is already paid, the subscription already canceled) is an outcome, not an
error. Each processed event is recorded in the audit log (ProviderWebhookProcessed), unknown
types too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from commands.base import Command
from commands.credit_notes.issue_credit_note import IssueCreditNote
from commands.invoices.fail_invoice_payment import FailInvoicePayment
from commands.invoices.pay_invoice import PayInvoice
from commands.payments.context import ACTOR, PaymentContext
from commands.payments.link_payment_customer import LinkPaymentCustomer
from commands.payments.link_provider_objects import LinkProviderSubscription
from commands.payments.record_provider_webhook import RecordProviderWebhook
from commands.profiles.set_billing_profile import SetBillingProfile
from commands.subscriptions.cancel_subscription import CancelSubscription
from commands.subscriptions.change_plan import ChangePlan
from commands.subscriptions.start_subscription import StartSubscription
from commands.subscriptions.undo_scheduled_cancel import UndoScheduledCancel
from domain.base import stable_id
from domain.errors import DomainError
from domain.invoice import CreditMethod, Invoice, InvoiceStatus
from domain.money import Money
from domain.payment_account import PROVIDER
from domain.profile import BillingProfile, billing_profile_id
from domain.provider_webhook import ProviderWebhook, provider_webhook_id
from domain.refund import refund_requests
from domain.subscription import TERMINAL, Subscription

StripeObject = dict[str, Any]
UNHANDLED = "ignored: not a type Tally handles"
NOTHING = "nothing to change"
PAYABLE = frozenset({InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE})  # as Invoice.pay


@dataclass(frozen=True)
class Webhook:
    """One verified Stripe event of an app."""

    app_id: str
    event_id: str
    type: str
    object: StripeObject

    @property
    def tenant_id(self) -> str | None:
        return _metadata(self.object).get("tally_tenant_id")

    def command_id(self, step: str = "") -> str:
        return f"stripe-{self.event_id}{'-' + step if step else ''}"[:128]


Reaction = Callable[["StripeWebhooks", Webhook], str]


@dataclass
class StripeWebhooks:
    """The WebhookProcessor of Tally: one named reaction per handled Stripe event type."""

    ctx: PaymentContext

    def process(self, app_id: str, event: dict[str, Any]) -> str:
        webhook = Webhook(app_id, str(event["id"]), str(event["type"]), _object_of(event))
        recorded = self._recorded(webhook)
        if recorded is not None:
            return recorded  # a redelivery: its reaction ran and was audited already
        reaction = REACTIONS.get(webhook.type)
        outcome = UNHANDLED if reaction is None else reaction(self, webhook)
        self._audit(webhook, outcome)
        return outcome

    def _recorded(self, webhook: Webhook) -> str | None:
        """The outcome audited for this event, if it was processed before.

        Its reaction must not run again: the ledger has moved on (the invoice it paid is
        paid), so it would answer another outcome, and an audit command of the same
        command_id with another outcome is refused by the bus."""
        audit_id = provider_webhook_id(PROVIDER, webhook.event_id)
        found = self.ctx.find(ProviderWebhook, audit_id, webhook.app_id)
        return found.state.outcome if found is not None else None

    def _audit(self, webhook: Webhook, outcome: str) -> None:
        self.ctx.run(
            RecordProviderWebhook(
                app_id=webhook.app_id,
                provider_event_id=webhook.event_id,
                type=webhook.type,
                object_id=_text(webhook.object.get("id")),
                outcome=outcome[:500],
                tenant_id=webhook.tenant_id,
                actor=ACTOR,
                command_id=webhook.command_id("audit"),
            )
        )

    def attempt(self, command: Command, done: str) -> str:
        """Run a command; a refusal by the ledger is the outcome, not a failure."""
        try:
            self.ctx.run(command)
        except DomainError as refused:
            return f"ignored: {refused.message}"
        return done

    # -- checkout and subscriptions --------------------------------------------------------

    def checkout_completed(self, webhook: Webhook) -> str:
        session = webhook.object
        metadata = _metadata(session)
        tenant, plan_key = metadata.get("tally_tenant_id"), metadata.get("tally_plan_key")
        if not tenant or not plan_key:
            return "ignored: the session names no Tally tenant and plan"
        if customer := _text(session.get("customer")):
            self._link_customer(webhook, tenant, customer)
        subscription_id = stable_id("stripe-checkout", webhook.app_id, _text(session.get("id")))
        # linked before the start, so the Stripe worker (mirroring the new subscription)
        # finds Stripe's subscription and never makes a second one; a start the ledger then
        # refuses leaves a link to nothing, which reconciliation offers to cancel at Stripe
        if provider_subscription := _text(session.get("subscription")):
            self._link_subscription(webhook, tenant, subscription_id, provider_subscription)
        started = self.attempt(
            StartSubscription(
                app_id=webhook.app_id,
                tenant_id=tenant,
                plan_key=plan_key,
                plan_version=_version(metadata.get("tally_plan_version")),
                subscription_id=subscription_id,
                actor=ACTOR,
                command_id=webhook.command_id("start"),
            ),
            "subscription started",
        )
        return started

    def _link_customer(self, webhook: Webhook, tenant: str, customer: str) -> None:
        if self.ctx.account(webhook.app_id, tenant) is None:
            self.attempt(
                LinkPaymentCustomer(
                    app_id=webhook.app_id,
                    tenant_id=tenant,
                    customer_id=customer,
                    actor=ACTOR,
                    command_id=webhook.command_id("customer"),
                ),
                "linked",
            )

    def _link_subscription(
        self, webhook: Webhook, tenant: str, subscription_id: UUID, provider_id: str
    ) -> None:
        if self.ctx.account(webhook.app_id, tenant) is not None:
            self.attempt(
                LinkProviderSubscription(
                    app_id=webhook.app_id,
                    tenant_id=tenant,
                    subscription_id=subscription_id,
                    provider_subscription_id=provider_id,
                    actor=ACTOR,
                    command_id=webhook.command_id("link"),
                ),
                "linked",
            )

    def subscription_created(self, webhook: Webhook) -> str:
        tally_id = _uuid(_metadata(webhook.object).get("tally_subscription_id"))
        tenant = webhook.tenant_id
        if not tally_id or not tenant:
            return "ignored: not a subscription Tally mirrors (checkout completion starts one)"
        self._link_subscription(webhook, tenant, tally_id, _text(webhook.object["id"]))
        return "mirror linked"

    def subscription_updated(self, webhook: Webhook) -> str:
        """The portal's changes: the plan (a price the catalog links) first, then the
        cancel at period end (set or undone); both when one event carries both."""
        subscription = self._subscription(webhook)
        if subscription is None:
            return "ignored: not a subscription Tally mirrors"
        outcomes = [self._plan_change(webhook, subscription), self._cancel_flag(webhook)]
        done = [outcome for outcome in outcomes if outcome != NOTHING]
        return "; ".join(done) or NOTHING

    def _cancel_flag(self, webhook: Webhook) -> str:
        subscription = self._subscription(webhook)
        if subscription is None:
            return NOTHING
        wants_cancel = bool(webhook.object.get("cancel_at_period_end"))
        if wants_cancel and not subscription.state.cancel_at_period_end:
            return self.attempt(
                self._cancel(webhook, subscription, at_period_end=True), "cancel scheduled"
            )
        if not wants_cancel and subscription.state.cancel_at_period_end:
            return self.attempt(
                UndoScheduledCancel(
                    app_id=webhook.app_id,
                    subscription_id=subscription.id,
                    actor=ACTOR,
                    command_id=webhook.command_id("undo"),
                ),
                "scheduled cancel undone",
            )
        return NOTHING

    def _plan_change(self, webhook: Webhook, subscription: Subscription) -> str:
        catalog = self.ctx.catalog(webhook.app_id)
        price = _price_of(webhook.object)
        plan = catalog.plan_of(price) if catalog and price else None
        terms = subscription.state.terms
        if plan is None or plan == (terms.plan_key, terms.version):
            return NOTHING
        return self.attempt(
            ChangePlan(
                app_id=webhook.app_id,
                subscription_id=subscription.id,
                plan_key=plan[0],
                plan_version=plan[1],
                actor=ACTOR,
                command_id=webhook.command_id("plan"),
            ),
            f"plan changed to {plan[0]} v{plan[1]}",
        )

    def subscription_deleted(self, webhook: Webhook) -> str:
        subscription = self._subscription(webhook)
        if subscription is None:
            return "ignored: not a subscription Tally mirrors"
        if subscription.state.status in TERMINAL:
            return "ignored: already ended"
        return self.attempt(self._cancel(webhook, subscription, at_period_end=False), "canceled")

    def _cancel(
        self, webhook: Webhook, subscription: Subscription, *, at_period_end: bool
    ) -> CancelSubscription:
        return CancelSubscription(
            app_id=webhook.app_id,
            subscription_id=subscription.id,
            at_period_end=at_period_end,
            reason="canceled at Stripe",
            actor=ACTOR,
            command_id=webhook.command_id("cancel"),
        )

    def _subscription(self, webhook: Webhook) -> Subscription | None:
        tenant = webhook.tenant_id
        account = self.ctx.account(webhook.app_id, tenant) if tenant else None
        found = account.tally_subscription(_text(webhook.object.get("id"))) if account else None
        if found is None:
            return None
        return self.ctx.find(Subscription, found, webhook.app_id)

    # -- payments --------------------------------------------------------------------------

    def payment_succeeded(self, webhook: Webhook) -> str:
        invoice = self._invoice(webhook)
        if invoice is None:
            return "ignored: not an invoice of Tally"
        if invoice.status not in PAYABLE:
            return f"ignored: the invoice is {invoice.status.value}"
        return self.attempt(
            PayInvoice(
                app_id=webhook.app_id,
                invoice_id=invoice.id,
                payment_reference=_text(webhook.object.get("id")),
                actor=ACTOR,
                command_id=webhook.command_id("pay"),
            ),
            "invoice paid",
        )

    def payment_failed(self, webhook: Webhook) -> str:
        invoice = self._invoice(webhook)
        if invoice is None:
            return "ignored: not an invoice of Tally"
        if invoice.status is not InvoiceStatus.OPEN:
            return f"ignored: the invoice is {invoice.status.value}"
        attempt = webhook.object.get("attempt_count")
        if isinstance(attempt, int) and attempt <= invoice.state.payment_attempts:
            return f"ignored: attempt {attempt} is already recorded"
        return self.attempt(
            FailInvoicePayment(
                app_id=webhook.app_id,
                invoice_id=invoice.id,
                reason=_failure_reason(webhook.object),
                actor=ACTOR,
                command_id=webhook.command_id("fail"),
            ),
            "payment failure recorded",
        )

    def intent_succeeded(self, webhook: Webhook) -> str:
        if webhook.object.get("invoice"):
            return "ignored: the Stripe invoice's own event records it"
        return self.payment_succeeded(webhook)

    def intent_failed(self, webhook: Webhook) -> str:
        if webhook.object.get("invoice"):
            return "ignored: the Stripe invoice's own event records it"
        return self.payment_failed(webhook)

    def _invoice(self, webhook: Webhook) -> Invoice | None:
        """The Tally invoice a Stripe invoice, payment intent or charge collects."""
        tally_id = _uuid(_metadata(webhook.object).get("tally_invoice_id"))
        if tally_id is None and webhook.tenant_id is None:
            return None
        if tally_id is None:
            account = self.ctx.account(webhook.app_id, webhook.tenant_id or "")
            provider_invoice = _text(webhook.object.get("invoice") or webhook.object.get("id"))
            found = account.tally_invoice(provider_invoice) if account else None
            return self.ctx.find(Invoice, found, webhook.app_id) if found else None
        return self.ctx.find(Invoice, tally_id, webhook.app_id)

    def charge_refunded(self, webhook: Webhook) -> str:
        invoice = self._invoice(webhook)
        if invoice is None:
            return "ignored: not a charge of a Tally invoice"
        refunds = (webhook.object.get("refunds") or {}).get("data") or []
        if not refunds:
            # API versions since 2022-11-15 leave the charge's refunds out: one note for what
            # amount_refunded (the charge's refunds in all) has beyond the invoice's refunds
            refunds = [{"id": webhook.event_id, "amount": webhook.object.get("amount_refunded")}]
        outcomes = [self._refund(webhook, invoice, refund) for refund in refunds]
        return "; ".join(outcomes)

    def _refund(self, webhook: Webhook, invoice: Invoice, refund: StripeObject) -> str:
        note_id = stable_id("stripe-refund", webhook.app_id, _text(refund.get("id")))
        if self.ctx.load(note_id) is not None:
            return f"refund {refund.get('id')} already credited"
        if refund.get("status") in ("failed", "canceled"):
            return f"ignored: refund {refund.get('id')} is {refund.get('status')}"
        current = self.ctx.find(Invoice, invoice.id, webhook.app_id) or invoice
        amount = _unrecorded(refund.get("amount"), webhook.object, current)
        if amount is None:
            return f"ignored: refund {refund.get('id')} has no amount"
        if amount <= 0:
            return f"refund {refund.get('id')} already credited by the invoice's refunds"
        lines = refund_requests(current, Money(amount=amount, currency=current.state.currency))
        if lines == []:  # an empty list would credit the whole invoice
            return f"ignored: refund {refund.get('id')} is less than any line's smallest credit"
        return self.attempt(
            IssueCreditNote(
                app_id=webhook.app_id,
                invoice_id=invoice.id,
                reason=f"refunded at Stripe ({refund.get('id')})",
                method=CreditMethod.REFUND,
                lines=lines,
                credit_note_id=note_id,
                refunded_by=_text(refund.get("id")) or None,  # Stripe paid it back already
                actor=ACTOR,
                command_id=webhook.command_id(f"refund-{refund.get('id')}"),
            ),
            f"credit note for refund {refund.get('id')}",
        )

    # -- customers -------------------------------------------------------------------------

    def customer_updated(self, webhook: Webhook) -> str:
        """A change made at Stripe (the portal): name and email come back to the profile."""
        tenant = webhook.tenant_id
        app = webhook.app_id
        profile = (
            self.ctx.find(BillingProfile, billing_profile_id(app, tenant), app) if tenant else None
        )
        if profile is None or tenant is None:
            return "ignored: no billing profile for this customer"
        terms = profile.terms.model_dump()
        changed = {
            key: value
            for key in ("name", "email")
            if isinstance(value := webhook.object.get(key), str) and value and value != terms[key]
        }
        if not changed:
            return "nothing to change"
        return self.attempt(
            SetBillingProfile(
                app_id=webhook.app_id,
                tenant_id=tenant,
                **{**terms, **changed},
                actor=ACTOR,
                command_id=webhook.command_id("profile"),
            ),
            f"profile {', '.join(sorted(changed))} updated from Stripe",
        )


REACTIONS: dict[str, Reaction] = {
    "checkout.session.completed": StripeWebhooks.checkout_completed,
    "customer.subscription.created": StripeWebhooks.subscription_created,
    "customer.subscription.updated": StripeWebhooks.subscription_updated,
    "customer.subscription.deleted": StripeWebhooks.subscription_deleted,
    "invoice.payment_succeeded": StripeWebhooks.payment_succeeded,
    "invoice.paid": StripeWebhooks.payment_succeeded,
    "invoice.payment_failed": StripeWebhooks.payment_failed,
    "payment_intent.succeeded": StripeWebhooks.intent_succeeded,
    "payment_intent.payment_failed": StripeWebhooks.intent_failed,
    "charge.refunded": StripeWebhooks.charge_refunded,
    "customer.updated": StripeWebhooks.customer_updated,
}


def _object_of(event: dict[str, Any]) -> StripeObject:
    data = event.get("data")
    found = data.get("object") if isinstance(data, dict) else None
    return found if isinstance(found, dict) else {}


def _metadata(stripe_object: StripeObject) -> dict[str, str]:
    metadata = stripe_object.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _text(value: Any) -> str:
    if isinstance(value, dict):  # an expanded object
        return str(value.get("id", ""))
    return "" if value is None else str(value)


def _unrecorded(amount: Any, charge: StripeObject, invoice: Invoice) -> int | None:
    """What of a refund the invoice's refunds do not hold yet: at most what the charge has
    had refunded beyond them (so no refund is credited twice, whichever way it arrived)."""
    if not isinstance(amount, int) or amount <= 0:
        return None
    refunded = charge.get("amount_refunded")
    if not isinstance(refunded, int):
        return amount
    return min(amount, refunded - invoice.state.refunded_total)


def _uuid(value: Any) -> UUID | None:
    """A Tally id from Stripe metadata (anyone with dashboard access can edit it)."""
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


def _version(value: Any) -> int | None:
    text = str(value or "")
    return int(text) if text.isdigit() and int(text) > 0 else None


def _price_of(subscription: StripeObject) -> str | None:
    items = (subscription.get("items") or {}).get("data") or []
    price = _text(items[0].get("price")) if items else ""
    return price or None


def _failure_reason(stripe_object: StripeObject) -> str:
    error = stripe_object.get("last_payment_error") or stripe_object.get("last_finalization_error")
    message = error.get("message") if isinstance(error, dict) else None
    return f"Stripe: {message or 'payment failed'}"[:500]
