"""Dunning (docs/dunning.md): a failed payment makes the subscription past_due and schedules
retries by the app's settings, counted from the first failure; a payment recovers it unless
another of its invoices is still failing; after the last failure the invoice is uncollectible
and the subscription canceled or unpaid. Through the bus on the embedded system with a
settable clock, and through the billing run, which retries at each invoice's next_retry_at.

The default schedule, days 1, 3, 5 and 7 after the first failure, and the final actions
(cancel, or leave the subscription unpaid) follow Stripe's subscription settings:
https://docs.stripe.com/billing/revenue-recovery/smart-retries
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.billing.runs import run_billing
from adapters.bootstrap import System
from adapters.eventstore.index import OwnershipIndex
from commands.billing.compose import BillingPorts
from commands.billing.dunning import scheduled_retry
from commands.billing.ports import CollectionOutcome, NoPaymentCollector, PaymentCollector
from commands.registry import build_handlers
from domain.billing_settings import BillingSettingsTerms
from domain.clock import SettableClock
from domain.invoice import Invoice
from tests.factories import T0, embedded_system

APP = "acme"
DAY = timedelta(days=1)


class ScriptedCollector:
    """A PaymentCollector answering from a script (then failing), recording each call."""

    def __init__(self, *outcomes: CollectionOutcome) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[UUID, int]] = []

    def collect(self, invoice: Invoice) -> CollectionOutcome:
        self.calls.append((invoice.id, invoice.state.payment_attempts + 1))
        if self.outcomes:
            return self.outcomes.pop(0)
        return CollectionOutcome(succeeded=False, reason="card declined")


PAID = CollectionOutcome(succeeded=True, reference="pi_123")


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def system(clock: SettableClock) -> Iterator[System]:
    built = embedded_system(clock)
    try:
        yield built
    finally:
        built.close()


def wire(system: System, payments: PaymentCollector | None = None) -> OwnershipIndex:
    """Rebuild the bus's handlers with a payment collector and the ownership index."""
    index = OwnershipIndex(system.ledger.recorder)
    ports = BillingPorts(usage=system.usage_reader, payments=payments or NoPaymentCollector())
    system.bus = dataclasses.replace(
        system.bus, handlers=build_handlers(ports, system.usage.keys, invoices=index)
    )
    return index


def send(system: System, command: str, **payload: Any) -> dict[str, Any]:
    reply = system.dispatch(command, {"app_id": APP, **payload})
    assert reply["ok"], reply
    result: dict[str, Any] = reply["result"]
    return result


def refused(system: System, command: str, **payload: Any) -> dict[str, Any]:
    reply = system.dispatch(command, {"app_id": APP, **payload})
    assert not reply["ok"], reply
    error: dict[str, Any] = reply["error"]
    return error


def subscribe(system: System, tenant: str = "t1") -> str:
    plan = {"plan_key": "pro", "name": "Pro", "base_price": money(1000), "trial_days": 0}
    reply = system.dispatch("define_plan", {"app_id": APP, **plan})
    assert reply["ok"] or reply["error"]["code"] == "already_exists", reply
    started = send(system, "start_subscription", tenant_id=tenant, plan_key="pro")
    return str(started["subscription_id"])


def open_invoice(system: System, subscription_id: str | None, tenant: str = "t1") -> str:
    """A finalized (open) invoice of 10.00, of the subscription when one is given."""
    line = {"kind": "base_fee", "description": "fee", "unit_amount": money(1000)}
    extra = {"subscription_id": subscription_id} if subscription_id else {}
    draft = send(system, "draft_invoice", tenant_id=tenant, currency="USD", lines=[line], **extra)
    send(system, "finalize_invoice", invoice_id=draft["invoice_id"])
    return str(draft["invoice_id"])


def money(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "USD"}


def fail(system: System, invoice_id: str, reason: str = "card declined", **extra: Any) -> Any:
    return send(system, "fail_invoice_payment", invoice_id=invoice_id, reason=reason, **extra)


