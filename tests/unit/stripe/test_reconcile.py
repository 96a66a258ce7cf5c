"""The reconciliation (commands/payments/reconcile.py) on the embedded system and the fake
provider: drift made at Stripe with the fake's knobs (a payment made there, an invoice voided
there, a customer deleted, a mirror canceled), and drift made in Tally (an invoice never
pushed, a subscription ended), each reported, then repaired with `repair` through commands
and recorded as a PaymentDriftRepaired event naming it; the report is kept per app."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from adapters.bootstrap import System
from commands.payments.ports import CustomerDetails
from domain.clock import SettableClock
from domain.invoice import InvoiceStatus
from domain.payment_account import PaymentDriftRepaired, payment_account_id
from domain.subscription import Status
from tests.factories import T0
from tests.fake_payment_provider import FakePaymentProvider
from tests.unit.stripe.support import (
    APP,
    PROFILE,
    account,
    define_plan,
    invoice_of,
    open_invoice,
    profile,
    send,
    subscribe,
    subscription,
    sync,
)


def reconcile(system: System, *, repair: bool = False) -> dict[str, Any]:
    report: dict[str, Any] = system.stripe.reconciler.reconcile(APP, repair=repair)
    return report


def drifts(report: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    return [(d["drift"], d["object"], d["object_id"], d["repair"]) for d in report["drifts"]]


def repairs(system: System, tenant: str = "t1") -> list[dict[str, Any]]:
    """The PaymentDriftRepaired events of the tenant's account, as recorded."""
    events = system.ledger.events.get(payment_account_id(APP, tenant))
    return [e.model_dump() for e in events if isinstance(e, PaymentDriftRepaired)]


@pytest.fixture
def billed(system: System, provider: FakePaymentProvider) -> dict[str, Any]:
    """t1 with a profile, a subscription and an open invoice of 10.00, all at Stripe: the
    customer, the mirror and the invoice, whose first charge failed (no card yet)."""
    define_plan(system)
    profile(system)
    subscription_id = subscribe(system)
    invoice_id = open_invoice(system, subscription_id)
    sync(system)
    linked = account(system)
    stripe_invoice = linked.provider_invoice(invoice_id)
    mirror = linked.provider_subscription(subscription_id)
    assert stripe_invoice is not None and mirror is not None
    assert provider.invoices[stripe_invoice].status == "open"
    return {
        "subscription": subscription_id,
        "invoice": invoice_id,
        "stripe_invoice": stripe_invoice,
        "mirror": mirror,
        "customer": linked.customer_id,
    }


def test_in_step_is_a_report_without_drift(system: System, billed: dict[str, Any]) -> None:
    report = reconcile(system)
    assert (report["in_step"], report["drift_count"], report["drifts"]) == (True, 0, [])
    assert (report["app_id"], report["ran_at"], report["repair"]) == (APP, T0.isoformat(), False)


def test_a_payment_made_at_stripe_is_reported_then_recorded_in_tally(
    system: System, provider: FakePaymentProvider, billed: dict[str, Any]
) -> None:
    provider.pay_outside(billed["stripe_invoice"])
    found = reconcile(system)
    invoice = str(billed["invoice"])
    assert drifts(found) == [("status", "payment", invoice, "pay_in_tally")]
    assert found["drifts"][0]["repaired"] is None
    assert invoice_of(system, billed["invoice"]).status is InvoiceStatus.OPEN  # only reported

    repaired = reconcile(system, repair=True)
    assert repaired["drifts"][0]["repaired"].startswith("recorded the payment")
    paid = invoice_of(system, billed["invoice"])
    assert (paid.status, paid.state.payment_reference) == (
        InvoiceStatus.PAID,
        billed["stripe_invoice"],
    )
    assert subscription(system, billed["subscription"]).state.status is Status.ACTIVE
    [event] = repairs(system)
    assert (event["drift"], event["object"], event["object_id"]) == ("status", "payment", invoice)
    assert reconcile(system)["in_step"]


