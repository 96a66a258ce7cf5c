"""Comparing plan terms (domain/plan_compare.py) and `GET /v1/plans/compare`: base and zone
prices, plan attributes, features added, removed and changed attribute by attribute, overage
models tier by tier, sample prices; and `fee_intervals`, the what-if's base-fee share.

Tier arithmetic follows Stripe's graduated and volume pricing
(https://docs.stripe.com/products-prices/pricing-models#graduated-pricing and
#volume-based-pricing); domain/pricing.py's own tests cover rating itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.catalog import PlanTerms
from domain.money import Money
from domain.period import Interval, Period, add_interval
from domain.plan_compare import compare_terms, fee_intervals, sample_quantities
from tests.factories import terms

USD = "USD"


def usd(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": USD}


def tier(up_to: int | None, price: int, flat: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"up_to": up_to, "unit_price": usd(price)}
    if flat is not None:
        found["flat_fee"] = usd(flat)
    return found


def api_feature(**extra: Any) -> dict[str, Any]:
    return {
        "key": "api",
        "kind": "metered",
        "limit": 1000,
        "enforcement": "soft",
        "overage": {"model": "graduated", "tiers": [tier(1000, 2), tier(None, 1)]},
        **extra,
    }


V1 = [{"key": "sso", "kind": "boolean"}, api_feature()]


def with_zones(base: PlanTerms, **zones: int) -> PlanTerms:
    currency = base.base_price.currency
    overrides = {zone: Money(amount=a, currency=currency) for zone, a in zones.items()}
    return base.model_copy(update={"price_overrides": overrides})


def test_the_same_terms_in_another_version_are_identical() -> None:
    compared = compare_terms(terms(features=V1), terms(version=2, features=V1))
    assert compared.identical and compared.same_currency
    assert compared.changes == [] and compared.added == compared.removed == compared.changed == []
    assert [f.status for f in compared.features] == ["unchanged", "unchanged"]
    assert compared.base_price.difference == Money(amount=0, currency=USD)
    assert (compared.a.version, compared.b.version) == (1, 2)


def test_base_price_zones_interval_trial_and_fee_timing() -> None:
    a = with_zones(terms(price=4900, features=V1), DE=4500, FR=4700)
    b = with_zones(terms(version=2, price=5900, trial_days=14, interval="year"), DE=5000, IN=1900)
    b = b.model_copy(update={"base_fee_timing": "in_arrears", "name": "Pro 2"})
    compared = compare_terms(a, b)
    assert compared.base_price.difference == Money(amount=1000, currency=USD)
    zones = {
        z.zone: (z.a.amount, z.b.amount, z.difference, z.a_override, z.b_override)
        for z in compared.zones
    }
    assert zones == {
        "DE": (4500, 5000, Money(amount=500, currency=USD), True, True),
        "FR": (4700, 5900, Money(amount=1200, currency=USD), True, False),  # b: its base price
        "IN": (4900, 1900, Money(amount=-3000, currency=USD), False, True),
    }
    assert [(c.field, c.a, c.b) for c in compared.changes] == [
        ("name", "Pro", "Pro 2"),
        ("interval", "month", "year"),
        ("trial_days", 0, 14),
        ("base_fee_timing", "in_advance", "in_arrears"),
    ]
    assert not compared.identical


def test_features_added_removed_and_changed_attribute_by_attribute() -> None:
    changed = api_feature(limit=2000, included=500, enforcement="hard", period="day", meter="count")
    seats = {"key": "seats", "kind": "seats", "limit": 5, "seat_price": usd(1000)}
    b = terms(version=2, features=[changed, seats])
    compared = compare_terms(terms(features=V1), b)
    assert (compared.added, compared.removed, compared.changed) == (["seats"], ["sso"], ["api"])
    assert [f.key for f in compared.features] == ["sso", "api", "seats"]
    api = compared.features[1]
    assert [(c.field, c.a, c.b) for c in api.changes] == [
        ("limit", 1000, 2000),
        ("included", None, 500),
        ("enforcement", "soft", "hard"),
        ("period", "month", "day"),
        ("meter", "sum", "count"),
    ]
    assert api.tiers == []  # same tiers


def test_seat_price_change() -> None:
    seats = {"key": "seats", "kind": "seats", "limit": 5, "seat_price": usd(1000)}
    compared = compare_terms(
        terms(features=[seats]), terms(version=2, features=[{**seats, "seat_price": usd(1200)}])
    )
    [feature] = compared.features
    assert feature.status == "changed"
    assert [(c.field, c.a, c.b) for c in feature.changes] == [("seat_price", usd(1000), usd(1200))]


def test_tiers_compared_one_by_one() -> None:
    overage = {
        "model": "graduated",
        "tiers": [tier(500, 3), tier(5000, 1, flat=100), tier(None, 1)],
    }
    compared = compare_terms(
        terms(features=V1), terms(version=2, features=[api_feature(overage=overage)])
    )
    api = compared.features[1]
    assert api.changes == []  # same model, same free units
    assert [(t.tier, t.status, [(c.field, c.a, c.b) for c in t.changes]) for t in api.tiers] == [
        (1, "changed", [("up_to", 1000, 500), ("unit_price", usd(2), usd(3))]),
        (2, "changed", [("up_to", None, 5000), ("flat_fee", None, usd(100))]),
        (3, "added", []),
    ]
    assert api.tiers[2].b == {"up_to": None, "unit_price": usd(1), "flat_fee": None}
    assert api.tiers[2].a is None


def test_overage_model_kind_changes() -> None:
    volume = {"model": "volume", "tiers": [tier(1000, 2), tier(None, 1)]}
    compared = compare_terms(
        terms(features=V1), terms(version=2, features=[api_feature(overage=volume)])
    )
    api = compared.features[1]
    assert [(c.field, c.a, c.b) for c in api.changes] == [("overage.model", "graduated", "volume")]
    assert api.tiers == []  # both tiered: compared tier by tier, and the tiers are the same

    per_unit = {"model": "per_unit", "unit_price": usd(2), "free_units": 10}
    compared = compare_terms(
        terms(features=V1), terms(version=2, features=[api_feature(overage=per_unit)])
    )
    fields = sorted(c.field for c in compared.features[1].changes)
    assert fields == ["overage.free_units", "overage.model", "overage.tiers", "overage.unit_price"]

    plain = api_feature()
    del plain["overage"]
    compared = compare_terms(terms(features=V1), terms(version=2, features=[plain]))
    [change] = compared.features[1].changes
    assert change.field == "overage" and change.b is None and change.a["model"] == "graduated"


def test_sample_prices_on_both_sides() -> None:
    # a: 1,000 included, then 2 cents up to 1,000 billable units and 1 cent beyond
    # b: 2,000 included, then 3 cents up to 500 and 2 cents beyond
    overage = {"model": "graduated", "tiers": [tier(500, 3), tier(None, 2)]}
    b = terms(version=2, features=[api_feature(limit=2000, overage=overage)])
    api = compare_terms(terms(features=V1), b).features[1]
    samples = {
        s.quantity: (s.a.amount, s.b.amount, s.difference.amount)  # type: ignore[union-attr]
        for s in api.samples
    }
    assert samples[0] == (0, 0, 0)
    assert samples[1000] == (0, 0, 0)  # where a starts to bill
    assert samples[2000] == (2000, 0, -2000)  # a: 1,000 x 2; b: all included
    assert samples[2500] == (2500, 1500, -1000)  # a: 2,000 + 500 x 1; b: 500 x 3
    assert samples[3000] == (3000, 2500, -500)  # b: 1,500 + 500 x 2
    assert list(samples) == sorted(samples) and len(samples) <= 12


def test_samples_of_a_feature_one_side_lacks_or_does_not_price() -> None:
    compared = compare_terms(terms(features=V1), terms(version=2))
    api = compared.features[1]
    assert api.status == "removed"
    assert all(s.b is None and s.difference is None for s in api.samples)
    assert [s.quantity for s in api.samples] == [0, 1000, 2000, 3000]
    plain = api_feature()
    del plain["overage"]
    api = compare_terms(terms(features=V1), terms(version=2, features=[plain])).features[1]
    assert {s.quantity: s.b for s in api.samples}[3000] == Money(amount=0, currency=USD)
    assert compare_terms(terms(features=V1), terms(features=V1)).features[0].samples == []


def test_two_plans_in_different_currencies() -> None:
    compared = compare_terms(terms(features=V1), terms("eu", price=4500, currency="EUR"))
    assert not compared.same_currency and compared.base_price.difference is None
    assert ("currency", "USD", "EUR") in [(c.field, c.a, c.b) for c in compared.changes]
    assert (compared.a.plan_key, compared.b.plan_key) == ("pro", "eu")


def test_sample_quantities_follow_bounds_and_included_units() -> None:
    package = {"model": "package", "package_size": 100, "package_price": usd(500), "free_units": 50}
    spec = terms(features=[api_feature(overage=package)]).features[0]
    assert sample_quantities([spec]) == [0, 1050, 1150, 1250]
    assert sample_quantities([]) == []


prices = st.integers(min_value=0, max_value=10**6)


@settings(max_examples=60, deadline=None)
@given(
    prices, prices, st.integers(min_value=0, max_value=5000), st.integers(min_value=1, max_value=3)
)
def test_comparing_backwards_negates_every_difference(
    pa: int, pb: int, limit: int, price: int
) -> None:
    a = terms(price=pa, features=V1)
    per_unit = {"model": "per_unit", "unit_price": usd(price)}
    b = terms(version=2, price=pb, features=[api_feature(limit=limit, overage=per_unit)])
    forward, backward = compare_terms(a, b), compare_terms(b, a)
    assert forward.base_price.difference == -backward.base_price.difference  # type: ignore[operator]
    assert (forward.added, forward.removed) == (backward.removed, backward.added)
    assert forward.changed == backward.changed
    for f, r in zip(forward.features[1].samples, backward.features[0].samples, strict=True):
        assert f.quantity == r.quantity and f.difference == -r.difference  # type: ignore[operator]
    assert compare_terms(a, a).identical


# --- fee_intervals ---------------------------------------------------------------------------


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type,misc]


@pytest.mark.parametrize(
    ("start", "end", "interval", "share"),
    [
        (at(2026, 1, 1), at(2026, 2, 1), Interval.MONTH, (1, 1)),
        (at(2026, 1, 31), at(2026, 2, 28), Interval.MONTH, (1, 1)),  # clamped to February's end
        (at(2026, 1, 1), at(2026, 1, 16), Interval.MONTH, (15, 31)),
        (at(2026, 1, 1), at(2026, 3, 16), Interval.MONTH, (2 * 31 + 15, 31)),  # + 15 of March's 31
        (at(2026, 2, 1), at(2026, 2, 15), Interval.MONTH, (1, 2)),
        (at(2026, 1, 1), at(2026, 2, 1), Interval.YEAR, (31, 365)),
        (at(2026, 1, 1), at(2026, 1, 1, 12), Interval.DAY, (1, 2)),
        (at(2026, 1, 1), at(2027, 7, 2, 12), Interval.YEAR, (3, 2)),  # 182.5 days of 365
    ],
)
def test_fee_intervals(
    start: datetime, end: datetime, interval: Interval, share: tuple[int, int]
) -> None:
    assert Fraction(*fee_intervals(Period(start=start, end=end), interval, "UTC")) == Fraction(
        *share
    )


def test_a_month_across_daylight_saving_is_one_interval_on_the_wall_clock() -> None:
    berlin_march = Period(start=at(2026, 2, 28, 23), end=at(2026, 3, 31, 22))  # local midnights
    assert fee_intervals(berlin_march, Interval.MONTH, "Europe/Berlin") == (1, 1)
    assert fee_intervals(berlin_march, Interval.MONTH, "UTC") != (1, 1)


@settings(max_examples=80, deadline=None)
@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    st.sampled_from(list(Interval)),
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=0, max_value=999),
)
def test_whole_intervals_count_whole_and_the_rest_is_its_share_of_the_next(
    naive: datetime, interval: Interval, count: int, thousandths: int
) -> None:
    start = naive.replace(tzinfo=UTC)
    whole_end = add_interval(start, interval, count, start.day, "UTC")
    next_end = add_interval(start, interval, count + 1, start.day, "UTC")
    assert fee_intervals(Period(start=start, end=whole_end), interval, "UTC") == (count, 1)
    length = (next_end - whole_end) // timedelta(microseconds=1)
    rest = length * thousandths // 1000
    end = whole_end + timedelta(microseconds=rest)
    share = Fraction(*fee_intervals(Period(start=start, end=end), interval, "UTC"))
    assert share == count + Fraction(rest, length)
