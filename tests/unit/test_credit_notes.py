"""Credit notes (domain/credit_note.py): lines by amount or quantity, discount and tax shares,
limits per line, per invoice, per method; numbering; worked examples from public docs;
through the command bus (refund owed, credit balance drawn next, amount due reduced)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.bootstrap import System
from domain.balance import CreditBalance, balance_id
from domain.base import Snapshot
from domain.credit_note import (
    CreditNote,
    CreditNoteIssued,
    CreditNoteNumbering,
    CreditNoteRefundRecorded,
    CreditRequest,
    format_credit_note_number,
    plan_credit,
)
from domain.errors import InvalidTransition, InvalidValue
from domain.invoice import (
    CreditExceeded,
    CreditMethod,
    Invoice,
    InvoiceCredited,
    InvoiceLine,
    InvoiceNumbering,
    InvoicePaid,
    InvoiceStatus,
    LineKind,
)
from domain.money import Money
from domain.period import Period
from tests.factories import T0, cause, embedded_system, ok

JAN = Period(start=T0, end=datetime(2026, 2, 1, tzinfo=UTC))


def usd(amount: int, currency: str = "USD") -> Money:
    return Money(amount=amount, currency=currency)


def charge(
    line_id: str,
    amount: int,
    *,
    quantity: int = 1,
    kind: LineKind = LineKind.BASE_FEE,
    currency: str = "USD",
    unit_decimal: str | None = None,
) -> InvoiceLine:
    unit = amount // quantity if quantity else amount
    return InvoiceLine(
        line_id=line_id,
        kind=kind,
        description=f"{kind.value} {line_id}",
        quantity=quantity,
        unit_amount=usd(unit, currency),
        amount=usd(amount, currency),
        period=JAN,
        unit_amount_decimal=unit_decimal,
    )


def tax(
    applies_to: str | None, amount: int, *, inclusive: bool = False, currency: str = "USD"
) -> InvoiceLine:
    return InvoiceLine(
        line_id=f"tax:{applies_to}",
        kind=LineKind.TAX,
        description="VAT",
        quantity=1,
        unit_amount=usd(amount, currency),
        amount=usd(amount, currency),
        applies_to=applies_to,
        tax_inclusive=inclusive,
    )


def discount(amount: int) -> InvoiceLine:
    return InvoiceLine(
        line_id="discount:0",
        kind=LineKind.DISCOUNT,
        description="coupon",
        quantity=1,
        unit_amount=usd(-amount),
        amount=usd(-amount),
    )


def finalized(*lines: InvoiceLine, currency: str = "USD", paid: bool = False) -> Invoice:
    invoice = Invoice.draft(uuid4(), "acme", "t1", currency, cause(), period=JAN, lines=lines)
    invoice.finalize(InvoiceNumbering.start("acme", cause()), cause())
    if paid:
        invoice.pay(cause(), payment_reference="pm_card_visa")
    return invoice


def issue(
    invoice: Invoice,
    method: CreditMethod = CreditMethod.CREDIT_BALANCE,
    lines: list[dict[str, Any]] | None = None,
    numbering: CreditNoteNumbering | None = None,
) -> CreditNote:
    requests = [CreditRequest.model_validate(line) for line in lines] if lines else None
    return CreditNote.issue(
        uuid4(),
        invoice,
        numbering or CreditNoteNumbering.start("acme", cause()),
        method,
        "customer asked",
        requests,
        cause(),
    )


def amounts(note: CreditNote) -> list[tuple[str, int, int, int, int]]:
    return [
        (li.line_id, li.amount.amount, li.discount.amount, li.tax.amount, li.total.amount)
        for li in note.state.lines
    ]


# --- worked examples from public docs ---------------------------------------------------


def test_stripe_overbilled_110_instead_of_100_credits_10() -> None:
    """https://docs.stripe.com/invoicing/dashboard/credit-notes: "You accidentally charged your
    customer 110 USD instead of 100 USD ... give your customer a 10 USD credit"."""
    invoice = finalized(charge("fee", 11000))
    note = issue(invoice, CreditMethod.REDUCE_AMOUNT_DUE, [{"line_id": "fee", "amount": usd(1000)}])
    assert note.state.total == usd(1000)
    assert invoice.amount_due == usd(10000) and invoice.status is InvoiceStatus.OPEN