def status(system: System, subscription_id: str) -> str:
    return str(system.aggregate(UUID(subscription_id)).state.status.value)


def history(system: System, aggregate_id: str) -> list[Any]:
    return list(system.ledger.events.get(UUID(aggregate_id)))


def names(system: System, aggregate_id: str) -> list[str]:
    return [event.NAME for event in history(system, aggregate_id)]


def events(system: System, aggregate_id: str, name: str) -> list[Any]:
    return [event for event in history(system, aggregate_id) if event.NAME == name]


def at(days: float) -> str:
    return (T0 + timedelta(days=days)).isoformat()


# --- the schedule (pure) -------------------------------------------------------------------


DEFAULT = BillingSettingsTerms()


def test_retries_fall_on_days_1_3_5_7_after_the_first_failure_then_none() -> None:
    attempts = [(1, 0), (2, 1), (3, 3), (4, 5), (5, 7)]  # (attempt, days after the first)
    slots = [scheduled_retry(DEFAULT, T0, n, T0 + DAY * offset) for n, offset in attempts]
    assert slots == [T0 + DAY, T0 + 3 * DAY, T0 + 5 * DAY, T0 + 7 * DAY, None]


def test_a_late_attempt_skips_the_slots_already_past() -> None:
    assert scheduled_retry(DEFAULT, T0, 2, T0 + 4 * DAY) == T0 + 5 * DAY
    assert scheduled_retry(DEFAULT, T0, 2, T0 + 5 * DAY) == T0 + 7 * DAY  # a slot at now is past
    assert scheduled_retry(DEFAULT, T0, 2, T0 + 7 * DAY) is None
    assert scheduled_retry(BillingSettingsTerms(dunning_retry_days=[]), T0, 1, T0) is None


@given(
    days=st.lists(st.integers(1, 90), max_size=10, unique=True).map(sorted),
    attempt=st.integers(1, 12),
    late=st.integers(0, 100 * 24 * 3600),
)
def test_a_retry_is_a_slot_of_the_schedule_ahead_of_now_and_never_earlier_than_its_own(
    days: list[int], attempt: int, late: int
) -> None:
    terms = BillingSettingsTerms(dunning_retry_days=days)
    now = T0 + timedelta(seconds=late)
    retry = scheduled_retry(terms, T0, attempt, now)
    ahead = [T0 + d * DAY for d in days[attempt - 1 :] if T0 + d * DAY > now]
    assert retry == (ahead[0] if ahead else None)


# --- failures through the bus ----------------------------------------------------------------


def test_a_first_failure_makes_the_subscription_past_due_and_schedules_a_retry_in_a_day(
    system: System,
) -> None:
    sub = subscribe(system)
    invoice = open_invoice(system, sub)
    failed = fail(system, invoice)
    assert (failed["status"], failed["payment_attempts"]) == ("open", 1)
    assert failed["next_retry_at"] == at(1)
    assert status(system, sub) == "past_due"
    assert names(system, invoice)[-1] == "InvoicePaymentFailed"
    [marked] = events(system, sub, "SubscriptionMarkedPastDue")
    assert marked.reason == "payment of INV-000001 failed: card declined"


def test_each_attempt_is_scheduled_from_the_first_failure(
    system: System, clock: SettableClock
) -> None:
    sub = subscribe(system)
    invoice = open_invoice(system, sub)
    clock.advance(timedelta(hours=5))  # the first failure, not the invoice, anchors the schedule
    first = T0 + timedelta(hours=5)
    assert fail(system, invoice)["next_retry_at"] == (first + DAY).isoformat()
    clock.set(first + DAY + timedelta(minutes=3))  # a retry that ran a little late
    assert fail(system, invoice)["next_retry_at"] == (first + 3 * DAY).isoformat()
    clock.set(first + 3 * DAY)
    again = fail(system, invoice, reason="insufficient funds")
    assert again["next_retry_at"] == (first + 5 * DAY).isoformat()
    assert again["payment_attempts"] == 3 and again["last_payment_error"] == "insufficient funds"
    assert len(events(system, sub, "SubscriptionMarkedPastDue")) == 1  # already past_due


