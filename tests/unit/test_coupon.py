from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.bootstrap import System, bootstrap
from adapters.eventstore.mapper import decode_event, encode_event_state
from adapters.settings import Settings
from commands.coupons.redeem_coupon import RedeemCoupon
from commands.coupons.view import coupon_view
from domain.base import Snapshot
from domain.clock import SettableClock
from domain.coupon import (
    Coupon,
    CouponAlreadyRedeemed,
    CouponCreated,
    CouponDeactivated,
    CouponDuration,
    CouponRedeemed,
    CouponTerms,
    coupon_id,
    discount_amount,
    parse_percent_off,
    percent_json,
)
from domain.errors import (
    AlreadyExists,
    CouponNotRedeemable,
    CurrencyMismatch,
    DomainError,
    InvalidTransition,
    InvalidValue,
)
from domain.money import Money
from tests.factories import T0, cause


def usd(amount: int) -> Money:
    return Money(amount=amount, currency="USD")


def percent(value: int = 15, **options: Any) -> Coupon:
    return Coupon.create("acme", "spring", cause(), percent_off=value, **options)


def amount(value: int = 500, currency: str = "USD", **options: Any) -> Coupon:
    return Coupon.create(
        "acme", "fixed", cause(), amount_off=Money(amount=value, currency=currency), **options
    )


# --- create ---


