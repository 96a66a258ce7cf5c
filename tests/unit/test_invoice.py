import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from adapters.bootstrap import System, bootstrap
from adapters.settings import Settings
from commands.invoices.draft_invoice import DraftInvoice
from commands.invoices.finalize_invoice import FinalizeInvoice
from commands.invoices.line_input import InvoiceLineInput
from domain.base import Snapshot
from domain.clock import SettableClock
from domain.errors import (
    CurrencyMismatch,
    InvalidTransition,
    InvalidValue,
    InvoiceFrozen,
    NotFound,
)
from domain.invoice import (
    Invoice,
    InvoiceDrafted,
    InvoiceFinalized,
    InvoiceLine,
    InvoiceLineAdded,
    InvoiceMarkedUncollectible,
    InvoiceNumberAssigned,
    InvoiceNumbering,
    InvoicePaid,
    InvoicePaymentFailed,
    InvoiceStatus,
    InvoiceVoided,
    LineKind,
    compute_totals,
    format_invoice_number,
    invoice_numbering_id,
)
from domain.money import Money
from domain.period import Period
from tests.factories import T0, cause

PERIOD = Period(start=T0, end=datetime(2026, 2, 1, tzinfo=UTC))


def line(
    kind: str = "base_fee",
    amount: int = 1000,
    currency: str = "USD",
    *,
    quantity: int = 1,
    unit: int | None = None,
    line_id: str | None = None,
) -> InvoiceLine:
    return InvoiceLine(
        line_id=line_id or uuid4().hex,
        kind=LineKind(kind),
        description=kind.replace("_", " "),
        quantity=quantity,
        unit_amount=Money(amount=amount if unit is None else unit, currency=currency),
        amount=Money(amount=amount, currency=currency),
    )


def usd(amount: int) -> Money:
    return Money(amount=amount, currency="USD")


def draft(*lines: InvoiceLine, currency: str = "USD", app_id: str = "acme") -> Invoice:
    return Invoice.draft(
        uuid4(),
        app_id,
        "t1",
        currency,
        cause(),
        subscription_id=UUID(int=7),
        period=PERIOD,
        lines=list(lines),
    )


def numbering(app_id: str = "acme") -> InvoiceNumbering:
    return InvoiceNumbering.start(app_id, cause())


# --- lines ---


def test_line_signs_follow_their_kind() -> None:
    assert line("discount", -100).amount == usd(-100)
    assert line("proration_credit", -100).amount == usd(-100)
    assert line("adjustment", -100).amount == usd(-100)
    assert line("adjustment", 100).amount == usd(100)
    with pytest.raises(ValidationError, match="discount line carries a negative amount"):
        line("discount", 100)
    with pytest.raises(ValidationError, match="proration_credit line carries a negative"):
        line("proration_credit", 1)
    for kind in ("base_fee", "seats", "proration_debit", "usage", "overage"):
        with pytest.raises(ValidationError, match="cannot be negative"):
            line(kind, -1)


def test_line_quantity_and_currencies_are_checked() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        line(quantity=-1)
    with pytest.raises(ValidationError, match="unit_amount is USD but amount is EUR"):
        InvoiceLine(
            line_id="l1",
            kind=LineKind.BASE_FEE,
            description="x",
            quantity=1,
            unit_amount=usd(10),
            amount=Money(amount=10, currency="EUR"),
        )


def test_line_input_defaults_the_amount_to_unit_times_quantity() -> None:
    seats = InvoiceLineInput(
        kind=LineKind.SEATS, description="seats", quantity=3, unit_amount=usd(500)
    )
    assert seats.line().amount == usd(1500)
    assert seats.line().line_id != seats.line().line_id  # generated when not given
    credit = InvoiceLineInput(
        kind=LineKind.PRORATION_CREDIT,
        description="unused",
        unit_amount=usd(1000),
        amount=usd(-400),
    )
    assert credit.line().amount == usd(-400)
    with pytest.raises(ValidationError, match="negative amount"):
        InvoiceLineInput(kind=LineKind.DISCOUNT, description="10%", unit_amount=usd(100))


# --- totals ---