def test_a_caller_given_retry_time_is_kept(system: System) -> None:
    invoice = open_invoice(system, subscribe(system))
    assert fail(system, invoice, next_retry_at=at(2.5))["next_retry_at"] == at(2.5)
    past = T0.isoformat()
    error = refused(
        system, "fail_invoice_payment", invoice_id=invoice, reason="x", next_retry_at=past
    )
    assert error["code"] == "invalid_value" and error["details"][0]["field"] == "next_retry_at"


def test_after_the_last_failure_the_invoice_is_uncollectible_and_the_subscription_canceled(
    system: System, clock: SettableClock
) -> None:
    sub = subscribe(system)
    invoice = open_invoice(system, sub)
    for day in (0, 1, 3, 5):
        clock.set(T0 + day * DAY)
        assert fail(system, invoice)["status"] == "open"
    clock.set(T0 + 7 * DAY)
    last = fail(system, invoice)
    assert (last["status"], last["next_retry_at"], last["payment_attempts"]) == (
        "uncollectible",
        None,
        5,
    )
    assert names(system, invoice)[-2:] == ["InvoicePaymentFailed", "InvoiceMarkedUncollectible"]
    assert status(system, sub) == "canceled"
    [canceled] = events(system, sub, "SubscriptionCanceled")
    assert canceled.reason == "dunning exhausted" and canceled.timestamp == T0 + 7 * DAY


def test_the_unpaid_policy_keeps_the_subscription_unpaid_until_it_is_paid(
    system: System, clock: SettableClock
) -> None:
    send(system, "configure_billing", dunning_retry_days=[2], dunning_final_action="unpaid")
    sub = subscribe(system)
    invoice = open_invoice(system, sub)
    assert fail(system, invoice)["next_retry_at"] == at(2)
    clock.set(T0 + 2 * DAY)
    assert fail(system, invoice)["status"] == "uncollectible"
    assert status(system, sub) == "unpaid"
    [unpaid] = events(system, sub, "SubscriptionMarkedUnpaid")
    assert unpaid.reason == "dunning exhausted"
    assert send(system, "pay_invoice", invoice_id=invoice)["status"] == "paid"
    assert status(system, sub) == "active"
    assert names(system, sub)[-1] == "SubscriptionPaymentRecovered"


def test_no_retry_days_gives_up_at_the_first_failure(system: System) -> None:
    send(system, "configure_billing", dunning_retry_days=[])
    sub = subscribe(system)
    invoice = open_invoice(system, sub)
    assert fail(system, invoice)["status"] == "uncollectible"
    assert names(system, sub)[-2:] == ["SubscriptionMarkedPastDue", "SubscriptionCanceled"]


def test_an_invoice_without_a_subscription_is_not_dunned(system: System) -> None:
    invoice = open_invoice(system, None)
    failed = fail(system, invoice)
    assert (failed["status"], failed["next_retry_at"]) == ("open", None)
    for _ in range(6):
        assert fail(system, invoice)["status"] == "open"


def test_a_failure_on_an_uncollectible_invoice_only_records_the_attempt(system: System) -> None:
    sub = subscribe(system)
    invoice = open_invoice(system, sub)
    send(system, "mark_invoice_uncollectible", invoice_id=invoice)
    failed = fail(system, invoice)
    assert (failed["status"], failed["next_retry_at"]) == ("uncollectible", None)
    assert status(system, sub) == "active"


# --- payments and recovery -----------------------------------------------------------------


