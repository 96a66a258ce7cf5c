"""Tax: rates per country (TaxRate), the default RateTableTaxCalculator (exclusive, inclusive,
exempt, reverse charge, credits), allocate_discount, and worked examples from public docs."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from commands.tax.rates import rate_table, tax_calculator
from commands.unit_of_work import UnitOfWork
from domain.base import Snapshot
from domain.errors import CurrencyMismatch, InvalidValue
from domain.money import Money
from domain.profile import TaxStatus
from domain.tax import (
    REVERSE_CHARGE_TEXT,
    RateTableTaxCalculator,
    TaxableLine,
    TaxBehavior,
    TaxCalculator,
    TaxLine,
    TaxRate,
    TaxRateSet,
    TaxRateTerms,
    TaxRequest,
    allocate_discount,
    canonical_rate_percent,
    exclusive_tax,
    tax_rate_id,
)
from tests.factories import cause, embedded_system, ok

EXCLUSIVE, INCLUSIVE = TaxBehavior.EXCLUSIVE, TaxBehavior.INCLUSIVE


def money(amount: int, currency: str = "EUR") -> Money:
    return Money(amount=amount, currency=currency)


def rate(percent: str, behavior: TaxBehavior = EXCLUSIVE) -> TaxRateTerms:
    return TaxRateTerms(rate_percent=percent, behavior=behavior)


def request(*nets: Money, country: str = "DE", status: TaxStatus = TaxStatus.TAXABLE) -> TaxRequest:
    lines = [
        TaxableLine(line_id=f"l{i}", description=f"line {i}", net=net) for i, net in enumerate(nets)
    ]
    return TaxRequest(country=country, tax_status=status, lines=lines)


def tax(table: dict[str, TaxRateTerms], *nets: Money, **options: Any) -> list[TaxLine]:
    calculator: TaxCalculator = RateTableTaxCalculator(table)
    return calculator.tax(request(*nets, **options))


# --- rate percent ---


@pytest.mark.parametrize(
    ("given_percent", "canonical"),
    [
        ("19", "19.0"),
        ("19.0", "19.0"),
        ("19.00", "19.0"),
        ("7.70", "7.7"),
        ("8.875", "8.875"),
        ("0", "0.0"),
        ("100", "100.0"),
        ("0.0001", "0.0001"),
        (Decimal("20.50"), "20.5"),
    ],
)
def test_rate_percent_is_kept_in_one_canonical_form(
    given_percent: str | Decimal, canonical: str
) -> None:
    assert canonical_rate_percent(given_percent) == canonical


@pytest.mark.parametrize(
    "bad", ["101", "100.0001", "-1", "19.12345", "abc", "1e1", "", "19,0", "NaN", "Infinity", "1."]
)
def test_a_bad_rate_percent_is_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        canonical_rate_percent(bad)
    assert refused.value.field == "rate_percent"


def test_terms_hold_the_exact_rate() -> None:
    assert rate("19.0").rate == Fraction(19, 100)
    assert rate("8.875").rate == Fraction(8875, 100000)


@pytest.mark.parametrize(
    ("country", "terms", "text"),
    [
        ("DE", rate("19.0"), "VAT 19% (DE)"),
        ("DE", rate("19.0", INCLUSIVE), "VAT 19% (DE), included"),
        ("US", rate("8.875"), "Sales tax 8.875% (US)"),
        ("AU", rate("10"), "GST 10% (AU)"),
        ("CH", rate("8.1"), "VAT 8.1% (CH)"),
    ],
)
def test_descriptions(country: str, terms: TaxRateTerms, text: str) -> None:
    assert terms.describe(country) == text


# --- the TaxRate aggregate ---


def test_a_rate_is_created_by_its_first_tax_rate_set() -> None:
    created = TaxRate.create("acme", "DE", rate("19.0"), cause())
    [event] = created.collect_events()
    assert isinstance(event, TaxRateSet)
    assert (event.country, event.rate_percent, event.behavior) == ("DE", "19.0", EXCLUSIVE)
    assert created.id == tax_rate_id("acme", "DE") != tax_rate_id("globex", "DE")
    assert created.terms == rate("19.0")


def test_the_same_rate_again_records_nothing_and_a_new_one_records_tax_rate_set() -> None:
    created = TaxRate.create("acme", "DE", rate("19.0"), cause())
    first = created.collect_events()
    assert created.change(rate("19.00"), cause()) is False
    assert created.collect_events() == []
    assert created.change(rate("19.0", INCLUSIVE), cause()) is True
    [second] = created.collect_events()
    assert isinstance(second, TaxRateSet) and second.originator_version == 2
    rebuilt = second.mutate(first[0].mutate(None))
    assert rebuilt.state == created.state and rebuilt.terms.behavior is INCLUSIVE


def test_tax_rate_snapshot_round_trip() -> None:
    created = TaxRate.create("acme", "AT", rate("20.0"), cause())
    restored = Snapshot.take(created).mutate(None)
    assert isinstance(restored, TaxRate) and restored.state == created.state


def test_a_rate_for_an_unknown_country_is_refused() -> None:
    with pytest.raises(InvalidValue) as refused:
        TaxRate.create("acme", "ZZ", rate("19.0"), cause())
    assert refused.value.field == "country"


# --- worked examples from public documentation ---


def test_stripe_tax_rate_600_eur_at_10_percent_exclusive_and_inclusive() -> None:
    # https://support.stripe.com/questions/inclusive-and-exclusive-tax-options-in-the-tax-rate-api-and-stripe-tax
    # "if the price is EUR 600 and you set an inclusive tax rate of 10%, the invoice total
    # will still be EUR 600"; "an exclusive tax rate of 10% on a EUR 600 price will result in
    # an invoice total of EUR 660".
    [exclusive] = tax({"DE": rate("10")}, money(60000))
    assert exclusive.amount == money(6000)
    assert money(60000) + exclusive.added_to_total == money(66000)
    [inclusive] = tax({"DE": rate("10", INCLUSIVE)}, money(60000))
    assert inclusive.amount == money(5455)  # 600 - 600 / 1.1 = 54.5454... -> 54.55
    assert inclusive.taxable_amount == money(54545)
    assert money(60000) + inclusive.added_to_total == money(60000)  # the total does not grow


def test_square_one_dollar_at_10_percent_additive_and_inclusive() -> None:
    # https://developer.squareup.com/reference/square/enums/TaxInclusionType
    # additive: "a $1.00 item with a 10% additive tax would have a total cost ... of $1.10";
    # inclusive: "$0.91 (91 cents) of that total being the cost of the item and $0.09".
    [additive] = tax({"US": rate("10")}, money(100, "USD"), country="US")
    assert money(100, "USD") + additive.added_to_total == money(110, "USD")
    [inclusive] = tax({"US": rate("10", INCLUSIVE)}, money(100, "USD"), country="US")
    assert inclusive.amount == money(9, "USD")
    assert inclusive.taxable_amount == money(91, "USD")


def test_stripe_rounds_tax_once_per_line() -> None:
    # https://support.stripe.com/questions/rounding-rules-for-stripe-fees (table "line item
    # 1 $0.43 15% $0.0645 -> $0.06; line item 2 $4.84 15% $0.7265 -> $0.73; total tax $0.79;
    # subtotal $5.27; total $6.06").
    lines = tax({"US": rate("15")}, money(43, "USD"), money(484, "USD"), country="US")
    assert [line.amount.amount for line in lines] == [6, 73]
    total_tax = sum(line.amount.amount for line in lines)
    assert total_tax == 79 and 527 + total_tax == 606


def test_stax_bill_per_line_tax_differs_from_tax_on_the_subtotal() -> None:
    # https://support.staxbill.com/hc/en-us/articles/8362693575827-Understanding-Taxation-Calculations
    # four lines of $17.50 at 7%: $1.225 each; on the subtotal $70.00 x 7% = $4.90. Stax Bill
    # rounds half to even ($1.22 each, $4.88); Tally rounds half-up: $1.23 each, $4.92.
    lines = tax({"US": rate("7")}, *[money(1750, "USD")] * 4, country="US")
    assert [line.amount.amount for line in lines] == [123] * 4
    assert exclusive_tax(money(7000, "USD"), rate("7").rate) == money(490, "USD")
    assert abs(sum(line.amount.amount for line in lines) - 490) <= 4 / 2


def test_eu_reverse_charge_invoices_no_tax_and_says_so() -> None:
    # EU VAT Directive 2006/112/EC, Article 226(11a): where the customer is liable for the
    # VAT, the invoice carries the mention "Reverse charge"
    # (https://eur-lex.europa.eu/eli/dir/2006/112/oj).
    lines = tax(
        {"FR": rate("20")}, money(10000), money(2500), country="FR", status="reverse_charge"
    )
    assert [line.line_id for line in lines] == ["l0", "l1"]
    for line, net in zip(lines, (10000, 2500), strict=True):
        assert line.reverse_charge and line.description == REVERSE_CHARGE_TEXT
        assert line.description.startswith("Reverse charge")
        assert line.amount == money(0) and line.taxable_amount == money(net)
        assert line.rate_percent == "0.0"


# --- the calculator's other rules ---


def test_exempt_tenants_get_no_tax_lines() -> None:
    assert tax({"DE": rate("19")}, money(10000), status=TaxStatus.EXEMPT) == []


def test_a_country_without_a_rate_gets_no_tax_lines() -> None:
    assert tax({"FR": rate("20")}, money(10000), country="DE") == []


def test_reverse_charge_does_not_need_a_rate_in_the_table() -> None:
    [line] = tax({}, money(10000), country="NL", status=TaxStatus.REVERSE_CHARGE)
    assert line.reverse_charge and line.behavior is EXCLUSIVE


def test_a_zero_line_gets_no_tax_line() -> None:
    lines = tax({"DE": rate("19")}, money(0), money(100))
    assert [line.line_id for line in lines] == ["l1"]


def test_each_tax_line_names_its_line_rate_and_behavior() -> None:
    [line] = tax({"DE": rate("19.0")}, money(10000))
    assert (line.line_id, line.country, line.rate_percent, line.behavior) == (
        "l0",
        "DE",
        "19.0",
        EXCLUSIVE,
    )
    assert line.description == "VAT 19% (DE)" and line.amount == money(1900)
    assert line.taxable_amount == money(10000) and not line.reverse_charge


def test_a_proration_credit_reverses_the_tax() -> None:
    credit, debit = tax({"DE": rate("19")}, money(-3333), money(3333))
    assert credit.amount == money(-633) and debit.amount == money(633)  # 633.27 each way
    [inclusive] = tax({"DE": rate("19", INCLUSIVE)}, money(-11900))
    assert inclusive.amount == money(-1900) and inclusive.taxable_amount == money(-10000)


def test_zero_and_three_decimal_currencies_round_to_their_minor_unit() -> None:
    [yen] = tax({"JP": rate("10")}, money(999, "JPY"), country="JP")
    assert yen.amount == money(100, "JPY")  # 99.9 yen -> 100 yen
    [dinar] = tax({"KW": rate("5")}, money(1001, "KWD"), country="KW")
    assert dinar.amount == money(50, "KWD")  # 50.05 fils -> 50 fils


def test_a_request_is_one_invoice_in_one_currency() -> None:
    with pytest.raises(ValueError, match="share one currency"):
        request(money(100), money(100, "USD"))
    duplicate = TaxableLine(line_id="x", description="x", net=money(1))
    with pytest.raises(ValueError, match="unique"):
        TaxRequest(country="DE", tax_status=TaxStatus.TAXABLE, lines=[duplicate, duplicate])
    with pytest.raises(ValueError, match="ISO 3166"):
        request(money(1), country="de")


# --- allocate_discount ---


def test_a_discount_is_shared_in_proportion() -> None:
    assert allocate_discount([money(1000), money(3000)], money(1000)) == [money(250), money(750)]


def test_largest_remainders_get_the_leftover_units_ties_to_the_earlier_line() -> None:
    assert allocate_discount([money(1)] * 3, money(2)) == [money(1), money(1), money(0)]
    # exact shares 333.33, 666.67 -> 333, 667
    assert allocate_discount([money(1000), money(2000)], money(1000)) == [money(333), money(667)]


def test_negative_and_zero_lines_take_no_share() -> None:
    shares = allocate_discount([money(10000), money(-5000), money(0)], money(1000))
    assert shares == [money(1000), money(0), money(0)]


def test_a_discount_above_the_positive_lines_is_capped_at_them() -> None:
    assert allocate_discount([money(100), money(200), money(-50)], money(1000)) == [
        money(100),
        money(200),
        money(0),
    ]


def test_allocate_refuses_negative_discounts_and_mixed_currencies() -> None:
    with pytest.raises(InvalidValue) as refused:
        allocate_discount([money(100)], money(-1))
    assert refused.value.field == "discount"
    with pytest.raises(CurrencyMismatch):
        allocate_discount([money(100, "USD")], money(10))
    assert allocate_discount([], money(10)) == []


amounts = st.integers(min_value=-(10**9), max_value=10**9)


@given(st.lists(amounts, max_size=30), st.integers(min_value=0, max_value=3 * 10**9))
def test_shares_sum_to_the_discount_and_never_exceed_a_line(lines: list[int], off: int) -> None:
    shares = [s.amount for s in allocate_discount([money(a) for a in lines], money(off))]
    positive = sum(max(a, 0) for a in lines)
    assert sum(shares) == min(off, positive)
    for share, line in zip(shares, lines, strict=True):
        assert 0 <= share <= max(line, 0)
        if positive:
            exact = Fraction(min(off, positive) * max(line, 0), positive)
            assert abs(share - exact) < 1


@given(st.lists(amounts, min_size=1, max_size=30), st.integers(min_value=0, max_value=10**9))
def test_discounted_nets_sum_to_the_lines_minus_the_applied_discount(
    lines: list[int], off: int
) -> None:
    shares = allocate_discount([money(a) for a in lines], money(off))
    nets = [a - s.amount for a, s in zip(lines, shares, strict=True)]
    applied = min(off, sum(max(a, 0) for a in lines))
    assert sum(nets) == sum(lines) - applied


# --- rounding properties ---

percents = st.integers(min_value=0, max_value=1_000_000).map(
    lambda n: canonical_rate_percent(Decimal(n).scaleb(-4))
)


@given(st.lists(amounts, min_size=1, max_size=40), percents)
def test_per_line_tax_is_within_half_a_minor_unit_per_line_of_tax_on_the_sum(
    lines: list[int], percent: str
) -> None:
    terms = rate(percent)
    per_line = sum(exclusive_tax(money(a), terms.rate).amount for a in lines)
    on_sum = exclusive_tax(money(sum(lines)), terms.rate).amount
    assert 2 * abs(per_line - on_sum) <= len(lines)


@given(amounts, percents, st.sampled_from([EXCLUSIVE, INCLUSIVE]))
def test_each_line_is_rounded_once_half_up_and_a_credit_mirrors_its_debit(
    net: int, percent: str, behavior: TaxBehavior
) -> None:
    assume(net != 0)
    terms = rate(percent, behavior)
    debit, credit = tax({"DE": terms}, money(net), money(-net))
    assert credit.amount == -debit.amount and credit.taxable_amount == -debit.taxable_amount
    exact = net * terms.rate if behavior is EXCLUSIVE else net * terms.rate / (1 + terms.rate)
    assert abs(debit.amount.amount - exact) <= Fraction(1, 2)
    if behavior is INCLUSIVE:
        assert debit.taxable_amount + debit.amount == money(net)
    else:
        assert debit.taxable_amount == money(net)


# --- the command and the billing engine's helpers ---


@pytest.fixture
def system() -> Iterator[Any]:
    built = embedded_system()
    try:
        yield built
    finally:
        built.close()


def set_rate(system: Any, **fields: Any) -> dict[str, Any]:
    body = {"app_id": "acme", "country": "DE", "rate_percent": "19.0", "behavior": "exclusive"}
    return dict(system.dispatch("set_tax_rate", {**body, **fields}))


def test_set_tax_rate_creates_then_changes(system: Any) -> None:
    first = ok(set_rate(system, rate_percent="19"))
    assert (first["country"], first["rate_percent"], first["behavior"]) == (
        "DE",
        "19.0",
        "exclusive",
    )
    assert ok(set_rate(system))["version"] == 1  # the same rate: nothing recorded
    assert ok(set_rate(system, behavior="inclusive"))["version"] == 2
    assert system.aggregate(tax_rate_id("acme", "DE")).version == 2


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"rate_percent": "101"}, "rate_percent"),
        ({"rate_percent": 19}, "rate_percent"),  # a JSON number: never a float
        ({"rate_percent": 19.5}, "rate_percent"),
        ({"country": "Germany"}, "country"),
        ({"behavior": "sometimes"}, "behavior"),
    ],
)
def test_set_tax_rate_refuses_naming_the_field(
    system: Any, fields: dict[str, Any], field: str
) -> None:
    reply = set_rate(system, **fields)
    assert not reply["ok"] and reply["error"]["details"][0]["field"] == field
    assert system.aggregate(tax_rate_id("acme", "DE")) is None


def test_the_engine_loads_the_rates_of_an_app(system: Any) -> None:
    ok(set_rate(system))
    ok(set_rate(system, country="AT", rate_percent="20", behavior="inclusive"))
    ok(
        system.dispatch(
            "set_tax_rate",
            {"app_id": "globex", "country": "FR", "rate_percent": "20", "behavior": "exclusive"},
        )
    )
    uow = UnitOfWork(system.ledger, cause())
    assert rate_table(uow, "acme", ["DE", "AT", "FR"]) == {
        "DE": rate("19.0"),
        "AT": rate("20.0", INCLUSIVE),
    }
    [line] = tax_calculator(uow, "acme", "DE").tax(request(money(10000)))
    assert line.amount == money(1900)
    assert tax_calculator(uow, "acme", "FR").tax(request(money(10000), country="FR")) == []