def test_totals_of_every_kind_of_line() -> None:
    invoice = draft(
        line("base_fee", 1000),
        line("seats", 1000, quantity=2, unit=500),
        line("proration_credit", -300),
        line("proration_debit", 200),
        line("usage", 100),
        line("overage", 50),
        line("adjustment", -10),
        line("discount", -500),
        line("tax", 190),
    )
    totals = invoice.totals
    assert totals.subtotal == usd(2040)
    assert totals.discount_total == usd(500)
    assert totals.tax_total == usd(190)
    assert totals.total == usd(2040 - 500 + 190)


def test_discounts_are_clamped_at_the_subtotal() -> None:
    totals = draft(line("base_fee", 1000), line("discount", -1500), line("tax", 0)).totals
    assert totals.discount_total == usd(1000)
    assert totals.total == usd(0)
    # tax still applies on top of a fully discounted subtotal
    assert draft(line("base_fee", 100), line("discount", -200), line("tax", 7)).totals.total == usd(
        7
    )


def test_a_negative_total_finalizes_with_nothing_due_and_the_rest_as_credit_balance() -> None:
    # SURFACE "Billing rules": a downgrade's proration may leave a total below zero; it
    # finalizes with amount_due 0 and the rest becomes the tenant's credit balance.
    invoice = draft(line("proration_credit", -800), line("base_fee", 300), line("discount", -50))
    assert invoice.totals.subtotal == usd(-500)
    assert invoice.totals.discount_total == usd(0)  # nothing to discount
    assert invoice.totals.total == usd(-500)
    seq = numbering()
    assert invoice.finalize(seq, cause()) == 1
    assert invoice.amount_due == usd(0)
    assert invoice.state.balance_created == usd(500)


def test_the_credit_balance_is_drawn_before_anything_is_due() -> None:
    invoice = draft(line("base_fee", 300))
    invoice.finalize(numbering(), cause(), balance=usd(120))
    assert (invoice.totals.total, invoice.amount_due) == (usd(300), usd(180))
    assert invoice.state.balance_applied == usd(120)
    bigger = draft(line("base_fee", 300))
    bigger.finalize(numbering(), cause(), balance=usd(1000))
    assert bigger.amount_due == usd(0) and bigger.state.balance_applied == usd(300)


def test_inclusive_tax_is_reported_but_not_added() -> None:
    gross = line("base_fee", 1190)
    tax = InvoiceLine(
        line_id="tax-1",
        kind=LineKind.TAX,
        description="VAT 19% (DE), included",
        quantity=1,
        unit_amount=usd(190),
        amount=usd(190),
        applies_to=gross.line_id,
        tax_inclusive=True,
    )
    totals = draft(gross, tax).totals
    assert (totals.subtotal, totals.tax_total, totals.total) == (usd(1190), usd(190), usd(1190))


def test_zero_decimal_currency_lines() -> None:
    net = Money(amount=1500, currency="JPY") * 3
    tax = net.scale(Fraction(1, 10))
    discount = net.scale(Fraction(15, 100))  # 675 yen exactly
    invoice = draft(
        line("seats", net.amount, "JPY", quantity=3, unit=1500),
        line("discount", -discount.amount, "JPY"),
        line("tax", tax.amount, "JPY"),
        currency="JPY",
    )
    invoice.finalize(numbering(), cause())
    totals = invoice.totals
    assert totals.subtotal == Money(amount=4500, currency="JPY")
    assert totals.total == Money(amount=4500 - 675 + 450, currency="JPY")
    assert totals.total.format() == "4275 JPY"
    # half-up once per line: 15 % of 333 yen is 49.95 -> 50
    assert Money(amount=333, currency="JPY").scale(Fraction(15, 100)).amount == 50


def test_currency_mismatch_is_refused() -> None:
    with pytest.raises(CurrencyMismatch, match="the invoice is in USD"):
        draft(line("base_fee", 100, "EUR"))
    invoice = draft(line())
    with pytest.raises(CurrencyMismatch):
        invoice.add_line(line("usage", 5, "JPY"), cause())
    invoice.finalize(numbering(), cause())
    with pytest.raises(CurrencyMismatch):
        invoice.pay(cause(), amount=Money(amount=1000, currency="EUR"))
    with pytest.raises(InvalidValue, match="ISO 4217"):
        draft(line(), currency="usd")


