"""Rating (domain/pricing.py): each pricing model and its edges, rounding once per line
half-up, sub-minor-unit prices, zero- and three-decimal currencies, free and included units,
properties under hypothesis, and POST /v1/pricing/rate.

Worked examples from public pricing documentation are in test_pricing_examples.py."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.bootstrap import System, bootstrap
from adapters.http.app import create_app
from adapters.settings import Settings
from domain.catalog import FeatureSpec, PerUnitPrice, included_units, pricing_model
from domain.clock import SettableClock
from domain.errors import InvalidValue, MoneyOverflow
from domain.money import round_half_up
from domain.pricing import MAX_QUANTITY, Rating, parse_quantity, rate, rate_feature
from tests.factories import T0


def money(amount: int, currency: str = "USD") -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


def dec(amount: str, currency: str = "USD") -> dict[str, Any]:
    return {"amount_decimal": amount, "currency": currency}


def tiered(kind: str, *tiers: tuple[int | None, dict[str, Any], int | None]) -> dict[str, Any]:
    """A graduated or volume model from (up_to, unit_price, flat_fee in USD cents) triples."""
    rows = [
        {"up_to": up_to, "unit_price": price, **({"flat_fee": money(fee)} if fee else {})}
        for up_to, price, fee in tiers
    ]
    return {"model": kind, "tiers": rows}


def amounts(rating: Rating) -> list[int]:
    return [line.amount.amount for line in rating.lines]


# 1-100 at 10 cents, 101-1000 at 5 cents, 1001+ at 1 cent
GRADUATED = tiered(
    "graduated", (100, money(10), None), (1000, money(5), None), (None, money(1), None)
)
VOLUME = {**GRADUATED, "model": "volume"}
PACKAGE = {"model": "package", "package_size": 100, "package_price": money(500)}


# --- graduated ---


@pytest.mark.parametrize(
    ("quantity", "lines"),
    [
        (0, []),  # no first-tier flat fee: nothing due, no line
        (1, [10]),
        (100, [1000]),  # exactly at up_to: still the first tier (inclusive)
        (101, [1000, 5]),  # up_to + 1 opens the next tier
        (1000, [1000, 4500]),
        (1001, [1000, 4500, 1]),
        (5000, [1000, 4500, 4000]),
    ],
)
def test_graduated_prices_each_unit_in_its_tier(quantity: int, lines: list[int]) -> None:
    rating = rate(GRADUATED, quantity)
    assert amounts(rating) == lines
    assert rating.amount.amount == sum(lines)


def test_graduated_lines_say_which_units_they_hold() -> None:
    rating = rate(GRADUATED, 1001)
    assert [(line.quantity, line.unit_price) for line in rating.lines] == [
        (100, "10"),
        (900, "5"),
        (1, "1"),
    ]
    assert [line.description for line in rating.lines] == [
        "tier 1, units 1 to 100",
        "tier 2, units 101 to 1000",
        "tier 3, units 1001 and above",
    ]


def test_graduated_flat_fees_per_tier_reached_and_the_first_at_zero() -> None:
    model = tiered("graduated", (10, money(100), 1000), (None, money(50), 2000))
    zero = rate(model, 0)
    assert [(line.quantity, line.amount.amount) for line in zero.lines] == [(0, 1000)]
    assert "flat fee 10.00 USD" in zero.lines[0].description
    assert amounts(rate(model, 10)) == [2000]  # 10 x 100 + 1000; tier 2 not reached
    assert amounts(rate(model, 11)) == [2000, 2050]  # tier 2: 1 x 50 + its flat fee 2000


def test_graduated_decimal_quantity_splits_at_the_bound() -> None:
    rating = rate(GRADUATED, Decimal("100.5"))
    assert [line.quantity for line in rating.lines] == [100, Decimal("0.5")]
    assert amounts(rating) == [1000, 3]  # 0.5 x 5 = 2.5 -> 3 (half-up)


# --- volume ---


@pytest.mark.parametrize(
    ("quantity", "amount", "price"),
    [(0, 0, "10"), (100, 1000, "10"), (101, 505, "5"), (1000, 5000, "5"), (1001, 1001, "1")],
)
def test_volume_prices_all_units_at_the_tier_reached(
    quantity: int, amount: int, price: str
) -> None:
    rating = rate(VOLUME, quantity)
    [line] = rating.lines
    assert (line.quantity, line.unit_price, rating.amount.amount) == (quantity, price, amount)


def test_volume_adds_only_the_reached_tiers_flat_fee_in_the_same_line() -> None:
    model = tiered("volume", (10, money(100), 1000), (None, money(50), 2000))
    assert amounts(rate(model, 0)) == [1000]  # the first tier is reached at 0
    assert amounts(rate(model, 10)) == [2000]
    [line] = rate(model, 11).lines
    assert line.amount.amount == 11 * 50 + 2000
    assert line.description == "all units at tier 2 (units 11 and above) + flat fee 20.00 USD"


# --- package, per unit, flat ---


@pytest.mark.parametrize(
    ("quantity", "packages"), [(0, 0), (1, 1), (99, 1), (100, 1), (101, 2), (200, 2), (201, 3)]
)
def test_a_started_package_is_charged_whole(quantity: int, packages: int) -> None:
    [line] = rate(PACKAGE, quantity).lines
    assert (line.quantity, line.unit_price, line.amount.amount) == (packages, "500", packages * 500)


def test_package_with_a_decimal_quantity() -> None:
    assert rate(PACKAGE, Decimal("100.01")).amount.amount == 1000
    assert rate(PACKAGE, Decimal("0.01")).lines[0].description == (
        "1 package of 100 units (0.01 units)"
    )


def test_per_unit_and_flat() -> None:
    per_unit = {"model": "per_unit", "unit_price": money(25)}
    assert rate(per_unit, 4).model_dump(mode="json") == {
        "amount": money(100),
        "lines": [
            {"description": "per unit", "quantity": 4, "unit_price": "25", "amount": money(100)}
        ],
    }
    flat = {"model": "flat", "amount": money(4900)}
    for quantity in (0, 1, 10_000):  # a flat fee whatever the quantity
        [line] = rate(flat, quantity).lines
        assert (line.quantity, line.unit_price, line.amount.amount) == (1, "4900", 4900)


# --- free units (before rating; tier bounds count what is left) ---


def test_free_units_come_off_before_rating() -> None:
    per_unit = {"model": "per_unit", "unit_price": money(10), "free_units": 10}
    assert rate(per_unit, 5).amount.amount == 0
    assert rate(per_unit, 10).lines[0].quantity == 0
    assert rate(per_unit, 15).amount.amount == 50
    graduated = {**tiered("graduated", (10, money(100), None), (None, money(1), None))}
    graduated["free_units"] = 50
    assert amounts(rate(graduated, 60)) == [1000]  # 10 billable units: all in tier 1
    assert amounts(rate(graduated, 61)) == [1000, 1]
    package = {**PACKAGE, "free_units": 100}
    assert rate(package, 100).amount.amount == 0 and rate(package, 101).amount.amount == 500


# --- rounding: once per line, half-up, whole minor units ---


@pytest.mark.parametrize(
    ("price", "quantity", "amount"),
    [
        ("0.0035", 1, 0),  # 0.0035 cents
        ("0.0035", 142, 0),  # 0.497
        ("0.0035", 143, 1),  # 0.5005
        ("0.0035", 999, 3),  # 3.4965
        ("0.0035", 1000, 4),  # 3.5: a half rounds up
        ("0.5", 1, 1),
        ("2.5", 1, 3),  # away from zero, not to even (banker's rounding would give 2)
        ("0.25", 2, 1),
        ("1.4999", 1, 1),
        ("0.000000000001", 10**12, 1),  # the finest price: 12 decimal places
    ],
)
def test_sub_minor_unit_prices_round_half_up(price: str, quantity: int, amount: int) -> None:
    assert rate({"model": "per_unit", "unit_price": dec(price)}, quantity).amount.amount == amount


def test_each_line_is_rounded_once_and_the_amount_sums_the_rounded_lines() -> None:
    model = tiered("graduated", (1, dec("0.5"), None), (None, dec("0.5"), None))
    rating = rate(model, 2)
    assert amounts(rating) == [1, 1] and rating.amount.amount == 2  # not round(0.5 + 0.5) = 1


def test_zero_and_three_decimal_currencies() -> None:
    yen = {"model": "per_unit", "unit_price": money(3, "JPY")}
    assert rate(yen, 1000).amount.model_dump() == money(3000, "JPY")  # 3,000 yen
    assert rate({"model": "per_unit", "unit_price": dec("0.5", "JPY")}, 3).amount.amount == 2
    fils = tiered("graduated", (10, money(1250, "KWD"), None), (None, money(1000, "KWD"), None))
    assert rate(fils, 11).amount.model_dump() == money(13_500, "KWD")  # 13.500 KWD
    assert rate({"model": "per_unit", "unit_price": dec("0.0005", "KWD")}, 1001).amount.amount == 1


# --- quantities ---


def test_quantities_are_ints_decimals_or_decimal_strings() -> None:
    assert parse_quantity(5) == 5 and parse_quantity(Decimal("5.000")) == 5
    assert isinstance(parse_quantity(Decimal("5.000")), int)
    assert parse_quantity(" 2.50 ") == Decimal("2.50")
    assert rate({"model": "per_unit", "unit_price": money(10)}, Decimal("2.5")).amount.amount == 25


@pytest.mark.parametrize(
    "bad", [-1, Decimal("-0.5"), 2.5, True, "abc", "NaN", "Infinity", "1e-31", MAX_QUANTITY + 1]
)
def test_bad_quantities_are_refused_naming_the_field(bad: Any) -> None:
    with pytest.raises(InvalidValue) as refused:
        rate({"model": "per_unit", "unit_price": money(1)}, bad)
    assert refused.value.field == "quantity"


def test_an_amount_beyond_64_bits_is_refused() -> None:
    with pytest.raises(MoneyOverflow):
        rate({"model": "per_unit", "unit_price": money(10**15)}, MAX_QUANTITY)


# --- model validation ---


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ({"model": "per_unit", "unit_price": money(-1)}, "unit_price.amount"),
        ({"model": "per_unit", "unit_price": dec("-0.1")}, "unit_price.amount_decimal"),
        ({"model": "per_unit", "unit_price": dec("0.0000000000001")}, "unit_price.amount_decimal"),
        ({"model": "per_unit", "unit_price": {"amount_decimal": 0.5, "currency": "USD"}},
         "unit_price.amount_decimal"),
        ({"model": "per_unit", "unit_price": {**money(1), "amount_decimal": "1"}},
         "unit_price.amount"),
        ({"model": "per_unit", "unit_price": {"currency": "USD"}}, "unit_price.amount"),
        ({"model": "per_unit", "unit_price": money(1), "free_units": -1}, "free_units"),
        ({"model": "flat", "amount": money(-5)}, "amount"),
        (tiered("graduated", (5, money(-1), None), (None, money(1), None)),
         "tiers.0.unit_price.amount"),
        ({"model": "volume", "tiers": [{"unit_price": money(1), "flat_fee": money(-1)}]},
         "tiers.0.flat_fee"),
        ({**PACKAGE, "package_price": money(-500)}, "package_price"),
        ({**PACKAGE, "package_size": 0}, "package_size"),
        (tiered("graduated", (5, money(1), None)), "tiers"),  # the last tier must be open
        ({"model": "percentage", "rate": "1.2"}, "model"),
    ],
)  # fmt: skip
def test_bad_models_are_refused_naming_the_field(model: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        rate(model, 1)
    assert refused.value.field == field, refused.value


def test_stored_unit_prices_load_and_dump_unchanged() -> None:
    stored = {"model": "per_unit", "unit_price": money(2)}
    model = pricing_model(stored)
    assert isinstance(model, PerUnitPrice)
    assert model.model_dump(mode="json") == {**stored, "free_units": 0}
    assert model.unit_price.model_dump(mode="json") == money(2)
    decimal = pricing_model({"model": "per_unit", "unit_price": dec("0.00350")})
    assert decimal.model_dump(mode="json")["unit_price"] == dec("0.0035")
    assert pricing_model(decimal.model_dump(mode="json")) == decimal


# --- features: included units, then the overage model ---


def feature(**fields: Any) -> FeatureSpec:
    overage = {"model": "per_unit", "unit_price": money(2)}
    return FeatureSpec.model_validate(
        {"key": "api", "kind": "metered", "overage": overage} | fields
    )


def test_rate_feature_takes_included_units_off_first() -> None:
    assert included_units(feature(limit=100)) == 100
    assert included_units(feature(limit=100, included=120)) == 120
    assert included_units(feature()) == 0
    assert included_units(FeatureSpec(key="sso", kind="boolean")) == 0
    rated = rate_feature(feature(limit=100, enforcement="soft"), 150)
    assert rated is not None and rated.lines[0].quantity == 50 and rated.amount.amount == 100
    rated = rate_feature(feature(limit=100, included=120), 150)
    assert rated is not None and rated.amount.amount == 60
    rated = rate_feature(feature(limit=100), 40)
    assert rated is not None and rated.amount.amount == 0
    rated = rate_feature(feature(), Decimal("1.5"))
    assert rated is not None and rated.amount.amount == 3
    assert rate_feature(FeatureSpec(key="x", kind="metered"), 10) is None


def test_included_units_and_free_units_both_come_off_and_tiers_count_after_them() -> None:
    overage = tiered("graduated", (10, money(100), None), (None, money(1), None))
    spec = feature(included=100, overage={**overage, "free_units": 10})
    rated = rate_feature(spec, 120)  # 120 - 100 included - 10 free = 10 units, all in tier 1
    assert rated is not None and amounts(rated) == [1000]
    rated = rate_feature(spec, 121)
    assert rated is not None and amounts(rated) == [1000, 1]


# --- properties ---

CURRENCIES = st.sampled_from(["USD", "EUR", "JPY", "KWD", "CLF"])


@st.composite
def unit_prices(draw: st.DrawFn, currency: str) -> dict[str, Any]:
    if draw(st.booleans()):
        return money(draw(st.integers(0, 10**6)), currency)
    value = draw(st.decimals(min_value=0, max_value=10**4, places=6))
    return dec(str(value), currency)


@st.composite
def tier_lists(draw: st.DrawFn, currency: str) -> list[dict[str, Any]]:
    bounds = sorted(draw(st.sets(st.integers(1, 10**6), max_size=4)))
    tiers = []
    for up_to in [*bounds, None]:
        tier: dict[str, Any] = {"up_to": up_to, "unit_price": draw(unit_prices(currency))}
        if draw(st.booleans()):
            tier["flat_fee"] = money(draw(st.integers(0, 10**5)), currency)
        tiers.append(tier)
    return tiers


@st.composite
def models(draw: st.DrawFn) -> dict[str, Any]:
    currency = draw(CURRENCIES)
    kind = draw(st.sampled_from(["flat", "per_unit", "graduated", "volume", "package"]))
    body: dict[str, Any] = {"model": kind, "free_units": draw(st.integers(0, 1000))}
    if kind == "flat":
        body["amount"] = money(draw(st.integers(0, 10**9)), currency)
    elif kind == "per_unit":
        body["unit_price"] = draw(unit_prices(currency))
    elif kind == "package":
        body |= {"package_size": draw(st.integers(1, 10**4))}
        body["package_price"] = money(draw(st.integers(0, 10**6)), currency)
    else:
        body["tiers"] = draw(tier_lists(currency))
    return body


QUANTITIES = st.one_of(st.integers(0, 10**7), st.decimals(min_value=0, max_value=10**7, places=3))


@settings(max_examples=200, deadline=None)
@given(currency=CURRENCIES, data=st.data(), a=QUANTITIES, b=QUANTITIES)
def test_graduated_amount_never_falls_as_quantity_grows(
    currency: str, data: st.DataObject, a: int | Decimal, b: int | Decimal
) -> None:
    model = {"model": "graduated", "tiers": data.draw(tier_lists(currency))}
    low, high = sorted((a, b))
    assert rate(model, low).amount <= rate(model, high).amount


@settings(max_examples=200, deadline=None)
@given(currency=CURRENCIES, data=st.data(), quantity=QUANTITIES)
def test_per_unit_of_n_is_n_times_the_price_rounded_once(
    currency: str, data: st.DataObject, quantity: int | Decimal
) -> None:
    price = data.draw(unit_prices(currency))
    exact = Fraction(quantity) * Fraction(
        Decimal(str(price.get("amount_decimal", price.get("amount"))))
    )
    rating = rate({"model": "per_unit", "unit_price": price}, quantity)
    assert rating.amount.amount == round_half_up(exact)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 10**4), price=st.integers(0, 10**6), quantity=QUANTITIES)
def test_package_amount_is_the_packages_started_times_the_price(
    size: int, price: int, quantity: int | Decimal
) -> None:
    model = {"model": "package", "package_size": size, "package_price": money(price)}
    packages = -(-Fraction(quantity) // size)  # ceil
    assert rate(model, quantity).amount.amount == packages * price


@settings(max_examples=300, deadline=None)
@given(model=models(), quantity=QUANTITIES)
def test_a_model_in_one_currency_rates_in_that_currency_only(
    model: dict[str, Any], quantity: int | Decimal
) -> None:
    rating = rate(model, quantity)
    currency = pricing_model(model).currency
    assert {rating.amount.currency} | {line.amount.currency for line in rating.lines} == {currency}
    assert rating.amount.amount == sum(amounts(rating)) >= 0
    # the stored (JSON) shape of a model rates the same as the model object
    assert rate(pricing_model(model).model_dump(mode="json"), quantity) == rating


# --- POST /v1/pricing/rate ---


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    system: System = bootstrap(
        Settings(database_url=f"sqlite:///{tmp_path / 'events.db'}"), SettableClock(T0)
    )
    try:
        key = system.dispatch("create_api_key", {"app_id": "acme", "scope": "read"})
        headers = {"Authorization": f"Bearer {key['result']['api_key']}"}
        yield TestClient(create_app(system), raise_server_exceptions=False), headers
    finally:
        system.close()


STRIPE_FLAT_TIERS = tiered(
    "graduated",
    (5, money(500), 1000),
    (10, money(400), 2000),
    (15, money(300), 3000),
    (20, money(200), 4000),
    (None, money(100), 5000),
)


def test_the_rate_route_serves_rate(client: tuple[TestClient, dict[str, str]]) -> None:
    http, read_key = client
    head = http.get("/v1/events", headers=read_key).json()["head"]
    answer = http.post(
        "/v1/pricing/rate", headers=read_key, json={"model": STRIPE_FLAT_TIERS, "quantity": 12}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body == rate(STRIPE_FLAT_TIERS, 12).model_dump(mode="json")
    assert body["amount"] == money(11100)
    assert [line["amount"]["amount"] for line in body["lines"]] == [3500, 4000, 3600]
    assert set(body["lines"][0]) == {"description", "quantity", "unit_price", "amount"}
    assert http.get("/v1/events", headers=read_key).json()["head"] == head  # records nothing


def test_the_rate_route_takes_decimal_strings(client: tuple[TestClient, dict[str, str]]) -> None:
    http, read_key = client
    model = {"model": "per_unit", "unit_price": dec("0.0035")}
    body = http.post(
        "/v1/pricing/rate", headers=read_key, json={"model": model, "quantity": "1000.5"}
    ).json()
    assert body["amount"] == money(4)  # 3.50175 -> 4
    assert body["lines"][0]["quantity"] == "1000.5" and body["lines"][0]["unit_price"] == "0.0035"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"model": PACKAGE, "quantity": -1}, "quantity"),
        ({"model": PACKAGE, "quantity": 2.5}, "quantity"),
        ({"model": PACKAGE, "quantity": "two"}, "quantity"),
        ({"model": PACKAGE}, "quantity"),
        ({"model": {**PACKAGE, "package_price": money(-1)}, "quantity": 1},
         "model.package.package_price"),
        ({"model": {"model": "per_unit", "unit_price": money(-1)}, "quantity": 1},
         "model.per_unit.unit_price.amount"),
        ({"model": {"model": "percentage"}, "quantity": 1}, "model"),
        ({"model": PACKAGE, "quantity": 1, "app_id": "acme"}, "app_id"),
    ],
)  # fmt: skip
def test_the_rate_route_refuses_bad_input_naming_the_field(
    client: tuple[TestClient, dict[str, str]], payload: dict[str, Any], field: str
) -> None:
    http, read_key = client
    answer = http.post("/v1/pricing/rate", headers=read_key, json=payload)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_error" and error["details"][0]["field"] == field, error


def test_the_rate_route_needs_a_key_and_is_documented(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    http, _ = client
    body = {"model": PACKAGE, "quantity": 1}
    assert http.post("/v1/pricing/rate", json=body).status_code == 401
    assert "/v1/pricing/rate" in http.get("/openapi.json").json()["paths"]