def test_stripe_billed_five_items_three_in_stock_credits_two_by_quantity() -> None:
    """The same page: "You billed your customer for five items ... only have three items left
    in stock. Use a credit note to refund your customer for the two items"."""
    invoice = finalized(charge("shirts", 5 * 2000, quantity=5, kind=LineKind.SEATS), paid=True)
    note = issue(invoice, CreditMethod.REFUND, [{"line_id": "shirts", "quantity": 2}])
    assert amounts(note) == [("shirts", 4000, 0, 0, 4000)]
    assert note.state.lines[0].quantity == 2
    assert invoice.creditable_quantity("shirts") == 3
    refund = [e for e in note.pending_events if isinstance(e, CreditNoteRefundRecorded)]
    assert refund[0].status == "pending" and refund[0].amount == usd(4000)
    assert refund[0].payment_reference == "pm_card_visa"


def test_lago_seat_fee_of_100_with_20_percent_vat_credits_120() -> None:
    """https://docs.getlago.com/api-reference/credit-notes/credit-note-object: an item of
    amount_cents 100 (user seats) with vat_amount_cents 20 -> total_amount_cents 120,
    sub_total_vat_excluded_amount_cents 100."""
    invoice = finalized(
        charge("user_seats", 100, currency="EUR"),
        tax("user_seats", 20, currency="EUR"),
        currency="EUR",
    )
    note = issue(invoice)
    assert (note.state.subtotal, note.state.tax_total, note.state.total) == (
        usd(100, "EUR"),
        usd(20, "EUR"),
        usd(120, "EUR"),
    )


def test_lago_only_finalized_invoices_with_an_amount_above_zero() -> None:
    """https://docs.getlago.com/guide/invoicing/credit-notes: "Credit notes can only be issued
    for invoices with status finalized and an amount greater than zero"."""
    draft = Invoice.draft(uuid4(), "acme", "t1", "USD", cause(), lines=[charge("fee", 100)])
    with pytest.raises(InvalidTransition) as refused:
        issue(draft)
    assert refused.value.field == "status"
    credit_only = finalized(
        charge("fee", 1000), charge("credit", -1500, kind=LineKind.PRORATION_CREDIT)
    )
    with pytest.raises(InvalidTransition) as nothing:
        issue(credit_only)
    assert nothing.value.field == "lines"


# --- rules ------------------------------------------------------------------------------


def test_a_credited_line_credits_its_tax_share_rounded_half_up() -> None:
    invoice = finalized(charge("fee", 999), tax("fee", 190))  # 19% of 9.99 = 1.8981 -> 1.90
    note = issue(invoice, lines=[{"line_id": "fee", "amount": usd(500)}])
    # 190 x 500 / 999 = 95.09... -> 95
    assert amounts(note) == [("fee", 500, 0, 95, 595)]
    rest = issue(invoice, lines=[{"line_id": "fee"}])
    # the rest takes exactly what is left of the tax: 190 - 95
    assert amounts(rest) == [("fee", 499, 0, 95, 594)]
    assert invoice.creditable_total.is_zero()


def test_discount_shares_follow_the_lines_and_the_whole_invoice_credits_its_total() -> None:
    invoice = finalized(
        charge("fee", 3000),
        charge("seats", 1000, quantity=2, kind=LineKind.SEATS),
        discount(1000),
        tax("fee", 450),
        tax("seats", 150),
    )
    assert invoice.totals.total == usd(3000 + 1000 - 1000 + 600)
    note = issue(invoice)
    assert amounts(note) == [("fee", 3000, 750, 450, 2700), ("seats", 1000, 250, 150, 900)]
    assert note.state.total == invoice.totals.total
    assert note.state.discount_total == usd(1000)


def test_inclusive_tax_is_reported_not_added() -> None:
    invoice = finalized(charge("fee", 1190), tax("fee", 190, inclusive=True))
    note = issue(invoice, lines=[{"line_id": "fee", "amount": usd(595)}])
    credited = note.state.lines[0]
    assert (credited.tax_included, credited.tax, credited.total) == (usd(95), usd(0), usd(595))
    assert credited.revenue == usd(500)