def test_line_ids_are_unique_within_an_invoice() -> None:
    with pytest.raises(InvalidValue, match="already used"):
        draft(line(line_id="a"), line(line_id="a"))
    invoice = draft(line(line_id="a"))
    with pytest.raises(InvalidValue, match="already used"):
        invoice.add_line(line("usage", 5, line_id="a"), cause())


# --- lifecycle ---


def test_draft_finalize_pay() -> None:
    invoice = draft(line("base_fee", 1000))
    invoice.add_line(line("tax", 80), cause())
    seq = numbering()
    assert invoice.finalize(seq, cause(T0 + timedelta(hours=1))) == 1
    assert invoice.status is InvoiceStatus.OPEN
    assert invoice.state.number_text == "INV-000001"
    assert invoice.state.finalized_at == T0 + timedelta(hours=1)
    invoice.pay(cause(T0 + timedelta(days=1)), amount=usd(1080), payment_reference="ch_1")
    assert invoice.status is InvoiceStatus.PAID
    assert invoice.state.amount_paid == usd(1080)
    assert invoice.state.paid_at == T0 + timedelta(days=1)
    kinds = [type(e) for e in invoice.collect_events()]
    assert kinds == [InvoiceDrafted, InvoiceLineAdded, InvoiceFinalized, InvoicePaid]
    assert [type(e) for e in seq.collect_events()][-1] is InvoiceNumberAssigned


def test_events_carry_what_a_revenue_projector_needs() -> None:
    invoice = draft(line("base_fee", 1000), line("discount", -100))
    invoice.finalize(numbering(), cause())
    invoice.fail_payment("card declined", cause(), next_retry_at=T0 + timedelta(days=3))
    invoice.pay(cause())
    drafted, finalized, failed, paid = invoice.collect_events()
    assert isinstance(drafted, InvoiceDrafted) and drafted.tenant_id == "t1"
    assert isinstance(finalized, InvoiceFinalized)
    assert (finalized.subtotal, finalized.discount_total, finalized.total) == (
        usd(1000),
        usd(100),
        usd(900),
    )
    assert finalized.lines == invoice.state.lines
    for event in (finalized, failed, paid):
        assert isinstance(event, InvoiceFinalized | InvoicePaymentFailed | InvoicePaid)
        assert event.currency == "USD"
        assert event.subscription_id == UUID(int=7)
        assert event.period == PERIOD
        assert (event.number, event.number_text, event.total) == (1, "INV-000001", usd(900))
        assert event.app_id == "acme" and event.tenant_id == "t1"
    assert isinstance(failed, InvoicePaymentFailed) and failed.attempt == 1
    assert isinstance(paid, InvoicePaid) and paid.amount == usd(900)


def test_payment_must_equal_the_total() -> None:
    invoice = draft(line("base_fee", 1000))
    invoice.finalize(numbering(), cause())
    with pytest.raises(InvalidValue, match="must equal the amount due"):
        invoice.pay(cause(), amount=usd(999))
    invoice.pay(cause())  # no amount: paid in full
    assert invoice.state.amount_paid == usd(1000)


def test_payment_failures_count_attempts_and_keep_the_invoice_open() -> None:
    invoice = draft(line())
    invoice.finalize(numbering(), cause())
    assert invoice.fail_payment("card declined", cause(), T0 + timedelta(days=1)) == 1
    assert invoice.fail_payment("insufficient funds", cause(T0 + timedelta(days=1))) == 2
    assert invoice.status is InvoiceStatus.OPEN
    assert invoice.state.payment_attempts == 2
    assert invoice.state.last_payment_error == "insufficient funds"
    with pytest.raises(InvalidValue, match="in the future"):
        invoice.fail_payment("declined", cause(T0 + timedelta(days=2)), T0 + timedelta(days=2))
    with pytest.raises(InvalidValue, match="say why"):
        invoice.fail_payment("  ", cause())


