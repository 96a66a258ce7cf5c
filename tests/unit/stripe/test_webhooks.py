"""The Stripe webhook processor (commands/payments/webhooks.py) on the embedded system with
the fake provider: each handled event type becomes Tally commands, a refusal of the ledger
is an outcome, the same event again changes nothing, and every event is audited.

Events are shaped as Stripe sends them: the event object
(https://docs.stripe.com/api/events/object) around a `data.object` of its type
(https://docs.stripe.com/api/events/types), each object as its API page documents it:
checkout sessions https://docs.stripe.com/api/checkout/sessions/object, invoices
https://docs.stripe.com/api/invoices/object, payment intents
https://docs.stripe.com/api/payment_intents/object, charges
https://docs.stripe.com/api/charges/object with refunds
https://docs.stripe.com/api/refunds/object, subscriptions
https://docs.stripe.com/api/subscriptions/object and customers
https://docs.stripe.com/api/customers/object. Only the fields Tally reads, and a few that
make the object recognisable, are filled in.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any
from uuid import UUID

from adapters.billing.runs import run_billing
from adapters.bootstrap import System
from adapters.cli.events import read_log
from commands.payments.sessions import CheckoutRequest, checkout_session
from commands.payments.webhooks import UNHANDLED
from domain.base import stable_id
from domain.clock import SettableClock
from domain.credit_note import CreditNote
from domain.invoice import CreditMethod, Invoice, InvoiceStatus
from domain.payment_catalog import PaymentCatalog, payment_catalog_id
from domain.profile import BillingProfile, billing_profile_id
from domain.provider_webhook import ProviderWebhook, provider_webhook_id
from domain.subscription import Status as SubscriptionStatus
from domain.subscription import Subscription
from projections.envelope import EventEnvelope
from tests.factories import T0
from tests.fake_payment_provider import FakePaymentProvider
from tests.unit.stripe.support import (
    APP,
    account,
    define_plan,
    eur,
    invoice_of,
    load,
    open_invoice,
    profile,
    send,
    subscribe,
    subscription,
    sync,
)

API_VERSION = "2024-06-20"  # refunds left out of charges since 2022-11-15; see the refund tests
_numbers = itertools.count(1)


def taxed_invoice(system: System, provider: FakePaymentProvider, clock: SettableClock) -> UUID:
    """A paid invoice of 119.00: the plan's 100.00 and 19 % VAT (DE), billed by a billing
    run, collected through Stripe with a good card."""
    define_plan(system)
    send(system, "set_tax_rate", country="DE", rate_percent="19.0", behavior="exclusive")
    profile(system)
    sync(system)
    provider.attach_payment_method(account(system).customer_id, provider.make_card())
    subscribe(system)
    run_billing(system, system.index.ids, APP, clock, T0)
    sync(system)
    [invoice_id] = system.index.ids(APP, Invoice.TYPE, "t1")
    invoice = load(system, Invoice, invoice_id)
    assert invoice.status is InvoiceStatus.PAID and invoice.amount_due.amount == 11900
    return invoice_id


def log(system: System) -> list[EventEnvelope]:
    return read_log(system, 0, 100_000, None, None)


def audited(system: System, event_id: str) -> ProviderWebhook:
    found: ProviderWebhook = load(system, ProviderWebhook, provider_webhook_id("stripe", event_id))
    return found


def credit_notes(system: System, invoice_id: UUID) -> list[CreditNote]:
    return [
        load(system, CreditNote, note)
        for note in invoice_of(system, invoice_id).state.credit_note_ids
    ]


# --- Stripe events ---------------------------------------------------------------------------


def process(system: System, event: dict[str, Any]) -> str:
    outcome: str = system.stripe.webhooks.process(APP, event)
    return outcome


def event(kind: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_test_{next(_numbers)}",
        "object": "event",
        "api_version": API_VERSION,
        "created": int(T0.timestamp()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": kind,
        "data": {"object": obj},
    }


def tally(tenant: str = "t1", **more: str) -> dict[str, str]:
    """The metadata Tally puts on every Stripe object it makes (commands/payments/context.py)."""
    return {"tally_app_id": APP, "tally_tenant_id": tenant, **more}


def invoice_object(
    stripe_id: str, *, metadata: dict[str, str], status: str = "paid", **fields: Any
) -> dict[str, Any]:
    return {
        "id": stripe_id,
        "object": "invoice",
        "customer": fields.pop("customer", "cus_test"),
        "status": status,
        "currency": "eur",
        "collection_method": "charge_automatically",
        "metadata": metadata,
        **fields,
    }


def stripe_subscription(stripe_id: str, price: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": stripe_id,
        "object": "subscription",
        "status": fields.pop("status", "active"),
        "cancel_at_period_end": fields.pop("cancel_at_period_end", False),
        "items": {
            "object": "list",
            "data": [{"id": "si_test_1", "object": "subscription_item", "price": {"id": price}}],
        },
        **fields,
    }


# --- checkout.session.completed --------------------------------------------------------------


def checkout(system: System, provider: FakePaymentProvider) -> dict[str, Any]:
    """A session Tally asked for (POST /v1/checkout/sessions), completed at Stripe: Stripe made
    the customer's subscription with the session's metadata (subscription_data.metadata)."""
    url = checkout_session(
        system.stripe.ctx,
        APP,
        CheckoutRequest(
            tenant_id="t1",
            plan_key="pro",
            success_url="https://app.example/ok",
            cancel_url="https://app.example/no",
        ),
    )
    [session] = [s for s in provider.checkout_sessions.values() if s.url == url]
    assert session.price_id is not None
    stripe_sub = provider.create_subscription(
        session.customer_id, session.price_id, session.metadata, f"checkout-{session.id}"
    )
    return {
        "id": session.id,
        "object": "checkout.session",
        "mode": "subscription",
        "status": "complete",
        "payment_status": "no_payment_required",  # a trial: Tally charges its own invoices
        "customer": session.customer_id,
        "subscription": stripe_sub,
        "metadata": session.metadata,
    }


def test_a_completed_checkout_starts_the_subscription_and_links_customer_and_mirror(
    system: System, provider: FakePaymentProvider
) -> None:
    define_plan(system)
    profile(system)
    session = checkout(system, provider)
    completed = event("checkout.session.completed", session)
    assert process(system, completed) == "subscription started"
    started = subscription(system, stable_id("stripe-checkout", APP, session["id"]))
    assert (started.state.tenant_id, started.state.terms.plan_key) == ("t1", "pro")
    linked = account(system)
    assert linked.customer_id == session["customer"]
    assert linked.provider_subscription(started.id) == session["subscription"]

    before = log(system)
    assert process(system, completed) == "subscription started"  # the outcome recorded
    assert log(system) == before
    assert system.index.ids(APP, Subscription.TYPE, "t1") == [started.id]


def test_the_same_session_in_another_event_starts_nothing_more(
    system: System, provider: FakePaymentProvider
) -> None:
    define_plan(system)
    profile(system)
    session = checkout(system, provider)
    process(system, event("checkout.session.completed", session))
    again = process(system, event("checkout.session.completed", session))
    assert again.startswith("ignored:"), again
    assert len(system.index.ids(APP, Subscription.TYPE, "t1")) == 1


def test_a_checkout_of_a_tenant_without_an_account_links_the_sessions_customer(
    system: System,
) -> None:
    define_plan(system)
    session = {
        "id": "cs_test_payment_link",
        "object": "checkout.session",
        "mode": "subscription",
        "customer": "cus_from_checkout",
        "subscription": "sub_from_checkout",
        "metadata": tally(tally_plan_key="pro"),
    }
    assert process(system, event("checkout.session.completed", session)) == "subscription started"
    assert account(system).customer_id == "cus_from_checkout"
    assert account(system).tally_subscription("sub_from_checkout") is not None


def test_the_subscription_starts_on_the_plan_version_the_session_priced(
    system: System, provider: FakePaymentProvider
) -> None:
    define_plan(system, price=10000)
    profile(system)
    session = checkout(system, provider)  # priced with version 1
    send(system, "revise_plan", plan_key="pro", name="Pro", base_price=eur(12000))
    process(system, event("checkout.session.completed", session))
    started = subscription(system, stable_id("stripe-checkout", APP, session["id"]))
    assert (started.state.terms.version, started.state.terms.base_price.amount) == (1, 10000)


def test_a_checkout_the_ledger_refuses_leaves_its_stripe_subscription_to_cancel(
    system: System, provider: FakePaymentProvider
) -> None:
    define_plan(system)
    profile(system)
    subscribe(system)  # t1 already subscribes: a second live subscription is refused
    session = checkout(system, provider)
    outcome = process(system, event("checkout.session.completed", session))
    assert outcome.startswith("ignored:"), outcome
    # linked before the start (so no second mirror races it), to a subscription that never
    # started: reconciliation offers to cancel it at Stripe
    orphan = account(system).tally_subscription(session["subscription"])
    assert orphan is not None and system.aggregate(orphan) is None
    assert system.stripe is not None
    system.index.refresh()
    report = system.stripe.reconciler.reconcile(APP)
    assert [(d["object_id"], d["repair"]) for d in report["drifts"]] == [
        (str(orphan), "cancel_at_stripe")
    ]


def test_a_session_naming_no_tenant_is_ignored(system: System) -> None:
    define_plan(system)
    session = {"id": "cs_test_other", "object": "checkout.session", "metadata": {}}
    completed = event("checkout.session.completed", session)
    assert process(system, completed).startswith("ignored")
    assert system.index.ids(APP, Subscription.TYPE, None) == []
    assert audited(system, completed["id"]).state.outcome.startswith("ignored")


# --- invoice.payment_succeeded / invoice.paid ------------------------------------------------


def test_a_payment_names_the_invoice_by_its_metadata_and_pays_it_once(system: System) -> None:
    invoice_id = open_invoice(system)
    paid = event(
        "invoice.payment_succeeded",
        invoice_object("in_test_1", metadata=tally(tally_invoice_id=str(invoice_id))),
    )
    assert process(system, paid) == "invoice paid"
    invoice = invoice_of(system, invoice_id)
    assert invoice.status is InvoiceStatus.PAID
    assert invoice.state.payment_reference == "in_test_1"

    before = log(system)
    assert process(system, paid) == "invoice paid"  # redelivered: the recorded outcome
    assert log(system) == before
    also = event("invoice.paid", paid["data"]["object"])  # Stripe sends both
    assert process(system, also) == "ignored: the invoice is paid"


def test_a_payment_names_the_invoice_by_its_stripe_invoice_and_recovers_the_subscription(
    system: System,
) -> None:
    define_plan(system)
    profile(system)
    subscription_id = subscribe(system)
    invoice_id = open_invoice(system, subscription_id)
    sync(system)  # pushed to Stripe and charged: no card yet, so the charge failed
    assert subscription(system, subscription_id).state.status is SubscriptionStatus.PAST_DUE
    stripe_id = account(system).provider_invoice(invoice_id)
    assert stripe_id is not None
    paid = invoice_object(stripe_id, metadata={"tally_app_id": APP, "tally_tenant_id": "t1"})
    assert process(system, event("invoice.payment_succeeded", paid)) == "invoice paid"
    assert invoice_of(system, invoice_id).state.payment_reference == stripe_id
    assert subscription(system, subscription_id).state.status is SubscriptionStatus.ACTIVE


def test_an_invoice_tally_gave_up_on_is_paid_when_stripe_collects_it(system: System) -> None:
    invoice_id = open_invoice(system)
    send(system, "mark_invoice_uncollectible", invoice_id=str(invoice_id))
    paid = invoice_object("in_test_late", metadata=tally(tally_invoice_id=str(invoice_id)))
    assert process(system, event("invoice.paid", paid)) == "invoice paid"
    assert invoice_of(system, invoice_id).status is InvoiceStatus.PAID


def test_an_invoice_of_no_tally_invoice_is_ignored(system: System) -> None:
    stranger = invoice_object("in_test_stranger", metadata={"order": "42"})
    assert process(system, event("invoice.paid", stranger)) == "ignored: not an invoice of Tally"
    unknown = invoice_object("in_test_unknown", metadata=tally(tally_invoice_id="not-a-uuid"))
    assert process(system, event("invoice.paid", unknown)) == "ignored: not an invoice of Tally"


# --- invoice.payment_failed ------------------------------------------------------------------


def test_a_failed_payment_starts_dunning_once_per_attempt(system: System) -> None:
    define_plan(system)
    subscription_id = subscribe(system)
    invoice_id = open_invoice(system, subscription_id)
    metadata = tally(tally_invoice_id=str(invoice_id))

    def failed(attempt: int) -> dict[str, Any]:
        obj = invoice_object("in_test_2", metadata=metadata, status="open", attempt_count=attempt)
        return event("invoice.payment_failed", obj)

    assert process(system, failed(1)) == "payment failure recorded"
    invoice = invoice_of(system, invoice_id)
    assert (invoice.state.payment_attempts, invoice.state.next_retry_at) == (
        1,
        T0 + timedelta(days=1),
    )
    assert invoice.state.last_payment_error == "Stripe: payment failed"
    assert subscription(system, subscription_id).state.status is SubscriptionStatus.PAST_DUE
    assert process(system, failed(1)) == "ignored: attempt 1 is already recorded"
    assert invoice_of(system, invoice_id).state.payment_attempts == 1
    assert process(system, failed(2)) == "payment failure recorded"
    assert invoice_of(system, invoice_id).state.payment_attempts == 2


# --- payment_intent.* ------------------------------------------------------------------------


def intent(intent_id: str, metadata: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": 1000,
        "currency": "eur",
        "metadata": metadata,
        **fields,
    }


def test_an_intent_of_a_stripe_invoice_is_left_to_the_invoices_own_event(system: System) -> None:
    invoice_id = open_invoice(system)
    metadata = tally(tally_invoice_id=str(invoice_id))
    for kind in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        obj = intent("pi_test_inv", metadata, invoice="in_test_3", status="succeeded")
        assert (
            process(system, event(kind, obj))
            == "ignored: the Stripe invoice's own event records it"
        )
    invoice = invoice_of(system, invoice_id)
    assert (invoice.status, invoice.state.payment_attempts) == (InvoiceStatus.OPEN, 0)


def test_an_intent_of_its_own_pays_or_fails_the_invoice_its_metadata_names(system: System) -> None:
    define_plan(system)
    subscription_id = subscribe(system)
    invoice_id = open_invoice(system, subscription_id)
    metadata = tally(tally_invoice_id=str(invoice_id))
    declined = intent(
        "pi_test_own",
        metadata,
        status="requires_payment_method",
        last_payment_error={"code": "card_declined", "message": "Your card was declined."},
    )
    outcome = process(system, event("payment_intent.payment_failed", declined))
    assert outcome == "payment failure recorded"
    invoice = invoice_of(system, invoice_id)
    assert invoice.state.last_payment_error == "Stripe: Your card was declined."
    succeeded = intent("pi_test_own", metadata, status="succeeded")
    assert process(system, event("payment_intent.succeeded", succeeded)) == "invoice paid"
    invoice = invoice_of(system, invoice_id)
    assert (invoice.status, invoice.state.payment_reference) == (InvoiceStatus.PAID, "pi_test_own")


# --- charge.refunded -------------------------------------------------------------------------


def charge(invoice_id: UUID, amount_refunded: int, *refunds: tuple[str, int]) -> dict[str, Any]:
    """The charge of a Tally invoice: the gateway copies the invoice's metadata onto it
    (adapters/stripe/gateway.py); `refunds` listed only when given (API versions since
    2022-11-15 leave them out, https://docs.stripe.com/upgrades#2022-11-15)."""
    obj: dict[str, Any] = {
        "id": "ch_test_1",
        "object": "charge",
        "amount": 11900,
        "amount_refunded": amount_refunded,
        "refunded": amount_refunded == 11900,
        "currency": "eur",
        "payment_intent": "pi_test_1",
        "metadata": tally(tally_invoice_id=str(invoice_id)),
    }
    if refunds:
        data = [
            {
                "id": rid,
                "object": "refund",
                "amount": amount,
                "charge": "ch_test_1",
                "status": "succeeded",
            }
            for rid, amount in refunds
        ]
        obj["refunds"] = {"object": "list", "data": data, "has_more": False}
    return obj


def refund_note_id(refund_id: str) -> UUID:
    return stable_id("stripe-refund", APP, refund_id)


def test_a_full_refund_is_a_refund_credit_note_for_the_whole_invoice(
    system: System, provider: FakePaymentProvider, clock: SettableClock
) -> None:
    invoice_id = taxed_invoice(system, provider, clock)
    refunded = event("charge.refunded", charge(invoice_id, 11900, ("re_test_full", 11900)))
    assert process(system, refunded) == "credit note for refund re_test_full"
    [note] = credit_notes(system, invoice_id)
    assert note.id == refund_note_id("re_test_full")
    assert (note.state.method, note.state.total.amount, note.state.tax_total.amount) == (
        CreditMethod.REFUND,
        11900,
        1900,
    )
    assert invoice_of(system, invoice_id).state.refunded_total == 11900


def test_a_partial_refund_is_a_note_of_exactly_the_refund(
    system: System, provider: FakePaymentProvider, clock: SettableClock
) -> None:
    invoice_id = taxed_invoice(system, provider, clock)
    refunded = event("charge.refunded", charge(invoice_id, 3000, ("re_test_part", 3000)))
    assert process(system, refunded) == "credit note for refund re_test_part"
    [note] = credit_notes(system, invoice_id)
    # 25.21 of the fee and its VAT 4.79 (25.21 x 19 % = 4.7899): exactly 30.00
    assert (note.state.subtotal.amount, note.state.tax_total.amount, note.state.total.amount) == (
        2521,
        479,
        3000,
    )
    assert note.state.method is CreditMethod.REFUND


def test_two_refunds_are_two_notes_and_the_same_event_again_makes_none(
    system: System, provider: FakePaymentProvider, clock: SettableClock
) -> None:
    invoice_id = taxed_invoice(system, provider, clock)
    first = event("charge.refunded", charge(invoice_id, 3000, ("re_test_a", 3000)))
    process(system, first)
    # Stripe lists a charge's refunds newest first
    both = event(
        "charge.refunded", charge(invoice_id, 5000, ("re_test_b", 2000), ("re_test_a", 3000))
    )
    assert (
        process(system, both)
        == "credit note for refund re_test_b; refund re_test_a already credited"
    )
    notes = credit_notes(system, invoice_id)
    assert [(n.id, n.state.total.amount) for n in notes] == [
        (refund_note_id("re_test_a"), 3000),
        (refund_note_id("re_test_b"), 2000),
    ]
    before = log(system)
    process(system, both)
    process(system, event("charge.refunded", both["data"]["object"]))  # as a new event too
    assert len(credit_notes(system, invoice_id)) == 2
    assert [e.type for e in log(system)[len(before) :]] == [
        "ProviderWebhookProcessed",
        "CommandAccepted",
    ]


def test_refunds_left_out_of_the_charge_credit_what_amount_refunded_adds(
    system: System, provider: FakePaymentProvider, clock: SettableClock
) -> None:
    invoice_id = taxed_invoice(system, provider, clock)
    process(system, event("charge.refunded", charge(invoice_id, 3000)))
    # a second refund of 20.00: amount_refunded is the charge's 50.00 in all
    process(system, event("charge.refunded", charge(invoice_id, 5000)))
    totals = [n.state.total.amount for n in credit_notes(system, invoice_id)]
    assert totals == [3000, 2000]
    assert invoice_of(system, invoice_id).state.refunded_total == 5000


def test_a_refund_of_an_invoice_not_paid_in_tally_is_refused_by_the_ledger(system: System) -> None:
    invoice_id = open_invoice(system)
    outcome = process(
        system, event("charge.refunded", charge(invoice_id, 500, ("re_test_open", 500)))
    )
    assert outcome.startswith("ignored: a refund needs a paid invoice"), outcome
    assert invoice_of(system, invoice_id).state.credit_note_ids == []


# --- customer.subscription.updated / deleted -------------------------------------------------


def mirrored(system: System, provider: FakePaymentProvider) -> tuple[UUID, str, dict[str, Any]]:
    """A Tally subscription to pro and its Stripe mirror (made by the sync), and the plan
    max priced at Stripe too; returns (subscription, mirror id, the mirror as Stripe has it)."""
    define_plan(system, "pro", 10000)
    define_plan(system, "max", 30000)
    profile(system)
    subscription_id = subscribe(system)
    sync(system)
    mirror_id = account(system).provider_subscription(subscription_id)
    assert mirror_id is not None
    mirror = provider.subscriptions[mirror_id]
    return subscription_id, mirror_id, {"customer": mirror.customer_id, "metadata": mirror.metadata}


def price_of(system: System, plan_key: str) -> str:
    catalog = load(system, PaymentCatalog, payment_catalog_id(APP))
    price = catalog.price(plan_key, 1)
    assert price is not None
    return str(price)


def test_cancel_at_period_end_at_stripe_schedules_the_cancel_and_undoes_it(
    system: System, provider: FakePaymentProvider
) -> None:
    subscription_id, mirror_id, known = mirrored(system, provider)
    pro = price_of(system, "pro")
    canceling = stripe_subscription(mirror_id, pro, cancel_at_period_end=True, **known)
    assert process(system, event("customer.subscription.updated", canceling)) == "cancel scheduled"
    assert subscription(system, subscription_id).state.cancel_at_period_end
    kept = stripe_subscription(mirror_id, pro, cancel_at_period_end=False, **known)
    assert (
        process(system, event("customer.subscription.updated", kept)) == "scheduled cancel undone"
    )
    assert not subscription(system, subscription_id).state.cancel_at_period_end
    assert process(system, event("customer.subscription.updated", kept)) == "nothing to change"


def test_another_plans_price_at_stripe_changes_the_plan(
    system: System, provider: FakePaymentProvider
) -> None:
    subscription_id, mirror_id, known = mirrored(system, provider)
    upgraded = stripe_subscription(mirror_id, price_of(system, "max"), **known)
    outcome = process(system, event("customer.subscription.updated", upgraded))
    assert outcome == "plan changed to max v1"
    assert subscription(system, subscription_id).state.terms.plan_key == "max"


def test_one_update_changing_the_plan_and_scheduling_the_cancel_does_both(
    system: System, provider: FakePaymentProvider
) -> None:
    subscription_id, mirror_id, known = mirrored(system, provider)
    both = stripe_subscription(
        mirror_id, price_of(system, "max"), cancel_at_period_end=True, **known
    )
    outcome = process(system, event("customer.subscription.updated", both))
    assert outcome == "plan changed to max v1; cancel scheduled"
    state = subscription(system, subscription_id).state
    assert (state.terms.plan_key, state.cancel_at_period_end) == ("max", True)


def test_a_subscription_deleted_at_stripe_is_canceled(
    system: System, provider: FakePaymentProvider
) -> None:
    subscription_id, mirror_id, known = mirrored(system, provider)
    deleted = stripe_subscription(mirror_id, price_of(system, "pro"), status="canceled", **known)
    assert process(system, event("customer.subscription.deleted", deleted)) == "canceled"
    assert subscription(system, subscription_id).state.status is SubscriptionStatus.CANCELED
    again = process(system, event("customer.subscription.deleted", deleted))
    assert again == "ignored: already ended"


def test_a_subscription_tally_does_not_mirror_is_ignored(
    system: System, provider: FakePaymentProvider
) -> None:
    subscription_id, _, known = mirrored(system, provider)
    other = stripe_subscription(
        "sub_test_other", price_of(system, "max"), cancel_at_period_end=True, **known
    )
    for kind in ("customer.subscription.updated", "customer.subscription.deleted"):
        assert process(system, event(kind, other)) == "ignored: not a subscription Tally mirrors"
    state = subscription(system, subscription_id).state
    assert (state.status, state.terms.plan_key, state.cancel_at_period_end) == (
        SubscriptionStatus.ACTIVE,
        "pro",
        False,
    )


# --- customer.updated ------------------------------------------------------------------------


def test_name_and_email_changed_at_stripe_come_back_to_the_profile(
    system: System, provider: FakePaymentProvider
) -> None:
    profile(system)
    sync(system)
    customer = {
        "id": account(system).customer_id,
        "object": "customer",
        "name": "Tenant One AG",
        "email": "ap@t1.example",
        "address": {"country": "DE"},
        "metadata": tally(),
    }
    outcome = process(system, event("customer.updated", customer))
    assert outcome == "profile email, name updated from Stripe"
    terms = load(system, BillingProfile, billing_profile_id(APP, "t1")).terms
    assert (terms.name, terms.email, terms.country, terms.timezone) == (
        "Tenant One AG",
        "ap@t1.example",
        "DE",
        "Europe/Berlin",
    )
    assert process(system, event("customer.updated", customer)) == "nothing to change"


# --- the audit log ---------------------------------------------------------------------------


def test_every_event_is_audited_with_its_outcome_unknown_types_too(system: System) -> None:
    balance = {
        "object": "balance",
        "available": [{"amount": 0, "currency": "eur"}],
        "livemode": False,
    }
    unknown = event("balance.available", balance)
    assert process(system, unknown) == UNHANDLED
    [entry] = [e for e in log(system) if e.type == "ProviderWebhookProcessed"]
    assert (entry.data["provider_event_id"], entry.data["type"], entry.data["outcome"]) == (
        unknown["id"],
        "balance.available",
        UNHANDLED,
    )
    assert (entry.actor, entry.command_id) == ("stripe", f"stripe-{unknown['id']}-audit")

    invoice_id = open_invoice(system)
    paid = event(
        "invoice.paid",
        invoice_object("in_test_9", metadata=tally(tally_invoice_id=str(invoice_id))),
    )
    process(system, paid)
    state = audited(system, paid["id"]).state
    assert (state.type, state.object_id, state.outcome, state.tenant_id) == (
        "invoice.paid",
        "in_test_9",
        "invoice paid",
        "t1",
    )