def test_paying_the_failed_invoice_recovers_the_subscription(system: System) -> None:
    sub = subscribe(system)
    invoice = open_invoice(system, sub)
    fail(system, invoice)
    paid = send(system, "pay_invoice", invoice_id=invoice, payment_reference="wire-7")
    assert (paid["status"], paid["next_retry_at"]) == ("paid", None)
    assert status(system, sub) == "active"
    assert names(system, sub)[-2:] == ["SubscriptionMarkedPastDue", "SubscriptionPaymentRecovered"]


def test_a_subscription_stays_past_due_while_another_invoice_is_failing(system: System) -> None:
    wire(system)
    sub = subscribe(system)
    other_tenant_sub = subscribe(system, "t2")
    first, second = open_invoice(system, sub), open_invoice(system, sub)
    unrelated = open_invoice(system, other_tenant_sub, "t2")
    fail(system, first)
    fail(system, second)
    fail(system, unrelated)
    send(system, "pay_invoice", invoice_id=first)
    assert status(system, sub) == "past_due"
    send(system, "pay_invoice", invoice_id=second)
    assert status(system, sub) == "active"  # t2's failing invoice is another subscription's
    assert status(system, other_tenant_sub) == "past_due"


def test_an_open_invoice_never_failed_does_not_hold_recovery(system: System) -> None:
    wire(system)
    sub = subscribe(system)
    failed, untried = open_invoice(system, sub), open_invoice(system, sub)
    fail(system, failed)
    send(system, "pay_invoice", invoice_id=failed)
    assert status(system, sub) == "active"
    assert send(system, "pay_invoice", invoice_id=untried)["status"] == "paid"


def test_a_payment_does_not_touch_an_active_or_canceled_subscription(system: System) -> None:
    sub = subscribe(system)
    invoice = open_invoice(system, sub)
    send(system, "pay_invoice", invoice_id=invoice)
    assert names(system, sub)[-1] == "SubscriptionStarted"
    again = open_invoice(system, sub)
    send(system, "cancel_subscription", subscription_id=sub)
    send(system, "pay_invoice", invoice_id=again)
    assert status(system, sub) == "canceled"


# --- retries through the bus ----------------------------------------------------------------


def test_a_retry_without_a_payment_provider_is_the_next_failed_attempt(system: System) -> None:
    invoice = open_invoice(system, subscribe(system))
    fail(system, invoice)
    retried = send(system, "retry_invoice_payment", invoice_id=invoice, attempt=2)
    assert retried["retried"] is True and retried["paid"] is False
    assert retried["invoice"]["last_payment_error"] == "no payment provider configured"
    assert retried["invoice"]["payment_attempts"] == 2


def test_a_successful_retry_pays_the_invoice_and_recovers_the_subscription(
    system: System,
) -> None:
    collector = ScriptedCollector(PAID)
    wire(system, collector)
    sub = subscribe(system)
    invoice = open_invoice(system, sub)
    fail(system, invoice)
    retried = send(system, "retry_invoice_payment", invoice_id=invoice, attempt=2)
    assert retried["paid"] is True
    assert retried["invoice"]["status"] == "paid"
    assert retried["invoice"]["payment_reference"] == "pi_123"
    assert collector.calls == [(UUID(invoice), 2)]
    assert status(system, sub) == "active"
    assert names(system, invoice)[-1] == "InvoicePaid"


def test_a_stale_retry_does_nothing_and_a_paid_invoice_is_never_collected(
    system: System,
) -> None:
    collector = ScriptedCollector(PAID)
    wire(system, collector)
    invoice = open_invoice(system, subscribe(system))
    fail(system, invoice)
    before = names(system, invoice)
    stale = send(system, "retry_invoice_payment", invoice_id=invoice, attempt=1)
    assert stale["retried"] is False and names(system, invoice) == before
    send(system, "pay_invoice", invoice_id=invoice)
    assert send(system, "retry_invoice_payment", invoice_id=invoice, attempt=2)["retried"] is False
    error = refused(system, "retry_invoice_payment", invoice_id=invoice)
    assert error["code"] == "invalid_transition"
    assert collector.calls == []


# --- the billing run -------------------------------------------------------------------------