def test_an_uncollectible_invoice_can_still_be_paid_or_voided() -> None:
    paid = draft(line())
    paid.finalize(numbering(), cause())
    paid.mark_uncollectible(cause())
    assert paid.status is InvoiceStatus.UNCOLLECTIBLE
    paid.pay(cause())
    assert paid.status is InvoiceStatus.PAID
    voided = draft(line())
    voided.finalize(numbering(), cause())
    voided.mark_uncollectible(cause())
    voided.void("written off, then cancelled", cause())
    assert voided.status is InvoiceStatus.VOID
    assert voided.state.void_reason == "written off, then cancelled"
    assert isinstance(voided.pending_events[-1], InvoiceVoided)
    assert isinstance(voided.pending_events[-2], InvoiceMarkedUncollectible)


def test_a_finalized_invoice_is_frozen() -> None:
    invoice = draft(line("base_fee", 1000))
    invoice.finalize(numbering(), cause())
    totals = invoice.totals
    with pytest.raises(InvoiceFrozen, match="never changes"):
        invoice.add_line(line("usage", 5), cause())
    with pytest.raises(InvoiceFrozen):
        invoice.finalize(numbering(), cause())
    invoice.pay(cause())
    with pytest.raises(InvoiceFrozen) as refused:
        invoice.add_line(line("usage", 5), cause())
    assert refused.value.code == "invoice_frozen"
    assert isinstance(refused.value, InvalidTransition)
    assert invoice.totals == totals and len(invoice.state.lines) == 1


def test_an_empty_invoice_cannot_be_finalized() -> None:
    seq = numbering()
    with pytest.raises(InvalidTransition, match="at least one line"):
        draft().finalize(seq, cause())
    assert seq.last_number == 0


def test_void_needs_a_reason() -> None:
    invoice = draft(line())
    invoice.finalize(numbering(), cause())
    with pytest.raises(InvalidValue, match="say why"):
        invoice.void(" ", cause())


STATUSES = ["draft", "open", "paid", "void", "uncollectible"]
ALLOWED: dict[str, set[str]] = {
    "add_line": {"draft"},
    "finalize": {"draft"},
    "pay": {"open", "uncollectible"},
    "fail_payment": {"open", "uncollectible"},
    "void": {"open", "uncollectible"},
    "mark_uncollectible": {"open"},
}
AFTER = {
    "finalize": "open",
    "pay": "paid",
    "void": "void",
    "mark_uncollectible": "uncollectible",
}


def invoice_in(status: str) -> Invoice:
    invoice = draft(line())
    if status == "draft":
        return invoice
    invoice.finalize(numbering(), cause())
    if status == "paid":
        invoice.pay(cause())
    elif status == "void":
        invoice.void("duplicate", cause())
    elif status == "uncollectible":
        invoice.mark_uncollectible(cause())
    return invoice


def act(invoice: Invoice, action: str, seq: InvoiceNumbering) -> None:
    c = cause(T0 + timedelta(hours=1))
    if action == "add_line":
        invoice.add_line(line("usage", 5), c)
    elif action == "finalize":
        invoice.finalize(seq, c)
    elif action == "pay":
        invoice.pay(c)
    elif action == "fail_payment":
        invoice.fail_payment("declined", c)
    elif action == "void":
        invoice.void("duplicate", c)
    else:
        invoice.mark_uncollectible(c)


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", sorted(ALLOWED))
def test_transitions_allowed_and_refused(status: str, action: str) -> None:
    invoice = invoice_in(status)
    version = invoice.version
    if status in ALLOWED[action]:
        act(invoice, action, numbering())
        assert invoice.status.value == AFTER.get(action, status)
        return
    expected = InvoiceFrozen if action in ("add_line", "finalize") else InvalidTransition
    with pytest.raises(expected):
        act(invoice, action, numbering())
    assert invoice.version == version and invoice.status.value == status


# --- numbering ---


def test_numbering_is_gap_free_and_skips_nothing_on_refusal() -> None:
    seq = numbering()
    assert seq.id == invoice_numbering_id("acme") != invoice_numbering_id("other")
    numbers = []
    for i in range(5):
        if i == 2:
            with pytest.raises(InvalidTransition):
                draft().finalize(seq, cause())  # refused before a number is taken
        numbers.append(draft(line()).finalize(seq, cause()))
    assert numbers == [1, 2, 3, 4, 5]
    assert seq.last_number == 5
    assert format_invoice_number(42) == "INV-000042"


def test_numbering_of_another_app_is_refused() -> None:
    invoice = draft(line())
    seq = numbering("other")
    with pytest.raises(InvalidValue, match="another app"):
        invoice.finalize(seq, cause())
    assert seq.last_number == 0 and invoice.status is InvoiceStatus.DRAFT


