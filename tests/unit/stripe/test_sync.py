"""The Stripe sync on the fake provider: events of the ledger become Stripe objects once
(customers, products and prices, subscription mirrors, collected invoices), and a charge's
outcome pays the invoice or starts dunning."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from adapters.billing.runs import run_billing
from adapters.bootstrap import System
from commands.payments.ports import ProviderRefused
from domain.clock import SettableClock
from domain.invoice import Invoice
from domain.payment_account import payment_account_id
from tests.factories import T0
from tests.fake_payment_provider import DECLINING_CARD, FakePaymentProvider
from tests.unit.stripe.support import APP, PROFILE, account, define_plan, eur, send, sync


def test_a_saved_profile_makes_one_customer_and_changes_update_it(
    system: System, provider: FakePaymentProvider
) -> None:
    send(system, "set_billing_profile", tenant_id="t1", **PROFILE)
    sync(system)
    customer_id = account(system).customer_id
    customer = provider.get_customer(customer_id)
    assert customer is not None
    assert (customer.email, customer.name, customer.country) == (
        "billing@t1.example",
        "Tenant One GmbH",
        "DE",
    )
    assert customer.metadata == {"tally_app_id": APP, "tally_tenant_id": "t1"}
    assert sync(system) == []  # nothing due again
    send(system, "set_billing_profile", tenant_id="t1", **{**PROFILE, "email": "ap@t1.example"})
    sync(system)
    updated = provider.get_customer(customer_id)
    assert updated is not None and updated.email == "ap@t1.example"
    assert provider.calls.count("create_customer") == 1
    assert len(provider.list_customers(APP)) == 1


def test_plans_get_a_product_and_a_price_per_version_and_archiving_deactivates(
    system: System, provider: FakePaymentProvider
) -> None:
    define_plan(system, price=1000)
    sync(system)
    send(system, "revise_plan", plan_key="pro", name="Pro", base_price=eur(1500))
    sync(system)
    assert sorted(p.price.amount for p in provider.prices.values()) == [1000, 1500]
    assert len(provider.products) == 1
    send(system, "archive_plan", plan_key="pro")
    sync(system)
    assert not any(p.active for p in provider.prices.values())


def test_a_subscription_is_mirrored_and_follows_cancel_at_period_end_and_the_end(
    system: System, provider: FakePaymentProvider
) -> None:
    define_plan(system, price=1000)
    send(system, "set_billing_profile", tenant_id="t1", **PROFILE)
    subscription_id = send(system, "start_subscription", tenant_id="t1", plan_key="pro")[
        "subscription_id"
    ]
    sync(system)
    mirror_id = account(system).provider_subscription(subscription_id)
    assert mirror_id is not None
    mirror = provider.subscriptions[mirror_id]
    assert mirror.metadata["tally_subscription_id"] == str(subscription_id)
    send(system, "cancel_subscription", subscription_id=subscription_id, at_period_end=True)
    sync(system)
    assert provider.subscriptions[mirror_id].cancel_at_period_end is True
    send(system, "cancel_subscription", subscription_id=subscription_id)
    sync(system)
    assert provider.subscriptions[mirror_id].status == "canceled"
    assert provider.calls.count("create_subscription") == 1


def test_a_subscription_without_a_profile_is_mirrored_once_the_profile_exists(
    system: System, provider: FakePaymentProvider
) -> None:
    define_plan(system, price=1000)
    send(system, "start_subscription", tenant_id="t1", plan_key="pro")
    outcomes = sync(system)
    assert any("no billing profile" in outcome for outcome in outcomes), outcomes
    send(system, "set_billing_profile", tenant_id="t1", **PROFILE)
    sync(system)
    sync(system)  # the failed mirror is due again once the customer exists
    assert len(account(system).state.subscriptions) == 1


def first_invoice(system: System, clock: SettableClock) -> Invoice:
    run_billing(system, system.index.ids, APP, clock, clock.now())
    system.index.refresh()
    invoices = system.index.ids(APP, "invoice", "t1")
    assert invoices, "the billing run invoiced nothing"
    found = system.aggregate(invoices[-1])
    assert isinstance(found, Invoice)
    return found


def attach(system: System, provider: FakePaymentProvider, number: str | None = None) -> None:
    assert system.stripe is not None
    card = provider.make_card(number) if number else provider.make_card()
    customer = account(system).customer_id
    provider.attach_payment_method(customer, card)


def subscribed(system: System, provider: FakePaymentProvider, card: str | None = None) -> None:
    define_plan(system, price=1000)
    send(system, "set_billing_profile", tenant_id="t1", **{**PROFILE, "tax_status": "exempt"})
    sync(system)
    attach(system, provider, card)
    send(system, "start_subscription", tenant_id="t1", plan_key="pro")


def test_a_finalized_invoice_is_pushed_once_charged_once_and_paid(
    system: System, provider: FakePaymentProvider, clock: SettableClock
) -> None:
    subscribed(system, provider)
    invoice = first_invoice(system, clock)
    sync(system)
    paid = system.aggregate(invoice.id)
    assert paid.status.value == "paid"
    pushed = account(system).provider_invoice(invoice.id)
    assert pushed is not None
    at_stripe = provider.get_invoice(pushed)
    assert at_stripe is not None
    assert (at_stripe.amount_due, at_stripe.currency, at_stripe.status) == (1000, "EUR", "paid")
    assert at_stripe.metadata["tally_invoice_id"] == str(invoice.id)
    assert paid.state.payment_reference == pushed
    sync(system)
    assert provider.calls.count("push_invoice") == 1
    assert provider.calls.count("charge_invoice") == 1


def test_a_declined_charge_starts_dunning_and_the_retry_charges_stripe_again(
    system: System, provider: FakePaymentProvider, clock: SettableClock
) -> None:
    subscribed(system, provider, DECLINING_CARD)
    invoice = first_invoice(system, clock)
    sync(system)
    failed = system.aggregate(invoice.id)
    assert failed.status.value == "open"
    assert failed.state.payment_attempts == 1
    assert "declined" in (failed.state.last_payment_error or "")
    subscription = system.aggregate(failed.state.subscription_id)
    assert subscription.state.status.value == "past_due"
    attach(system, provider)  # a good card becomes the default
    retry_at = failed.state.next_retry_at
    assert retry_at is not None
    run_billing(system, system.index.ids, APP, clock, retry_at + timedelta(minutes=1))
    recovered = system.aggregate(invoice.id)
    assert recovered.status.value == "paid"
    assert system.aggregate(failed.state.subscription_id).state.status.value == "active"
    assert provider.calls.count("charge_invoice") == 2


def test_stripe_down_leaves_the_task_due_and_nothing_half_done(
    system: System, provider: FakePaymentProvider, clock: SettableClock
) -> None:
    send(system, "set_billing_profile", tenant_id="t1", **PROFILE)
    provider.unavailable = True
    outcomes = sync(system)
    assert any("unavailable" in outcome for outcome in outcomes), outcomes
    assert system.aggregate(payment_account_id(APP, "t1")) is None
    provider.unavailable = False
    assert sync(system) == []  # backing off: not due yet
    clock.set(T0 + timedelta(minutes=1))
    sync(system)
    assert account(system).customer_id


def open_manual_invoice(system: System, amount: int = 2500) -> Invoice:
    """A finalized invoice of the tenant (exempt, no card: it stays open), pushed."""
    line = {"kind": "base_fee", "description": "Setup", "unit_amount": eur(amount)}
    draft = send(system, "draft_invoice", tenant_id="t1", currency="EUR", lines=[line])
    send(system, "finalize_invoice", invoice_id=draft["invoice_id"])
    sync(system)
    invoice = system.aggregate(UUID(draft["invoice_id"]))
    assert isinstance(invoice, Invoice) and invoice.status.value == "open"
    return invoice


def at_stripe(system: System, provider: FakePaymentProvider, invoice: Invoice) -> Any:
    linked = account(system).provider_invoice(invoice.id)
    assert linked is not None
    return provider.get_invoice(linked)


@pytest.fixture
def tenant(system: System) -> None:
    send(system, "set_billing_profile", tenant_id="t1", **{**PROFILE, "tax_status": "exempt"})
    sync(system)


@pytest.mark.usefixtures("tenant")
def test_an_invoice_voided_in_tally_is_voided_at_stripe(
    system: System, provider: FakePaymentProvider
) -> None:
    invoice = open_manual_invoice(system)
    send(system, "void_invoice", invoice_id=str(invoice.id), reason="issued by mistake")
    sync(system)
    assert at_stripe(system, provider, invoice).status == "void"


@pytest.mark.usefixtures("tenant")
def test_an_invoice_paid_outside_stripe_is_marked_paid_there(
    system: System, provider: FakePaymentProvider
) -> None:
    invoice = open_manual_invoice(system)
    send(system, "pay_invoice", invoice_id=str(invoice.id), payment_reference="wire-42")
    sync(system)
    assert at_stripe(system, provider, invoice).status == "paid"
    assert "charge_invoice" in provider.calls  # the first attempt, before the wire came


@pytest.mark.usefixtures("tenant")
def test_a_credit_note_lowering_the_amount_due_replaces_the_stripe_invoice(
    system: System, provider: FakePaymentProvider
) -> None:
    invoice = open_manual_invoice(system, 2500)
    first = account(system).provider_invoice(invoice.id)
    (line,) = invoice.state.lines
    send(
        system,
        "issue_credit_note",
        invoice_id=str(invoice.id),
        reason="goodwill",
        method="reduce_amount_due",
        lines=[{"line_id": line.line_id, "amount": eur(1000)}],
    )
    sync(system)
    replaced = at_stripe(system, provider, invoice)
    assert replaced.id != first and replaced.amount_due == 1500
    assert provider.get_invoice(first or "").status == "void"


@pytest.mark.usefixtures("tenant")
def test_a_credit_note_settling_the_invoice_voids_it_at_stripe(
    system: System, provider: FakePaymentProvider
) -> None:
    invoice = open_manual_invoice(system)
    send(
        system,
        "issue_credit_note",
        invoice_id=str(invoice.id),
        reason="not delivered",
        method="reduce_amount_due",
    )
    sync(system)
    assert system.aggregate(invoice.id).status.value == "paid"
    assert at_stripe(system, provider, invoice).status == "void"


def declined_once(
    system: System, provider: FakePaymentProvider, clock: SettableClock
) -> tuple[Invoice, Any]:
    """The first invoice, pushed and declined once; a good card now on file."""
    subscribed(system, provider, DECLINING_CARD)
    invoice = first_invoice(system, clock)
    sync(system)
    attach(system, provider)
    failed = system.aggregate(invoice.id)
    assert failed.state.payment_attempts == 1 and failed.state.next_retry_at is not None
    return invoice, failed.state.next_retry_at


def test_stripe_down_at_a_dunning_retry_counts_no_attempt_and_the_next_run_retries(
    system: System, provider: FakePaymentProvider, clock: SettableClock
) -> None:
    invoice, retry_at = declined_once(system, provider, clock)
    provider.unavailable = True
    report = run_billing(system, system.index.ids, APP, clock, retry_at + timedelta(minutes=1))
    assert any(e.get("code") == "payment_provider_unavailable" for e in report["errors"]), report
    still = system.aggregate(invoice.id)
    assert (still.status.value, still.state.payment_attempts) == ("open", 1)
    provider.unavailable = False
    run_billing(system, system.index.ids, APP, clock, retry_at + timedelta(minutes=2))
    assert system.aggregate(invoice.id).status.value == "paid"


def test_a_retry_never_charges_a_stripe_invoice_of_another_amount(
    system: System, provider: FakePaymentProvider, clock: SettableClock
) -> None:
    invoice, retry_at = declined_once(system, provider, clock)
    (line,) = [item for item in invoice.state.lines if item.amount.amount > 0]
    send(
        system,
        "issue_credit_note",
        invoice_id=str(invoice.id),
        reason="goodwill",
        method="reduce_amount_due",
        lines=[{"line_id": line.line_id, "amount": eur(400)}],
    )
    # the Stripe worker has not replaced the Stripe invoice yet: the retry waits for it
    report = run_billing(system, system.index.ids, APP, clock, retry_at + timedelta(minutes=1))
    assert any(e.get("code") == "payment_provider_unavailable" for e in report["errors"]), report
    assert provider.calls.count("charge_invoice") == 1
    sync(system)  # replaced: 6.00 at Stripe
    run_billing(system, system.index.ids, APP, clock, retry_at + timedelta(minutes=2))
    paid = system.aggregate(invoice.id)
    assert paid.status.value == "paid"
    charged = provider.get_invoice(paid.state.payment_reference or "")
    assert charged is not None and (charged.amount_due, charged.status) == (600, "paid")


def test_a_task_stripe_refused_is_tried_again_after_six_hours(
    system: System, provider: FakePaymentProvider, clock: SettableClock
) -> None:
    define_plan(system, price=1000)
    send(system, "set_billing_profile", tenant_id="t1", **PROFILE)
    sync(system)
    create = provider.create_subscription
    refusals = iter([ProviderRefused("price not ready")])

    def refuse_once(*args: Any, **kwargs: Any) -> str:
        refusal = next(refusals, None)
        if refusal is not None:
            raise refusal
        return create(*args, **kwargs)

    provider.create_subscription = refuse_once  # type: ignore[method-assign]
    send(system, "start_subscription", tenant_id="t1", plan_key="pro")
    assert any("price not ready" in outcome for outcome in sync(system))
    clock.set(T0 + timedelta(hours=5))
    assert sync(system) == []  # not yet
    clock.set(T0 + timedelta(hours=6, minutes=1))
    sync(system)
    assert len(account(system).state.subscriptions) == 1