def test_an_invoice_voided_at_stripe_is_pushed_again_as_a_new_stripe_invoice(
    system: System, provider: FakePaymentProvider, billed: dict[str, Any]
) -> None:
    provider.void_outside(billed["stripe_invoice"])
    assert drifts(reconcile(system)) == [
        ("status", "invoice", str(billed["invoice"]), "push_again")
    ]
    reconcile(system, repair=True)
    pushed = account(system).provider_invoice(billed["invoice"])
    assert pushed is not None and pushed != billed["stripe_invoice"]
    assert provider.invoices[pushed].status == "open"
    assert provider.invoices[pushed].metadata["tally_invoice_id"] == str(billed["invoice"])
    [event] = repairs(system)
    assert (event["invoice_id"], event["provider_invoice_id"]) == (billed["invoice"], pushed)
    assert reconcile(system)["in_step"]


def test_a_deleted_customer_is_made_again_from_the_profile_and_relinked(
    system: System, provider: FakePaymentProvider, billed: dict[str, Any]
) -> None:
    provider.delete_customer(billed["customer"])
    assert drifts(reconcile(system)) == [("missing", "customer", "t1", "relink_customer")]
    repaired = reconcile(system, repair=True)
    relinked = account(system).customer_id
    assert relinked != billed["customer"], repaired
    customer = provider.get_customer(relinked)
    assert customer is not None
    assert (customer.name, customer.email) == (PROFILE["name"], PROFILE["email"])
    [event] = repairs(system)
    assert (event["drift"], event["object"], event["customer_id"]) == (
        "missing",
        "customer",
        relinked,
    )
    # the live subscription is mirrored again for the new customer (the old mirror went with
    # the deleted one), never canceled in Tally; after that Stripe and the ledger agree
    mirror = account(system).provider_subscription(billed["subscription"])
    assert mirror is not None, repaired["drifts"][0]["repaired"]
    assert provider.subscriptions[mirror].customer_id == relinked
    assert reconcile(system)["in_step"], reconcile(system)
    assert subscription(system, billed["subscription"]).state.status in (
        Status.ACTIVE,
        Status.PAST_DUE,
    )


def test_an_invoice_never_pushed_is_missing_after_an_hour_and_collected_by_the_repair(
    system: System, provider: FakePaymentProvider, clock: SettableClock
) -> None:
    profile(system)
    sync(system)  # the customer exists at Stripe
    provider.attach_payment_method(account(system).customer_id, provider.make_card())
    invoice_id = open_invoice(system)  # finalized; the Stripe worker has not run since
    clock.advance(timedelta(minutes=59))
    assert reconcile(system)["in_step"]  # the worker may still be on it
    clock.advance(timedelta(minutes=2))
    assert drifts(reconcile(system)) == [("missing", "invoice", str(invoice_id), "collect")]
    repaired = reconcile(system, repair=True)
    assert repaired["drifts"][0]["repaired"] == "charged: paid"
    stripe_invoice = account(system).provider_invoice(invoice_id)
    assert stripe_invoice is not None and provider.invoices[stripe_invoice].status == "paid"
    assert invoice_of(system, invoice_id).status is InvoiceStatus.PAID
    assert reconcile(system)["in_step"]


def test_a_stripe_customer_naming_the_app_without_an_account_is_extra_and_linked(
    system: System, provider: FakePaymentProvider, billed: dict[str, Any]
) -> None:
    details = CustomerDetails(
        app_id=APP, tenant_id="t2", name="T2", email="t2@x.example", country="DE"
    )
    orphan = provider.create_customer(details)
    provider.create_customer(CustomerDetails(**{**details.__dict__, "app_id": "other-app"}))
    second_t1 = provider.create_customer(
        CustomerDetails(
            app_id=APP, tenant_id="t1", name="T1 twice", email="t1@x.example", country="DE"
        )
    )
    found = reconcile(system)
    assert sorted(drifts(found)) == [
        ("extra", "customer", orphan, "link_customer"),
        ("extra", "customer", second_t1, None),  # t1 has its customer: a human decides
    ]
    reconcile(system, repair=True)
    assert account(system, "t2").customer_id == orphan
    assert account(system).customer_id == billed["customer"]
    [event] = repairs(system, "t2")
    assert (event["drift"], event["object"], event["object_id"]) == ("extra", "customer", orphan)