def test_a_tax_line_naming_no_line_is_spread_over_the_charges() -> None:
    invoice = finalized(charge("a", 1000), charge("b", 3000), tax(None, 400))
    note = issue(invoice)
    assert [(li.line_id, li.tax.amount) for li in note.state.lines] == [("a", 100), ("b", 300)]
    assert note.state.total == invoice.totals.total


def test_quantity_times_a_decimal_unit_is_rounded_once_half_up() -> None:
    # 1,000 units at 0.0035 cents = 3.5 cents on the invoice, billed as 4
    line = charge("api", 4, quantity=1000, kind=LineKind.USAGE, unit_decimal="0.0035")
    invoice = finalized(line)
    half = issue(invoice, lines=[{"line_id": "api", "quantity": 500}])  # 1.75 -> 2
    assert (half.state.lines[0].amount, half.state.lines[0].quantity) == (usd(2), 500)
    with pytest.raises(InvalidValue) as nothing:
        issue(invoice, lines=[{"line_id": "api", "quantity": 100}])  # 0.35 -> 0
    assert nothing.value.field == "lines.0.quantity"
    rest = issue(invoice, lines=[{"line_id": "api", "quantity": 500}])
    assert rest.state.lines[0].amount == usd(2) and invoice.creditable_total.is_zero()


def test_never_more_than_is_left_of_a_line_or_the_invoice() -> None:
    invoice = finalized(charge("fee", 1000), charge("seats", 500, quantity=5, kind=LineKind.SEATS))
    issue(invoice, lines=[{"line_id": "fee", "amount": usd(600)}])
    with pytest.raises(CreditExceeded) as line_limit:
        issue(invoice, lines=[{"line_id": "fee", "amount": usd(401)}])
    assert line_limit.value.field == "lines.0.amount"
    with pytest.raises(CreditExceeded) as quantity_limit:
        issue(invoice, lines=[{"line_id": "seats", "quantity": 6}])
    assert quantity_limit.value.field == "lines.0.quantity"
    issue(invoice, lines=[{"line_id": "seats", "quantity": 5}])
    with pytest.raises(CreditExceeded):
        issue(invoice, lines=[{"line_id": "seats", "quantity": 1}])
    assert invoice.creditable_amount("fee") == usd(400)


def test_proration_credits_cap_the_invoice_total() -> None:
    invoice = finalized(
        charge("debit", 5000, kind=LineKind.PRORATION_DEBIT),
        charge("credit", -3000, kind=LineKind.PRORATION_CREDIT),
    )
    with pytest.raises(CreditExceeded) as refused:
        issue(invoice, lines=[{"line_id": "debit", "amount": usd(2001)}])
    assert refused.value.field == "lines"
    with pytest.raises(InvalidValue) as not_a_charge:
        issue(invoice, lines=[{"line_id": "credit"}])
    assert not_a_charge.value.field == "lines.0.line_id"
    whole = issue(invoice)
    assert whole.state.total == usd(2000)


def test_bad_requests_name_the_field() -> None:
    invoice = finalized(charge("fee", 1000), discount(100))
    for lines, field in (
        ([{"line_id": "nope"}], "lines.0.line_id"),
        ([{"line_id": "discount:0"}], "lines.0.line_id"),
        ([{"line_id": "fee"}, {"line_id": "fee"}], "lines.1.line_id"),
        ([{"line_id": "fee", "amount": usd(10, "EUR")}], "lines.0.amount"),
    ):
        with pytest.raises(InvalidValue) as refused:
            issue(invoice, lines=lines)
        assert refused.value.field == field, lines
    with pytest.raises(ValueError, match="not both"):
        CreditRequest(line_id="fee", amount=usd(1), quantity=1)
    with pytest.raises(ValueError, match="positive"):
        CreditRequest(line_id="fee", amount=usd(0))


def test_methods_follow_the_invoice_status() -> None:
    open_invoice = finalized(charge("fee", 1000))
    with pytest.raises(InvalidTransition) as no_refund:
        issue(open_invoice, CreditMethod.REFUND)
    assert no_refund.value.field == "method"
    paid = finalized(charge("fee", 1000), paid=True)
    with pytest.raises(InvalidTransition) as not_open:
        issue(paid, CreditMethod.REDUCE_AMOUNT_DUE)
    assert not_open.value.field == "method"
    voided = finalized(charge("fee", 1000))
    voided.void("mistake", cause())
    with pytest.raises(InvalidTransition) as void:
        issue(voided)
    assert void.value.field == "status"