def run(system: System, clock: SettableClock, days: float) -> dict[str, Any]:
    index = OwnershipIndex(system.ledger.recorder)
    return run_billing(system, index.ids, APP, clock, T0 + timedelta(days=days))


def test_the_billing_run_retries_on_schedule_until_dunning_cancels_the_subscription(
    system: System, clock: SettableClock
) -> None:
    sub = subscribe(system)
    assert run(system, clock, 0)["invoiced"] == 1
    [invoice] = OwnershipIndex(system.ledger.recorder).ids(APP, "invoice")
    fail(system, str(invoice))
    assert run(system, clock, 2)["payments_retried"] == 1
    assert run(system, clock, 2)["payments_retried"] == 0  # the same run twice retries once
    report = run(system, clock, 10)
    assert report["payments_retried"] == 3 and report["errors"] == []
    failures = events(system, str(invoice), "InvoicePaymentFailed")
    assert [e.timestamp for e in failures] == [T0 + d * DAY for d in (0, 1, 3, 5, 7)]
    assert [e.next_retry_at for e in failures] == [T0 + d * DAY for d in (1, 3, 5, 7)] + [None]
    assert system.aggregate(invoice).state.status.value == "uncollectible"
    assert status(system, sub) == "canceled"
    [canceled] = events(system, sub, "SubscriptionCanceled")
    assert canceled.timestamp == T0 + 7 * DAY and canceled.actor == "billing-run"


def test_a_subscription_canceled_by_dunning_is_not_renewed_later_in_the_same_run(
    system: System, clock: SettableClock
) -> None:
    sub = subscribe(system)
    run(system, clock, 0)
    [invoice] = OwnershipIndex(system.ledger.recorder).ids(APP, "invoice")
    fail(system, str(invoice))
    report = run(system, clock, 40)  # past the day-7 cancel and the period end on Feb 1
    assert (report["payments_retried"], report["renewed"], report["errors"]) == (4, 0, [])
    history = names(system, sub)
    assert "SubscriptionCanceled" in history and "SubscriptionRenewed" not in history
    # the final billing point (usage up to the cancel; nothing to bill here) closes it
    assert history[history.index("SubscriptionCanceled") :] == [
        "SubscriptionCanceled",
        "SubscriptionInvoiced",
    ]


def test_a_retry_in_the_billing_run_that_succeeds_recovers_the_subscription(
    system: System, clock: SettableClock
) -> None:
    collector = ScriptedCollector(CollectionOutcome(succeeded=False, reason="expired card"), PAID)
    wire(system, collector)
    sub = subscribe(system)
    run(system, clock, 0)
    [invoice] = OwnershipIndex(system.ledger.recorder).ids(APP, "invoice")
    fail(system, str(invoice))
    report = run(system, clock, 20)
    assert report["payments_retried"] == 2
    assert collector.calls == [(invoice, 2), (invoice, 3)]
    paid = system.aggregate(invoice).state
    assert (paid.status.value, paid.payment_reference, paid.paid_at) == (
        "paid",
        "pi_123",
        T0 + 3 * DAY,
    )
    assert status(system, sub) == "active"
    [recovered] = events(system, sub, "SubscriptionPaymentRecovered")
    assert recovered.timestamp == T0 + 3 * DAY


def test_payment_retry_due_times(system: System) -> None:
    from commands.billing.run import due_command, due_of

    invoice_id = open_invoice(system, subscribe(system))
    assert due_of(system.aggregate(UUID(invoice_id))) is None  # never failed: nothing to retry
    fail(system, invoice_id)
    invoice = system.aggregate(UUID(invoice_id))
    due = due_of(invoice)
    assert due is not None and due[0] == T0 + DAY and due[2] == "retry_payment"
    command = due_command(APP, "retry_payment", invoice)
    assert command.model_dump(include={"invoice_id", "attempt"}) == {
        "invoice_id": UUID(invoice_id),
        "attempt": 2,
    }