def test_a_mirror_canceled_at_stripe_cancels_the_live_subscription(
    system: System, provider: FakePaymentProvider, billed: dict[str, Any]
) -> None:
    provider.cancel_subscription(billed["mirror"])
    expected = ("status", "subscription", str(billed["subscription"]), "cancel_in_tally")
    assert drifts(reconcile(system)) == [expected]
    reconcile(system, repair=True)
    assert subscription(system, billed["subscription"]).state.status is Status.CANCELED
    [event] = repairs(system)
    assert event["object_id"] == str(billed["subscription"])


def test_a_subscription_ended_in_tally_cancels_its_mirror_still_running_at_stripe(
    system: System, provider: FakePaymentProvider, billed: dict[str, Any]
) -> None:
    send(system, "cancel_subscription", subscription_id=str(billed["subscription"]))
    # the Stripe worker has not run: the mirror is still active
    expected = ("status", "subscription", str(billed["subscription"]), "cancel_at_stripe")
    assert drifts(reconcile(system)) == [expected]
    reconcile(system, repair=True)
    assert provider.subscriptions[billed["mirror"]].status == "canceled"
    assert reconcile(system)["in_step"]


def test_a_paused_subscription_keeps_its_mirror(
    system: System, provider: FakePaymentProvider, billed: dict[str, Any]
) -> None:
    send(system, "pay_invoice", invoice_id=str(billed["invoice"]))  # recovers: active
    send(system, "pause_subscription", subscription_id=str(billed["subscription"]))
    assert subscription(system, billed["subscription"]).state.status is Status.PAUSED
    report = reconcile(system, repair=True)
    assert [d for d in report["drifts"] if d["object"] == "subscription"] == []
    assert provider.subscriptions[billed["mirror"]].status != "canceled"


def test_an_invoice_tally_gave_up_on_but_paid_at_stripe_is_paid_by_the_repair(
    system: System, provider: FakePaymentProvider, billed: dict[str, Any]
) -> None:
    send(system, "mark_invoice_uncollectible", invoice_id=str(billed["invoice"]))
    provider.pay_outside(billed["stripe_invoice"])
    assert drifts(reconcile(system)) == [
        ("status", "payment", str(billed["invoice"]), "pay_in_tally")
    ]
    reconcile(system, repair=True)
    assert invoice_of(system, billed["invoice"]).status is InvoiceStatus.PAID


def test_the_last_report_is_kept_and_daily_runs_once_per_clock_day(
    system: System, provider: FakePaymentProvider, clock: SettableClock, billed: dict[str, Any]
) -> None:
    reconciler = system.stripe.reconciler
    assert reconciler.last(APP) is None
    provider.pay_outside(billed["stripe_invoice"])
    report = reconcile(system)
    assert reconciler.last(APP) == report
    assert reconciler.last("other-app") is None
    clock.advance(timedelta(hours=23))
    assert reconciler.daily(APP) is None  # the report of 00:00 is today's
    clock.advance(timedelta(hours=1))
    daily = reconciler.daily(APP)
    assert daily is not None and daily["ran_at"] == (T0 + timedelta(days=1)).isoformat()
    assert daily["repair"] is False and daily["drift_count"] == 1  # reported, not repaired
    assert reconciler.last(APP) == daily
    assert reconciler.daily(APP) is None


def test_the_report_names_every_drift_with_its_stripe_object(
    system: System, provider: FakePaymentProvider, billed: dict[str, Any]
) -> None:
    provider.pay_outside(billed["stripe_invoice"])
    [row] = reconcile(system)["drifts"]
    assert row == {
        "drift": "status",
        "object": "payment",
        "tenant_id": "t1",
        "object_id": str(billed["invoice"]),
        "provider_id": billed["stripe_invoice"],
        "detail": "paid at Stripe (1000), open in Tally",
        "repair": "pay_in_tally",
        "repaired": None,
    }