def test_reducing_the_amount_due_to_zero_pays_the_invoice() -> None:
    invoice = finalized(charge("fee", 1000))
    issue(invoice, CreditMethod.REDUCE_AMOUNT_DUE, [{"line_id": "fee", "amount": usd(400)}])
    with pytest.raises(CreditExceeded):
        issue(invoice, CreditMethod.REDUCE_AMOUNT_DUE, [{"line_id": "fee", "amount": usd(601)}])
    note = issue(invoice, CreditMethod.REDUCE_AMOUNT_DUE)
    assert note.state.total == usd(600)
    assert invoice.status is InvoiceStatus.PAID and invoice.amount_due.is_zero()
    paid = [e for e in invoice.pending_events if isinstance(e, InvoicePaid)]
    assert paid[-1].amount.is_zero() and paid[-1].payment_reference == note.number_text
    # nothing was paid, so nothing can be refunded
    with pytest.raises(InvalidTransition):
        issue(invoice, CreditMethod.REFUND)


def test_refunds_never_exceed_what_was_paid() -> None:
    invoice = Invoice.draft(uuid4(), "acme", "t1", "USD", cause(), lines=[charge("fee", 1000)])
    invoice.finalize(InvoiceNumbering.start("acme", cause()), cause(), balance=usd(300))
    invoice.pay(cause())
    assert invoice.state.amount_paid == usd(700)
    with pytest.raises(CreditExceeded) as refused:
        issue(invoice, CreditMethod.REFUND)
    assert refused.value.field == "method"
    issue(invoice, CreditMethod.REFUND, [{"line_id": "fee", "amount": usd(700)}])
    issue(invoice, CreditMethod.CREDIT_BALANCE)  # the 300 the balance paid goes back to it


def test_the_invoice_itself_refuses_a_line_twice_in_one_note() -> None:
    invoice = finalized(charge("fee", 1000))
    [credit] = plan_credit(invoice, [CreditRequest(line_id="fee", amount=usd(600))])
    with pytest.raises(InvalidValue) as refused:
        invoice.credit(uuid4(), "CN-000001", CreditMethod.CREDIT_BALANCE, [credit, credit], cause())
    assert refused.value.field == "lines" and invoice.creditable_amount("fee") == usd(1000)


def test_an_invoice_with_credit_notes_is_not_voided() -> None:
    invoice = finalized(charge("fee", 1000))
    issue(invoice, lines=[{"line_id": "fee", "amount": usd(1)}])
    with pytest.raises(InvalidTransition, match="credit notes"):
        invoice.void("mistake", cause())


def test_numbers_are_gap_free_per_app_and_events_say_what_was_credited() -> None:
    numbering = CreditNoteNumbering.start("acme", cause())
    invoice = finalized(charge("fee", 1000))
    first = issue(invoice, lines=[{"line_id": "fee", "amount": usd(100)}], numbering=numbering)
    with pytest.raises(CreditExceeded):
        issue(invoice, lines=[{"line_id": "fee", "amount": usd(5000)}], numbering=numbering)
    second = issue(invoice, lines=[{"line_id": "fee", "amount": usd(100)}], numbering=numbering)
    assert (first.number_text, second.number_text) == ("CN-000001", "CN-000002")
    assert format_credit_note_number(123) == "CN-000123" and numbering.last_number == 2
    credited = [e for e in invoice.pending_events if isinstance(e, InvoiceCredited)]
    assert [e.credit_note_number_text for e in credited] == ["CN-000001", "CN-000002"]
    assert invoice.state.credited_amounts == {"fee": 200}
    issued = first.pending_events[0]
    assert isinstance(issued, CreditNoteIssued) and issued.invoice_id == invoice.id
    other = CreditNoteNumbering.start("globex", cause())
    with pytest.raises(InvalidValue):
        issue(invoice, numbering=other)


# --- hypothesis: credited <= invoiced, per line, for any sequence -------------------------