def test_snapshots_round_trip() -> None:
    invoice = draft(line("base_fee", 1000), line("discount", -100))
    invoice.finalize(numbering(), cause())
    invoice.fail_payment("declined", cause(), T0 + timedelta(days=1))
    restored = Snapshot.take(invoice).mutate(None)
    assert isinstance(restored, Invoice)
    assert restored.state == invoice.state and restored.version == invoice.version


# --- properties ---

KINDS = sorted(LineKind, key=lambda k: k.value)


@st.composite
def lines_strategy(draw: st.DrawFn) -> InvoiceLine:
    kind = draw(st.sampled_from(KINDS))
    if kind in (LineKind.DISCOUNT, LineKind.PRORATION_CREDIT):
        unit = draw(st.integers(-(10**9), 0))
    elif kind is LineKind.ADJUSTMENT:
        unit = draw(st.integers(-(10**9), 10**9))
    else:
        unit = draw(st.integers(0, 10**9))
    quantity = draw(st.integers(0, 50))
    return line(kind.value, unit * quantity, quantity=quantity, unit=unit)


LATER = st.lists(
    st.sampled_from(["add_line", "finalize", "pay", "fail_payment", "void", "mark_uncollectible"]),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(lines_strategy(), max_size=12), LATER)
def test_totals_add_up_and_never_change_after_finalize(
    lines: list[InvoiceLine], later: list[str]
) -> None:
    invoice = draft(*lines)
    totals = invoice.totals
    assert totals.total == totals.subtotal - totals.discount_total + totals.tax_total
    assert totals.discount_total.amount >= 0
    assert totals.discount_total <= max(totals.subtotal, usd(0))
    if totals.subtotal.amount >= 0:
        assert totals.total.amount >= 0
    # the order lines arrive in does not matter
    one_by_one = draft()
    for each in lines:
        one_by_one.add_line(each, cause())
    assert one_by_one.totals == totals == compute_totals("USD", reversed(lines))

    seq = numbering()
    if not lines:
        with pytest.raises(InvalidTransition):
            invoice.finalize(seq, cause())
        assert invoice.status is InvoiceStatus.DRAFT and seq.last_number == 0
        return
    invoice.finalize(seq, cause())
    assert invoice.totals == totals
    assert invoice.amount_due.amount == max(totals.total.amount, 0)
    for action in later:
        with contextlib.suppress(InvalidTransition):
            act(invoice, action, seq)
        assert invoice.totals == totals
        assert invoice.state.lines == lines
    finalized = [e for e in invoice.pending_events if isinstance(e, InvoiceFinalized)]
    assert len(finalized) == 1 and finalized[0].total == totals.total
    assert seq.last_number == 1


# --- through the command bus on the embedded store ---


@pytest.fixture
def tally(tmp_path: Path) -> Iterator[System]:
    system = bootstrap(
        Settings(database_url=f"sqlite:///{tmp_path}/t.db"),
        SettableClock(datetime(2026, 1, 1, tzinfo=UTC)),
    )
    try:
        yield system
    finally:
        system.close()


def money(amount: int, currency: str = "USD") -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


def fee_line(amount: int = 1000, kind: str = "base_fee", **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "description": kind, "unit_amount": money(amount), **extra}