def test_create_records_the_terms() -> None:
    coupon = percent(
        20,
        duration=CouponDuration.REPEATING,
        duration_in_periods=3,
        max_redemptions=10,
        valid_from=T0,
        valid_until=T0 + timedelta(days=30),
    )
    [event] = coupon.collect_events()
    assert isinstance(event, CouponCreated)
    assert coupon.id == coupon_id("acme", "spring") != coupon_id("other", "spring")
    state = coupon.state
    assert (state.code, state.percent_off, state.amount_off) == ("spring", Decimal(20), None)
    assert (state.duration, state.duration_in_periods) == (CouponDuration.REPEATING, 3)
    assert (state.max_redemptions, state.redemption_count, state.active) == (10, 0, True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of percent_off and amount_off"),
        ({"percent_off": 10, "amount_off": usd(100)}, "exactly one"),
        ({"percent_off": 0}, "above 0 and at most 100"),
        ({"percent_off": 101}, "above 0 and at most 100"),
        ({"percent_off": "100.01"}, "above 0 and at most 100"),
        ({"percent_off": "0.0"}, "above 0 and at most 100"),
        ({"percent_off": "12.1234567"}, "at most 6 decimal places"),
        ({"percent_off": 12.5}, "integer or a decimal string"),  # a float is not exact
        ({"percent_off": True}, "integer or a decimal string"),
        ({"percent_off": "12,5"}, "integer or a decimal string"),
        ({"percent_off": "NaN"}, "integer or a decimal string"),
        ({"percent_off": "1e1"}, "integer or a decimal string"),
        ({"percent_off": Decimal("NaN")}, "above 0 and at most 100"),
        ({"percent_off": 10, "carry_forward": True}, "only an amount_off coupon"),
        (
            {"amount_off": usd(500), "duration": "forever", "carry_forward": True},
            "only a once coupon",
        ),
        ({"amount_off": usd(0)}, "above zero"),
        ({"amount_off": usd(-5)}, "above zero"),
        ({"percent_off": 10, "duration": "repeating"}, "duration_in_periods >= 1"),
        (
            {"percent_off": 10, "duration": "repeating", "duration_in_periods": 0},
            "duration_in_periods >= 1",
        ),
        ({"percent_off": 10, "duration_in_periods": 2}, "only for repeating"),
        (
            {"percent_off": 10, "duration": "forever", "duration_in_periods": 2},
            "only for repeating",
        ),
        ({"percent_off": 10, "max_redemptions": 0}, "at least 1"),
        ({"percent_off": 10, "valid_from": T0, "valid_until": T0}, "before valid_until"),
        ({"percent_off": 10, "valid_from": datetime(2026, 1, 1)}, "timezone"),
    ],
)
def test_create_refuses_inconsistent_terms(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        Coupon.create("acme", "bad", cause(), **options)


@pytest.mark.parametrize(
    ("given", "exact"),
    [
        (20, Decimal(20)),
        ("12.5", Decimal("12.5")),
        (" 33.333333 ", Decimal("33.333333")),
        ("0.5", Decimal("0.5")),
        ("100", Decimal(100)),
        (Decimal("7.25"), Decimal("7.25")),
    ],
)
def test_percent_off_is_an_exact_decimal(given: object, exact: Decimal) -> None:
    assert parse_percent_off(given) == exact
    coupon = Coupon.create("acme", "exact", cause(), percent_off=given)  # type: ignore[arg-type]
    assert coupon.state.percent_off == exact
    assert isinstance(coupon.state.percent_off, Decimal)


def test_whole_percents_stay_integers_on_the_wire_and_fractions_are_strings() -> None:
    assert percent_json(Decimal(20)) == 20 and percent_json(Decimal("20.000")) == 20
    assert percent_json(Decimal("12.50")) == "12.5"
    assert coupon_view(percent(20))["percent_off"] == 20
    assert (
        coupon_view(Coupon.create("acme", "half", cause(), percent_off="12.5"))["percent_off"]
        == "12.5"
    )


def test_an_old_stored_coupon_with_an_integer_percent_loads_unchanged() -> None:
    """Stored before percents became decimals: percent_off an integer, no carry_forward."""
    old = {
        "timestamp": T0.isoformat(),
        "event_id": str(uuid4()),
        "app_id": "acme",
        "tenant_id": None,
        "actor": "tester",
        "command_id": None,
        "correlation_id": None,
        "code": "spring",
        "percent_off": 15,
        "amount_off": None,
        "duration": "forever",
        "duration_in_periods": None,
        "max_redemptions": None,
        "valid_from": None,
        "valid_until": None,
        "schema_version": 1,
        "recorded_at": T0.isoformat(),
    }
    event = decode_event("CouponCreated", coupon_id("acme", "spring"), 1, old)
    coupon = event.mutate(None)
    assert isinstance(coupon, Coupon)
    assert coupon.state.percent_off == Decimal(15) and coupon.state.carry_forward is False
    assert coupon.discount_for(usd(333)) == usd(50)  # 49.95 -> 50, as before
    assert coupon_view(coupon)["percent_off"] == 15
    assert encode_event_state(event)["percent_off"] == 15  # re-encoded as it was stored


def test_a_fractional_percent_round_trips_through_the_store_encoding() -> None:
    coupon = Coupon.create("acme", "half", cause(), percent_off="12.5")
    [event] = coupon.collect_events()
    stored = encode_event_state(event)
    assert stored["percent_off"] == "12.5" and stored["carry_forward"] is False
    loaded = decode_event("CouponCreated", event.originator_id, 1, stored)
    assert loaded == event
    restored = Snapshot.take(coupon).mutate(None)
    assert restored.state == coupon.state


def test_terms_are_what_a_subscription_keeps() -> None:
    coupon = amount(2000, carry_forward=True)
    assert coupon.terms() == CouponTerms(
        code="fixed",
        amount_off=usd(2000),
        duration=CouponDuration.ONCE,
        carry_forward=True,
    )
    assert coupon.terms().describe() == "fixed (20.00 USD off)"
    assert percent(15).terms().describe() == "spring (15% off)"
    half = Coupon.create("acme", "half", cause(), percent_off="12.5").terms()
    assert half.describe() == "half (12.5% off)"
    with pytest.raises(CurrencyMismatch) as refused:
        coupon.terms().require_currency("EUR")
    assert refused.value.field == "code"
    assert refused.value.details["coupon_currency"] == "USD"
    percent(15).terms().require_currency("EUR")  # a percent fits every currency


def test_create_refuses_a_code_that_is_not_a_slug() -> None:
    with pytest.raises(InvalidValue, match="code must match"):
        Coupon.create("acme", "Spring Sale", cause(), percent_off=10)


# --- discounts ---


def test_percent_discount_rounds_half_up_once() -> None:
    coupon = percent(15)
    assert coupon.discount_for(usd(333)) == usd(50)  # 49.95 -> 50
    assert coupon.discount_for(usd(10)) == usd(2)  # 1.5 -> 2
    assert coupon.discount_for(usd(3)) == usd(0)  # 0.45 -> 0
    assert percent(100).discount_for(usd(1234)) == usd(1234)
    assert coupon.discount_for(Money(amount=999, currency="JPY")) == Money(
        amount=150, currency="JPY"
    )  # 149.85 yen -> 150
    assert coupon.discount_for(usd(0)) == usd(0)
    assert coupon.discount_for(usd(-100)) == usd(0)


def test_a_decimal_percent_rounds_once_half_up() -> None:
    half = Coupon.create("acme", "half", cause(), percent_off="12.5").terms()
    assert discount_amount(half, usd(1000)) == usd(125)
    assert discount_amount(half, usd(999)) == usd(125)  # 124.875 -> 125
    assert discount_amount(half, usd(4)) == usd(1)  # 0.5 -> 1 (half-up)
    assert discount_amount(half, usd(3)) == usd(0)  # 0.375 -> 0
    third = Coupon.create("acme", "third", cause(), percent_off="33.333333").terms()
    assert discount_amount(third, Money(amount=3, currency="KWD")) == Money(
        amount=1, currency="KWD"
    )  # 0.99999999 -> 1


def test_a_balance_carried_forward_replaces_the_amount_off() -> None:
    terms = amount(2000, carry_forward=True).terms()
    assert discount_amount(terms, usd(5000), balance=usd(700)) == usd(700)
    assert discount_amount(terms, usd(500), balance=usd(700)) == usd(500)
    assert discount_amount(terms, usd(500), balance=usd(0)) == usd(0)


def test_amount_discount_is_capped_at_the_subtotal_and_keeps_its_currency() -> None:
    coupon = amount(500)
    assert coupon.discount_for(usd(2000)) == usd(500)
    assert coupon.discount_for(usd(300)) == usd(300)
    assert coupon.discount_for(usd(-1)) == usd(0)
    with pytest.raises(CurrencyMismatch):
        coupon.discount_for(Money(amount=2000, currency="EUR"))
    yen = amount(1000, "JPY")
    assert yen.discount_for(Money(amount=800, currency="JPY")) == Money(amount=800, currency="JPY")


# --- redeem ---


def test_redeem_counts_and_names_the_tenant() -> None:
    coupon = percent(max_redemptions=3)
    subscription_id = uuid4()
    assert coupon.redeem("t1", cause(), subscription_id) == 1
    assert coupon.redeem("t2", cause()) == 2
    event = coupon.pending_events[1]
    assert isinstance(event, CouponRedeemed)
    assert (event.tenant_id, event.subscription_id, event.redemption_count) == (
        "t1",
        subscription_id,
        1,
    )
    assert event.app_id == "acme" and event.code == "spring" and event.actor == "tester"
    assert coupon.state.redeemed_by == {"t1": subscription_id, "t2": None}


def test_a_tenant_redeems_once() -> None:
    coupon = percent()
    coupon.redeem("t1", cause())
    with pytest.raises(CouponAlreadyRedeemed) as refused:
        coupon.redeem("t1", cause())
    assert isinstance(refused.value, AlreadyExists)
    assert refused.value.code == "coupon_already_redeemed"
    assert coupon.redemption_count == 1


def test_the_cap_is_never_exceeded() -> None:
    coupon = percent(max_redemptions=2)
    coupon.redeem("t1", cause())
    coupon.redeem("t2", cause())
    with pytest.raises(CouponNotRedeemable, match="reached its 2 redemptions") as refused:
        coupon.redeem("t3", cause())
    assert refused.value.code == "coupon_not_redeemable"
    assert coupon.redemption_count == 2
    assert not coupon.is_redeemable_at(T0)


def test_the_validity_window_is_read_from_the_clock() -> None:
    start, end = T0 + timedelta(days=1), T0 + timedelta(days=10)
    coupon = percent(valid_from=start, valid_until=end)
    with pytest.raises(CouponNotRedeemable, match="valid from"):
        coupon.redeem("t1", cause(start - timedelta(seconds=1)))
    assert coupon.redeem("t1", cause(start)) == 1
    assert coupon.redeem("t2", cause(end - timedelta(microseconds=1))) == 2
    with pytest.raises(CouponNotRedeemable, match="expired"):
        coupon.redeem("t3", cause(end))
    assert coupon.is_redeemable_at(start) and not coupon.is_redeemable_at(end)


def test_a_deactivated_coupon_cannot_be_redeemed() -> None:
    coupon = percent()
    coupon.redeem("t1", cause())
    coupon.deactivate(cause())
    assert isinstance(coupon.pending_events[-1], CouponDeactivated)
    with pytest.raises(CouponNotRedeemable, match="deactivated"):
        coupon.redeem("t2", cause())
    with pytest.raises(InvalidTransition, match="already deactivated"):
        coupon.deactivate(cause())
    assert coupon.redemption_count == 1


def test_snapshots_round_trip() -> None:
    coupon = amount(500, max_redemptions=4, valid_until=T0 + timedelta(days=3))
    coupon.redeem("t1", cause(), uuid4())
    coupon.redeem("t2", cause())
    restored = Snapshot.take(coupon).mutate(None)
    assert isinstance(restored, Coupon)
    assert restored.state == coupon.state and restored.version == coupon.version


# --- property: redemptions never exceed the cap, whatever happens ---

STEP = st.one_of(
    st.tuples(st.just("redeem"), st.integers(0, 7)),
    st.tuples(st.just("advance"), st.integers(0, 48)),
    st.tuples(st.just("deactivate"), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.none(), st.integers(1, 6)),
    st.one_of(st.none(), st.integers(0, 48)),
    st.one_of(st.none(), st.integers(1, 96)),
    st.lists(STEP, max_size=40),
)
def test_redemptions_never_exceed_the_cap(
    cap: int | None,
    from_hours: int | None,
    window_hours: int | None,
    steps: list[tuple[str, int]],
) -> None:
    valid_from = T0 + timedelta(hours=from_hours) if from_hours is not None else None
    valid_until = (
        (valid_from or T0) + timedelta(hours=window_hours) if window_hours is not None else None
    )
    coupon = percent(10, max_redemptions=cap, valid_from=valid_from, valid_until=valid_until)
    now, redeemed, active = T0, set[str](), True
    for action, value in steps:
        if action == "advance":
            now += timedelta(hours=value)
            continue
        if action == "deactivate":
            if active:
                coupon.deactivate(cause(now))
                active = False
            continue
        tenant = f"t{value}"
        in_window = (valid_from is None or now >= valid_from) and (
            valid_until is None or now < valid_until
        )
        expected = (
            active and in_window and tenant not in redeemed and (cap is None or len(redeemed) < cap)
        )
        version = coupon.version
        try:
            count = coupon.redeem(tenant, cause(now))
        except (CouponNotRedeemable, CouponAlreadyRedeemed):
            assert not expected
            assert coupon.version == version
        else:
            assert expected
            redeemed.add(tenant)
            assert count == len(redeemed)
        assert coupon.redemption_count == len(redeemed) == len(coupon.state.redeemed_by)
        assert cap is None or coupon.redemption_count <= cap


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


def test_bus_create_redeem_deactivate(tally: System) -> None:
    created = tally.dispatch(
        "create_coupon",
        {
            "app_id": "acme",
            "code": "launch",
            "amount_off": {"amount": 500, "currency": "USD"},
            "duration": "repeating",
            "duration_in_periods": 3,
            "max_redemptions": 2,
            "valid_until": "2026-02-01T00:00:00Z",
        },
    )
    assert created["ok"], created
    assert created["result"] == {
        "coupon_id": str(coupon_id("acme", "launch")),
        "code": "launch",
        "percent_off": None,
        "amount_off": {"amount": 500, "currency": "USD"},
        "duration": "repeating",
        "duration_in_periods": 3,
        "max_redemptions": 2,
        "redemption_count": 0,
        "valid_from": None,
        "valid_until": "2026-02-01T00:00:00+00:00",
        "carry_forward": False,
        "active": True,
        "version": 1,
    }
    again = tally.dispatch("create_coupon", {"app_id": "acme", "code": "launch", "percent_off": 5})
    assert again["error"]["code"] == "already_exists"
    redeem = {"app_id": "acme", "code": "launch", "tenant_id": "t1"}
    first = tally.dispatch("redeem_coupon", redeem)
    assert first["result"]["redemption_count"] == 1
    assert tally.dispatch("redeem_coupon", redeem)["error"]["code"] == "coupon_already_redeemed"
    assert tally.dispatch("redeem_coupon", {**redeem, "tenant_id": "t2"})["ok"]
    capped = tally.dispatch("redeem_coupon", {**redeem, "tenant_id": "t3"})
    assert capped["error"]["code"] == "coupon_not_redeemable"
    off = tally.dispatch("deactivate_coupon", {"app_id": "acme", "code": "launch"})
    assert off["result"]["active"] is False
    twice = tally.dispatch("deactivate_coupon", {"app_id": "acme", "code": "launch"})
    assert twice["error"]["code"] == "invalid_transition"
    other_app = tally.dispatch("redeem_coupon", {**redeem, "app_id": "other", "tenant_id": "t9"})
    assert other_app["error"]["code"] == "not_found"
    assert other_app["error"]["details"] == [{"field": "code"}]


def test_bus_redeem_follows_the_clock_and_checks_the_subscription(tally: System) -> None:
    assert tally.dispatch(
        "create_coupon",
        {
            "app_id": "acme",
            "code": "week",
            "percent_off": 50,
            "valid_until": "2026-01-08T00:00:00Z",
        },
    )["ok"]
    assert tally.dispatch(
        "define_plan",
        {
            "app_id": "acme",
            "plan_key": "pro",
            "name": "Pro",
            "base_price": {"amount": 1000, "currency": "USD"},
        },
    )["ok"]
    started = tally.dispatch(
        "start_subscription", {"app_id": "acme", "tenant_id": "t1", "plan_key": "pro"}
    )
    subscription_id = started["result"]["subscription_id"]
    redeem = {"app_id": "acme", "code": "week", "subscription_id": subscription_id}
    stranger = tally.dispatch("redeem_coupon", {**redeem, "tenant_id": "t2"})
    assert stranger["error"]["code"] == "not_found"
    assert tally.dispatch("redeem_coupon", {**redeem, "tenant_id": "t1"})["ok"]
    coupon = tally.aggregate(coupon_id("acme", "week"))
    assert coupon.state.redeemed_by == {"t1": UUID(subscription_id)}
    assert isinstance(tally.clock, SettableClock)
    tally.clock.advance(timedelta(days=7))
    late = tally.dispatch("redeem_coupon", {"app_id": "acme", "code": "week", "tenant_id": "t3"})
    assert late["error"]["code"] == "coupon_not_redeemable"
    bad = tally.dispatch("create_coupon", {"app_id": "acme", "code": "x", "percent_off": 101})
    assert bad["error"]["code"] == "validation_error"
    neither = tally.dispatch("create_coupon", {"app_id": "acme", "code": "y"})
    assert neither["error"]["code"] == "invalid_value"


def test_concurrent_redeems_stop_exactly_at_the_cap(tally: System) -> None:
    assert tally.dispatch(
        "create_coupon",
        {"app_id": "acme", "code": "first5", "percent_off": 20, "max_redemptions": 5},
    )["ok"]

    def redeem(i: int) -> str:
        try:
            tally.handle(RedeemCoupon(app_id="acme", code="first5", tenant_id=f"t{i}"))
        except DomainError as error:
            return error.code
        return "ok"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(redeem, range(20)))
    assert outcomes.count("ok") == 5
    assert outcomes.count("coupon_not_redeemable") == 15
    coupon = tally.aggregate(coupon_id("acme", "first5"))
    assert isinstance(coupon, Coupon)
    assert coupon.redemption_count == 5 == len(coupon.state.redeemed_by)