LINES = st.lists(st.integers(min_value=1, max_value=100_000), min_size=1, max_size=4)
STEP = st.tuples(
    st.integers(min_value=0, max_value=3),
    st.one_of(
        st.none(),
        st.integers(min_value=1, max_value=120_000).map(lambda a: ("amount", a)),
        st.integers(min_value=1, max_value=10).map(lambda q: ("quantity", q)),
    ),
    st.sampled_from(list(CreditMethod)),
)


@settings(max_examples=150, deadline=None)
@given(
    amounts_=LINES,
    discount_off=st.integers(min_value=0, max_value=50_000),
    rate=st.sampled_from([0, 7, 19, 25]),
    steps=st.lists(STEP, max_size=12),
    paid=st.booleans(),
)
def test_credited_never_exceeds_invoiced_per_line(
    amounts_: list[int], discount_off: int, rate: int, steps: list[Any], paid: bool
) -> None:
    charges = [
        charge(f"l{i}", amount * 10, quantity=10, kind=LineKind.SEATS)
        for i, amount in enumerate(amounts_)
    ]
    taxes = [tax(line.line_id, line.amount.amount * rate // 100) for line in charges]
    lines = [*charges, *taxes] + ([discount(discount_off)] if discount_off else [])
    invoice = finalized(*lines, paid=paid)
    numbering = CreditNoteNumbering.start("acme", cause())
    notes: list[CreditNote] = []
    for index, how, method in steps:
        request: dict[str, Any] = {"line_id": f"l{index % len(charges)}"}
        if how is not None:
            request[how[0]] = usd(how[1]) if how[0] == "amount" else how[1]
        with contextlib.suppress(InvalidTransition, InvalidValue):  # refusals change nothing
            notes.append(issue(invoice, method, [request] if index < 3 else None, numbering))
    shares = {line.line_id: line for line in charges}
    for line_id, line in shares.items():
        credited = [li for note in notes for li in note.state.lines if li.line_id == line_id]
        assert sum(li.amount.amount for li in credited) <= line.amount.amount
        assert sum(li.quantity for li in credited) <= line.quantity
        line_tax = line.amount.amount * rate // 100
        assert 0 <= sum(li.tax.amount for li in credited) <= line_tax
    total = sum(note.state.total.amount for note in notes)
    assert total <= invoice.totals.total.amount
    assert [note.state.number for note in notes] == list(range(1, len(notes) + 1))
    assert invoice.amount_due.amount >= 0
    if paid:
        refunded = sum(n.state.total.amount for n in notes if n.state.method is CreditMethod.REFUND)
        assert refunded <= (invoice.state.amount_paid or usd(0)).amount


def test_a_fully_credited_line_credits_exactly_its_discount_and_tax() -> None:
    invoice = finalized(charge("a", 3333), charge("b", 6667), discount(1001), tax("a", 633))
    for amount in (1, 1000, 7, 2000):
        issue(invoice, lines=[{"line_id": "a", "amount": usd(amount)}])
    last = issue(invoice, lines=[{"line_id": "a"}])
    notes_a = plan_credit(invoice, None)
    assert [li.line_id for li in notes_a] == ["b"]  # a is fully credited
    assert last.state.lines[0].amount == usd(3333 - 3008)
    assert invoice.state.credited_amounts["a"] == 3333


# --- through the command bus --------------------------------------------------------------


@pytest.fixture
def tally() -> Iterator[System]:
    system = embedded_system()
    try:
        yield system
    finally:
        system.close()


def finalized_on_bus(tally: System, amount: int = 10000, tenant: str = "t1") -> str:
    drafted = ok(
        tally.dispatch(
            "draft_invoice",
            {
                "app_id": "acme",
                "tenant_id": tenant,
                "currency": "USD",
                "lines": [
                    {
                        "kind": "base_fee",
                        "description": "Pro",
                        "quantity": 1,
                        "unit_amount": {"amount": amount, "currency": "USD"},
                    }
                ],
            },
        )
    )
    invoice_id = str(drafted["invoice_id"])
    ok(tally.dispatch("finalize_invoice", {"app_id": "acme", "invoice_id": invoice_id}))
    return invoice_id


def test_bus_credit_balance_is_drawn_by_the_next_invoice(tally: System) -> None:
    first = finalized_on_bus(tally)
    ok(tally.dispatch("pay_invoice", {"app_id": "acme", "invoice_id": first}))
    line_id = tally.aggregate(UUID(first)).state.lines[0].line_id
    note = ok(
        tally.dispatch(
            "issue_credit_note",
            {
                "app_id": "acme",
                "invoice_id": first,
                "reason": "outage",
                "method": "credit_balance",
                "lines": [{"line_id": line_id, "amount": {"amount": 2500, "currency": "USD"}}],
            },
        )
    )
    assert note["number_text"] == "CN-000001" and note["total"]["amount"] == 2500
    balance = tally.aggregate(balance_id("acme", "t1", "USD"))
    assert isinstance(balance, CreditBalance) and balance.balance == usd(2500)
    second = finalized_on_bus(tally, amount=4000)
    invoice = tally.aggregate(UUID(second))
    assert invoice.amount_due == usd(1500) and invoice.state.balance_applied == usd(2500)


def test_bus_line_ids_and_replays(tally: System) -> None:
    invoice_id = finalized_on_bus(tally)
    invoice = tally.aggregate(UUID(invoice_id))
    line_id = invoice.state.lines[0].line_id
    body = {
        "app_id": "acme",
        "invoice_id": invoice_id,
        "reason": "r",
        "method": "reduce_amount_due",
        "command_id": "cn-1",
        "lines": [{"line_id": line_id, "amount": {"amount": 100, "currency": "USD"}}],
    }
    first = tally.dispatch("issue_credit_note", body)
    again = tally.dispatch("issue_credit_note", body)
    assert again.get("duplicate") is True and again["result"] == first["result"]
    assert tally.aggregate(UUID(invoice_id)).amount_due == usd(9900)
    refused = tally.dispatch("issue_credit_note", {**body, "command_id": None, "reason": ""})
    assert refused["ok"] is False and refused["error"]["details"][0]["field"] == "reason"
    other_app = tally.dispatch(
        "issue_credit_note", {**body, "app_id": "globex", "command_id": None}
    )
    assert other_app["error"]["code"] == "not_found"


def test_bus_crediting_a_failing_invoice_to_zero_pays_it_and_the_subscription_recovers(
    tally: System,
) -> None:
    plan = {"plan_key": "pro", "name": "Pro", "base_price": {"amount": 1000, "currency": "USD"}}
    ok(tally.dispatch("define_plan", {"app_id": "acme", **plan}))
    started = ok(
        tally.dispatch(
            "start_subscription", {"app_id": "acme", "tenant_id": "t1", "plan_key": "pro"}
        )
    )
    sub = str(started["subscription_id"])
    line = {
        "kind": "base_fee",
        "description": "fee",
        "unit_amount": {"amount": 1000, "currency": "USD"},
    }
    draft = ok(
        tally.dispatch(
            "draft_invoice",
            {
                "app_id": "acme",
                "tenant_id": "t1",
                "currency": "USD",
                "subscription_id": sub,
                "lines": [line],
            },
        )
    )
    invoice_id = str(draft["invoice_id"])
    ok(tally.dispatch("finalize_invoice", {"app_id": "acme", "invoice_id": invoice_id}))
    ok(
        tally.dispatch(
            "fail_invoice_payment",
            {"app_id": "acme", "invoice_id": invoice_id, "reason": "declined"},
        )
    )
    assert tally.aggregate(UUID(sub)).state.status.value == "past_due"
    body = {
        "app_id": "acme",
        "invoice_id": invoice_id,
        "reason": "waived",
        "method": "reduce_amount_due",
    }
    ok(tally.dispatch("issue_credit_note", body))
    invoice = tally.aggregate(UUID(invoice_id))
    assert invoice.status is InvoiceStatus.PAID and invoice.state.next_retry_at is None
    assert tally.aggregate(UUID(sub)).state.status.value == "active"


def test_snapshots_of_a_credited_invoice_and_its_note_load_the_same_state() -> None:
    invoice = finalized(charge("fee", 1000), tax("fee", 190), paid=True)
    note = issue(invoice, CreditMethod.REFUND, [{"line_id": "fee", "amount": usd(400)}])
    for aggregate in (invoice, note):
        again = Snapshot.take(aggregate).mutate(None)
        assert again.state == aggregate.state
    assert note.state.refund_status == "pending" and note.state.total == usd(476)