def test_bus_draft_finalize_pay(tally: System, tmp_path: Path) -> None:
    drafted = tally.handle(
        DraftInvoice(
            app_id="acme",
            tenant_id="t1",
            currency="USD",
            period=PERIOD,
            lines=[
                InvoiceLineInput(
                    kind=LineKind.SEATS, description="seats", quantity=3, unit_amount=usd(500)
                )
            ],
        )
    ).result
    invoice_id = drafted["invoice_id"]
    assert drafted["status"] == "draft" and drafted["number"] is None
    assert drafted["total"] == money(1500)
    added = tally.dispatch(
        "add_invoice_line",
        {
            "app_id": "acme",
            "invoice_id": invoice_id,
            "line": fee_line(-200, "discount", line_id="promo"),
        },
    )
    assert added["ok"], added
    assert added["result"]["discount_total"] == money(200)
    finalized = tally.dispatch("finalize_invoice", {"app_id": "acme", "invoice_id": invoice_id})
    assert finalized["ok"], finalized
    result = finalized["result"]
    assert (result["status"], result["number"], result["number_text"]) == (
        "open",
        1,
        "INV-000001",
    )
    assert result["total"] == money(1300)
    assert result["lines"][1]["line_id"] == "promo"
    assert result["period"] == PERIOD.model_dump(mode="json")
    frozen = tally.dispatch(
        "add_invoice_line", {"app_id": "acme", "invoice_id": invoice_id, "line": fee_line()}
    )
    assert frozen["error"]["code"] == "invoice_frozen"
    wrong = tally.dispatch(
        "pay_invoice", {"app_id": "acme", "invoice_id": invoice_id, "amount": money(1)}
    )
    assert wrong["error"]["code"] == "invalid_value"
    paid = tally.dispatch(
        "pay_invoice",
        {
            "app_id": "acme",
            "invoice_id": invoice_id,
            "amount": money(1300),
            "payment_reference": "pi_1",
        },
    )
    assert paid["ok"], paid
    assert paid["result"]["status"] == "paid"
    assert paid["result"]["amount_paid"] == money(1300)
    assert paid["result"]["paid_at"] == "2026-01-01T00:00:00+00:00"
    void = tally.dispatch(
        "void_invoice", {"app_id": "acme", "invoice_id": invoice_id, "reason": "oops"}
    )
    assert void["error"]["code"] == "invalid_transition"

    # everything survives a reload from the store
    again = bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/t.db"), SettableClock(T0))
    try:
        reloaded = again.aggregate(UUID(invoice_id))
        assert isinstance(reloaded, Invoice)
        assert reloaded.state == tally.aggregate(UUID(invoice_id)).state
        assert reloaded.totals.total == usd(1300)
    finally:
        again.close()


def test_bus_payment_failures_void_and_uncollectible(tally: System) -> None:
    ids = []
    for tenant in ("t1", "t2"):
        reply = tally.dispatch(
            "draft_invoice",
            {"app_id": "acme", "tenant_id": tenant, "currency": "USD", "lines": [fee_line()]},
        )
        ids.append(reply["result"]["invoice_id"])
        assert tally.dispatch("finalize_invoice", {"app_id": "acme", "invoice_id": ids[-1]})["ok"]
    failed = tally.dispatch(
        "fail_invoice_payment",
        {
            "app_id": "acme",
            "invoice_id": ids[0],
            "reason": "card declined",
            "next_retry_at": "2026-01-04T00:00:00Z",
        },
    )["result"]
    assert failed["status"] == "open" and failed["payment_attempts"] == 1
    assert failed["next_retry_at"] == "2026-01-04T00:00:00+00:00"
    marked = tally.dispatch("mark_invoice_uncollectible", {"app_id": "acme", "invoice_id": ids[0]})
    assert marked["result"]["status"] == "uncollectible"
    voided = tally.dispatch(
        "void_invoice", {"app_id": "acme", "invoice_id": ids[1], "reason": "duplicate"}
    )
    assert voided["result"]["status"] == "void" and voided["result"]["number"] == 2


def test_bus_refuses_other_apps_and_bad_input(tally: System) -> None:
    reply = tally.dispatch(
        "draft_invoice",
        {"app_id": "acme", "tenant_id": "t1", "currency": "USD", "lines": [fee_line()]},
    )
    invoice_id = reply["result"]["invoice_id"]
    other = tally.dispatch("finalize_invoice", {"app_id": "other", "invoice_id": invoice_id})
    assert other["error"]["code"] == "not_found"
    assert other["error"]["details"] == [{"field": "invoice_id"}]
    missing = tally.dispatch("pay_invoice", {"app_id": "acme", "invoice_id": str(uuid4())})
    assert missing["error"]["code"] == "not_found"
    positive_discount = tally.dispatch(
        "draft_invoice",
        {
            "app_id": "acme",
            "tenant_id": "t1",
            "currency": "USD",
            "lines": [fee_line(5, "discount")],
        },
    )
    assert positive_discount["error"]["code"] == "validation_error"
    assert positive_discount["error"]["details"][0]["field"] == "lines.0.amount"
    euro_line = tally.dispatch(
        "add_invoice_line",
        {
            "app_id": "acme",
            "invoice_id": invoice_id,
            "line": {"kind": "usage", "description": "x", "unit_amount": money(5, "EUR")},
        },
    )
    assert euro_line["error"]["code"] == "currency_mismatch"
    again = tally.dispatch(
        "draft_invoice",
        {"app_id": "acme", "tenant_id": "t1", "currency": "USD", "invoice_id": invoice_id},
    )
    assert again["error"]["code"] == "already_exists"
    empty = tally.dispatch(
        "draft_invoice", {"app_id": "acme", "tenant_id": "t1", "currency": "USD"}
    )
    assert empty["ok"]
    refused = tally.dispatch(
        "finalize_invoice", {"app_id": "acme", "invoice_id": empty["result"]["invoice_id"]}
    )
    assert refused["error"]["code"] == "invalid_transition"
    # the refused finalize took no number
    assert (
        tally.dispatch("finalize_invoice", {"app_id": "acme", "invoice_id": invoice_id})["result"][
            "number"
        ]
        == 1
    )


def test_bus_draft_for_a_subscription_checks_tenant_and_currency(tally: System) -> None:
    assert tally.dispatch(
        "define_plan",
        {"app_id": "acme", "plan_key": "pro", "name": "Pro", "base_price": money(1000)},
    )["ok"]
    started = tally.dispatch(
        "start_subscription", {"app_id": "acme", "tenant_id": "t1", "plan_key": "pro"}
    )
    subscription_id = started["result"]["subscription_id"]
    base = {"app_id": "acme", "currency": "USD", "subscription_id": subscription_id}
    ok = tally.dispatch("draft_invoice", {**base, "tenant_id": "t1", "lines": [fee_line()]})
    assert ok["result"]["subscription_id"] == subscription_id
    stranger = tally.dispatch("draft_invoice", {**base, "tenant_id": "t2"})
    assert stranger["error"]["code"] == "not_found"
    euros = tally.dispatch("draft_invoice", {**base, "tenant_id": "t1", "currency": "EUR"})
    assert euros["error"]["code"] == "currency_mismatch"
    other_app = tally.dispatch("draft_invoice", {**base, "app_id": "other", "tenant_id": "t1"})
    assert other_app["error"]["code"] == "not_found"


def test_bus_zero_decimal_invoice(tally: System) -> None:
    reply = tally.dispatch(
        "draft_invoice",
        {
            "app_id": "acme",
            "tenant_id": "t1",
            "currency": "JPY",
            "lines": [
                {
                    "kind": "seats",
                    "description": "s",
                    "quantity": 3,
                    "unit_amount": money(1500, "JPY"),
                },
                {"kind": "tax", "description": "10%", "unit_amount": money(450, "JPY")},
            ],
        },
    )
    assert reply["ok"], reply
    assert reply["result"]["total"] == money(4950, "JPY")


def test_concurrent_finalizes_get_numbers_one_to_twenty(tally: System) -> None:
    ids = [
        tally.dispatch(
            "draft_invoice",
            {"app_id": "acme", "tenant_id": f"t{i}", "currency": "USD", "lines": [fee_line()]},
        )["result"]["invoice_id"]
        for i in range(20)
    ]
    other = tally.dispatch(
        "draft_invoice",
        {"app_id": "beta", "tenant_id": "t1", "currency": "USD", "lines": [fee_line()]},
    )["result"]["invoice_id"]

    def finalize(invoice_id: str) -> int:
        result = tally.handle(FinalizeInvoice(app_id="acme", invoice_id=UUID(invoice_id))).result
        return int(result["number"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        numbers = list(pool.map(finalize, ids))
    assert sorted(numbers) == list(range(1, 21))
    seq = tally.aggregate(invoice_numbering_id("acme"))
    assert isinstance(seq, InvoiceNumbering) and seq.last_number == 20
    # each app has its own sequence
    beta = tally.dispatch("finalize_invoice", {"app_id": "beta", "invoice_id": other})
    assert beta["result"]["number_text"] == "INV-000001"
    with pytest.raises(NotFound):
        tally.handle(FinalizeInvoice(app_id="beta", invoice_id=UUID(ids[0])))
