"""SubscriptionDiscounts: coupons attached to a subscription and what they take off each invoice
(worked examples from public billing docs, each with its URL), then the attach command on the
embedded store (races on the redemption cap, currencies, start with a coupon)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from fractions import Fraction
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.bootstrap import System
from adapters.eventstore.mapper import decode_event, encode_event_state
from commands.coupons.attach_coupon import AttachCoupon, attach_coupon
from commands.unit_of_work import UnitOfWork
from domain.base import Cause, DomainEvent, Snapshot
from domain.clock import SettableClock
from domain.coupon import Coupon, CouponDuration, CouponRedeemed, coupon_id
from domain.discount import (
    CouponAlreadyAttached,
    CouponAttached,
    DiscountApplied,
    DiscountLine,
    SubscriptionDiscounts,
    subscription_discounts_id,
)
from domain.errors import CurrencyMismatch, DomainError
from domain.money import Money
from tests.factories import T0, cause, embedded_system, ok

SUBSCRIPTION = UUID("00000000-0000-4000-8000-000000000001")


def usd(amount: int) -> Money:
    return Money(amount=amount, currency="USD")


def eur(amount: int) -> Money:
    return Money(amount=amount, currency="EUR")


def coupon(code: str, **terms: Any) -> Coupon:
    return Coupon.create("acme", code, cause(), **terms)


def discounts(*coupons: Coupon, currency: str = "USD") -> SubscriptionDiscounts:
    opened = SubscriptionDiscounts.open("acme", "t1", SUBSCRIPTION, currency, cause())
    for each in coupons:
        opened.attach(each.terms(), cause(), redemption_event_id=uuid4())
    return opened


def bill(subject: SubscriptionDiscounts, *subtotals: Money) -> list[list[DiscountLine]]:
    """Apply to one invoice per subtotal; each invoice's lines."""
    return [subject.apply(uuid4(), subtotal, cause()) for subtotal in subtotals]


def taken(lines: list[DiscountLine]) -> int:
    return sum(line.amount.amount for line in lines)


# --- worked examples ---


def test_stripe_percent_off_50_makes_a_100_invoice_50_every_time_when_forever() -> None:
    # https://docs.stripe.com/api/coupons/object (percent_off: "a coupon with percent_off of 50
    # will make a $100 invoice $50 instead"); duration forever applies to every invoice:
    # https://docs.stripe.com/billing/subscriptions/coupons
    subject = discounts(coupon("half", percent_off=50, duration="forever"))
    invoices = bill(subject, usd(10000), usd(10000), usd(10000))
    assert [taken(lines) for lines in invoices] == [5000, 5000, 5000]
    assert invoices[0][0].description == "half (50% off)"


def test_stripe_once_applies_to_one_invoice_only() -> None:
    # duration "once": the discount applies to a single invoice
    # https://docs.stripe.com/billing/subscriptions/coupons
    subject = discounts(coupon("welcome", amount_off=usd(500), duration="once"))
    assert [taken(lines) for lines in bill(subject, usd(4900), usd(4900))] == [500, 0]
    assert subject.coupons[0].is_spent()


def test_stripe_repeating_applies_for_its_number_of_periods() -> None:
    # duration "repeating" with duration_in_months 3: three monthly invoices, then none
    # https://docs.stripe.com/billing/subscriptions/coupons
    subject = discounts(coupon("q1", percent_off=25, duration="repeating", duration_in_periods=3))
    results = bill(subject, *[usd(2000)] * 5)
    assert [taken(lines) for lines in results] == [500, 500, 500, 0, 0]
    assert subject.coupons[0].periods_remaining() == 0


def test_stripe_an_amount_off_larger_than_the_invoice_is_capped_and_the_rest_is_lost() -> None:
    # An amount-off coupon larger than the invoice does not create a balance, and a zero-cost
    # invoice does not use the coupon up:
    # https://docs.stripe.com/changelog/2013-10-29/coupons-apply-invoice-total-balance
    subject = discounts(coupon("big", amount_off=usd(5000), duration="once"))
    assert bill(subject, usd(0)) == [[]]  # zero-cost: ignored, not counted
    assert not subject.coupons[0].is_spent()
    first, second = bill(subject, usd(3000), usd(3000))
    assert taken(first) == 3000 and taken(second) == 0  # the other 20.00 is not carried


def test_lago_a_fixed_amount_once_coupon_carries_its_rest_over_several_invoices() -> None:
    # "When the coupon only applies once and its value is higher than the invoice amount, the
    # remaining unused amount will be applied to the following invoices, until the coupon is
    # totally consumed": https://docs.getlago.com/guide/coupons (a 50.00 USD "startup_deal")
    subject = discounts(
        coupon("startup-deal", amount_off=usd(5000), duration="once", carry_forward=True)
    )
    results = bill(subject, usd(2000), usd(2000), usd(2000), usd(2000))
    assert [taken(lines) for lines in results] == [2000, 2000, 1000, 0]
    entry = subject.coupons[0]
    assert entry.carried_forward == usd(0) and entry.is_spent()
    assert entry.discounted == usd(5000) and entry.invoices_applied == 3


def test_lago_applied_coupon_remaining_amount() -> None:
    # The applied coupon object shows amount_cents 2000 with amount_cents_remaining 50:
    # https://docs.getlago.com/api-reference/coupons/applied-coupon-object
    subject = discounts(
        coupon("startup-deal", amount_off=eur(2000), duration="once", carry_forward=True),
        currency="EUR",
    )
    [lines] = bill(subject, eur(1950))
    assert taken(lines) == 1950
    assert subject.coupons[0].carried_forward == eur(50)
    [lines] = bill(subject, eur(9900))
    assert taken(lines) == 50 and subject.coupons[0].is_spent()


def test_lago_a_recurring_fixed_amount_loses_the_rest_every_period() -> None:
    # "When the coupon is recurring and its value is higher than the invoice amount, any
    # remaining unused amount will be lost": https://docs.getlago.com/guide/coupons
    subject = discounts(
        coupon("monthly", amount_off=usd(5000), duration="repeating", duration_in_periods=2)
    )
    results = bill(subject, usd(3000), usd(3000), usd(3000))
    assert [taken(lines) for lines in results] == [3000, 3000, 0]


def test_lago_several_coupons_first_applied_first() -> None:
    # "the coupon that was applied first will be deducted first":
    # https://getlago.com/changelog/coupons-v3
    subject = discounts(
        coupon("older", amount_off=usd(3000), duration="once"),
        coupon("newer", amount_off=usd(3000), duration="once"),
    )
    [lines] = bill(subject, usd(4000))
    assert [(line.code, line.amount) for line in lines] == [
        ("older", usd(3000)),
        ("newer", usd(1000)),
    ]


def test_recurly_percent_first_then_amounts_and_a_fully_discounted_coupon_stays_unused() -> None:
    # "Apply percentage first" in order of redemption, then fixed amounts; "Once the line item
    # is fully discounted, we will no longer apply coupon discounts" and an unused coupon
    # "remains active and unused until the next invoice":
    # https://docs.recurly.com/docs/multiple-coupons-per-account
    subject = discounts(
        coupon("five", amount_off=usd(500), duration="once"),
        coupon("free-month", percent_off=100, duration="once"),
    )
    first, second = bill(subject, usd(2000), usd(2000))
    assert [(line.code, line.amount) for line in first] == [("free-month", usd(2000))]
    assert [(line.code, line.amount) for line in second] == [("five", usd(500))]


def test_commerce7_two_percents_compound() -> None:
    # 20% then 10% on $100: $80, then $72:
    # https://documentation.commerce7.com/how-are-discounts-calculated-when-multiple-promotions-and-coupons-are-applied-to-the-same-order
    subject = discounts(
        coupon("club", percent_off=20, duration="forever"),
        coupon("extra", percent_off=10, duration="forever"),
    )
    [lines] = bill(subject, usd(10000))
    assert [line.amount for line in lines] == [usd(2000), usd(800)]
    assert 10000 - taken(lines) == 7200


def test_lago_coupons_come_off_before_tax() -> None:
    # subscriptions 50 + usage 20 = 70, a 10 coupon off that net before tax:
    # https://getlago.com/changelog/nvoice-calculation-method and
    # https://getlago.com/changelog/coupons-before-tax
    subject = discounts(coupon("ten", amount_off=usd(1000), duration="once"))
    [lines] = bill(subject, usd(5000) + usd(2000))
    net = usd(7000) - usd(taken(lines))
    assert net == usd(6000)
    assert net.scale(Fraction(10, 100)) == usd(600)  # a 10 % tax on the discounted net


def test_a_decimal_percent_and_zero_decimal_currencies_round_once_half_up() -> None:
    subject = discounts(coupon("spring", percent_off="12.5", duration="forever"))
    [lines] = bill(subject, usd(999))
    assert lines[0].amount == usd(125) and lines[0].description == "spring (12.5% off)"
    yen = discounts(coupon("yen", percent_off=15, duration="forever"), currency="JPY")
    [lines] = bill(yen, Money(amount=999, currency="JPY"))
    assert lines[0].amount == Money(amount=150, currency="JPY")  # 149.85 -> 150


# --- rules ---


def test_a_proration_credit_invoice_takes_no_discount_and_consumes_nothing() -> None:
    subject = discounts(
        coupon("once", percent_off=10, duration="once"),
        coupon("carry", amount_off=usd(500), duration="once", carry_forward=True),
    )
    subject.collect_events()
    assert subject.apply(uuid4(), usd(-800), cause()) == []
    assert subject.apply(uuid4(), usd(0), cause()) == []
    assert subject.pending_events == []
    [lines] = bill(subject, usd(1000))
    assert [(line.code, line.amount) for line in lines] == [("once", usd(100)), ("carry", usd(500))]


def test_preview_records_nothing_and_matches_apply() -> None:
    subject = discounts(
        coupon("pct", percent_off="7.5", duration="repeating", duration_in_periods=2),
        coupon("carry", amount_off=usd(1500), duration="once", carry_forward=True),
    )
    subject.collect_events()
    version = subject.version
    preview = subject.preview(usd(1234))
    assert subject.pending_events == [] and subject.version == version
    assert subject.apply(uuid4(), usd(1234), cause()) == preview
    assert [type(e) for e in subject.collect_events()] == [DiscountApplied, DiscountApplied]


def test_apply_is_idempotent_per_invoice() -> None:
    subject = discounts(coupon("once", amount_off=usd(700), duration="once"))
    invoice_id = uuid4()
    first = subject.apply(invoice_id, usd(1000), cause())
    subject.collect_events()
    again = subject.apply(invoice_id, usd(5000), cause())
    assert again == first and subject.pending_events == []
    assert subject.recorded_lines(invoice_id) == first
    assert subject.recorded_lines(uuid4()) == []


def test_lines_name_the_events_behind_them() -> None:
    opened = SubscriptionDiscounts.open("acme", "t1", SUBSCRIPTION, "USD", cause())
    redemption = uuid4()
    attached = opened.attach(
        coupon("save20", percent_off=20).terms(), cause(), redemption_event_id=redemption
    )
    [line] = opened.preview(usd(5000))
    assert line == DiscountLine(
        code="save20",
        description="save20 (20% off)",
        amount=usd(1000),
        source_event_ids=[str(attached.event_id), str(redemption)],
    )


def test_attach_refuses_the_same_code_twice_and_another_currency() -> None:
    subject = discounts(coupon("once", percent_off=10))
    with pytest.raises(CouponAlreadyAttached) as twice:
        subject.attach(coupon("once", percent_off=10).terms(), cause())
    assert twice.value.field == "code" and twice.value.code == "coupon_already_attached"
    with pytest.raises(CurrencyMismatch) as other:
        subject.attach(coupon("euros", amount_off=eur(500)).terms(), cause())
    assert other.value.field == "code"
    assert [c.code for c in subject.coupons] == ["once"]
    with pytest.raises(CurrencyMismatch):
        subject.preview(eur(1000))


def test_events_and_snapshots_round_trip() -> None:
    subject = discounts(
        coupon("pct", percent_off="12.5", duration="forever"),
        coupon("carry", amount_off=usd(900), duration="once", carry_forward=True),
    )
    bill(subject, usd(1000), usd(1000))
    events = subject.collect_events()
    stored = [encode_event_state(e) for e in events]
    loaded = [
        decode_event(type(e).NAME, e.originator_id, e.originator_version, s)
        for e, s in zip(events, stored, strict=True)
    ]
    assert loaded == events
    replayed = _replay(loaded)
    assert replayed.state == subject.state
    restored = Snapshot.take(subject).mutate(None)
    assert isinstance(restored, SubscriptionDiscounts) and restored.state == subject.state
    assert subject.id == subscription_discounts_id("acme", SUBSCRIPTION)


def _replay(events: list[DomainEvent]) -> SubscriptionDiscounts:
    aggregate = events[0].mutate(None)
    for event in events[1:]:
        event.mutate(aggregate)
        aggregate.version = event.originator_version
    assert isinstance(aggregate, SubscriptionDiscounts)
    return aggregate


# --- properties ---

TERMS = st.one_of(
    st.builds(
        lambda p, d, n: {"percent_off": p, "duration": d, "duration_in_periods": n},
        st.one_of(st.integers(1, 100), st.decimals("0.01", "100", places=2).map(str)),
        st.sampled_from(["once", "forever"]),
        st.none(),
    ),
    st.builds(
        lambda p, n: {"percent_off": p, "duration": "repeating", "duration_in_periods": n},
        st.integers(1, 100),
        st.integers(1, 4),
    ),
    st.builds(
        lambda a, d, n: {"amount_off": usd(a), "duration": d, "duration_in_periods": n},
        st.integers(1, 30000),
        st.sampled_from(["once", "forever"]),
        st.none(),
    ),
    st.builds(
        lambda a, n: {"amount_off": usd(a), "duration": "repeating", "duration_in_periods": n},
        st.integers(1, 30000),
        st.integers(1, 4),
    ),
    st.builds(
        lambda a: {"amount_off": usd(a), "duration": "once", "carry_forward": True},
        st.integers(1, 60000),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(TERMS, min_size=1, max_size=4), st.lists(st.integers(-5000, 20000), max_size=12))
def test_discounts_never_exceed_the_subtotals_nor_a_carried_amount(
    terms: list[dict[str, Any]], subtotals: list[int]
) -> None:
    coupons = [coupon(f"c{i}", **each) for i, each in enumerate(terms)]
    subject = discounts(*coupons)
    given_by: dict[str, int] = {c.code: 0 for c in coupons}
    invoices_by: dict[str, int] = {c.code: 0 for c in coupons}
    total = 0
    for amount in subtotals:
        preview = subject.preview(usd(amount))
        lines = subject.apply(uuid4(), usd(amount), cause())
        assert lines == preview
        assert all(line.amount.amount > 0 for line in lines)
        assert taken(lines) <= max(amount, 0)  # never below zero, nothing off a credit
        for line in lines:
            given_by[line.code] += line.amount.amount
            invoices_by[line.code] += 1
        total += taken(lines)
    assert total <= sum(max(amount, 0) for amount in subtotals)
    for each in coupons:
        terms_of = each.terms()
        if terms_of.carry_forward:
            assert terms_of.amount_off is not None
            assert given_by[each.code] <= terms_of.amount_off.amount
        elif terms_of.duration is CouponDuration.ONCE:
            assert invoices_by[each.code] <= 1
        elif terms_of.duration is CouponDuration.REPEATING:
            assert invoices_by[each.code] <= (terms_of.duration_in_periods or 0)
    for entry in subject.coupons:
        assert entry.discounted.amount == given_by[entry.code]
        assert entry.invoices_applied == invoices_by[entry.code]
    assert _replay(subject.collect_events()).state == subject.state


# --- the attach command on the embedded store ---

PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 4900, "currency": "USD"},
}


@pytest.fixture
def tally() -> Iterator[System]:
    system = embedded_system(SettableClock(T0))
    try:
        ok(system.dispatch("define_plan", {"app_id": "acme", **PLAN}))
        yield system
    finally:
        system.close()


def start(tally: System, tenant: str, **extra: Any) -> dict[str, Any]:
    return tally.dispatch(
        "start_subscription", {"app_id": "acme", "tenant_id": tenant, "plan_key": "pro", **extra}
    )


def create(tally: System, code: str, **terms: Any) -> None:
    ok(tally.dispatch("create_coupon", {"app_id": "acme", "code": code, **terms}))


def attach(tally: System, subscription_id: str, code: str) -> dict[str, Any]:
    return tally.dispatch(
        "attach_coupon", {"app_id": "acme", "subscription_id": subscription_id, "code": code}
    )


def test_attach_redeems_and_attaches_in_one_unit_of_work(tally: System) -> None:
    create(tally, "save20", percent_off="20", duration="repeating", duration_in_periods=3)
    sid = ok(start(tally, "t1"))["subscription_id"]
    result = ok(attach(tally, sid, "save20"))
    assert result["subscription_id"] == sid and result["currency"] == "USD"
    [entry] = result["coupons"]
    assert entry["code"] == "save20" and entry["description"] == "save20 (20% off)"
    assert entry["periods_remaining"] == 3 and entry["active"] is True
    found = tally.aggregate(coupon_id("acme", "save20"))
    assert found.state.redeemed_by == {"t1": UUID(sid)}
    discounts_of = tally.aggregate(subscription_discounts_id("acme", UUID(sid)))
    assert isinstance(discounts_of, SubscriptionDiscounts)
    [line] = discounts_of.preview(usd(4900))
    assert line.amount == usd(980)
    attached = [e for e in _events(tally, discounts_of.id) if isinstance(e, CouponAttached)]
    redeemed = [e for e in _events(tally, found.id) if isinstance(e, CouponRedeemed)]
    assert line.source_event_ids == [str(attached[0].event_id), str(redeemed[0].event_id)]
    twice = attach(tally, sid, "save20")["error"]
    assert twice["code"] == "coupon_already_attached" and twice["details"][0]["field"] == "code"


def _events(tally: System, aggregate_id: UUID) -> list[Any]:
    return list(tally.ledger.repository.event_store.get(aggregate_id))


def test_an_attached_coupon_outlives_its_validity_window_and_a_deactivation(tally: System) -> None:
    # "If you set a coupon to last forever when used by a customer, but have it expire on
    # January 1st, any customer given that coupon will have that coupon's discount forever":
    # https://stripe.com/docs/billing/subscriptions/discounts
    create(tally, "launch", percent_off=10, duration="forever", valid_until="2026-01-02T00:00:00Z")
    sid = ok(start(tally, "t1"))["subscription_id"]
    ok(attach(tally, sid, "launch"))
    assert isinstance(tally.clock, SettableClock)
    tally.clock.advance(timedelta(days=40))
    ok(tally.dispatch("deactivate_coupon", {"app_id": "acme", "code": "launch"}))
    late = ok(start(tally, "t2"))["subscription_id"]
    refused = attach(tally, late, "launch")["error"]
    assert refused["code"] == "coupon_not_redeemable"
    discounts_of = tally.aggregate(subscription_discounts_id("acme", UUID(sid)))
    assert [line.amount for line in discounts_of.preview(usd(4900))] == [usd(490)]


def test_a_coupon_in_another_currency_is_refused_naming_the_field(tally: System) -> None:
    create(tally, "euros", amount_off={"amount": 500, "currency": "EUR"})
    sid = ok(start(tally, "t1"))["subscription_id"]
    refused = attach(tally, sid, "euros")["error"]
    assert refused["code"] == "currency_mismatch"
    assert refused["details"][0]["field"] == "code"
    assert refused["details"][0]["coupon_currency"] == "EUR"
    assert tally.aggregate(coupon_id("acme", "euros")).redemption_count == 0  # nothing written
    assert tally.aggregate(subscription_discounts_id("acme", UUID(sid))) is None
    at_start = start(tally, "t2", coupon="euros")["error"]
    assert at_start["code"] == "currency_mismatch" and at_start["details"][0]["field"] == "coupon"


def test_attach_names_unknown_coupons_and_subscriptions(tally: System) -> None:
    sid = ok(start(tally, "t1"))["subscription_id"]
    missing = attach(tally, sid, "nope")["error"]
    assert missing["code"] == "not_found" and missing["details"] == [{"field": "code"}]
    create(tally, "ok", percent_off=5)
    stranger = attach(tally, str(uuid4()), "ok")["error"]
    assert stranger["code"] == "not_found" and stranger["details"] == [{"field": "subscription_id"}]
    other_app = tally.dispatch(
        "attach_coupon", {"app_id": "globex", "subscription_id": sid, "code": "ok"}
    )["error"]
    assert other_app["code"] == "not_found"
    ok(tally.dispatch("cancel_subscription", {"app_id": "acme", "subscription_id": sid}))
    ended = attach(tally, sid, "ok")["error"]
    assert ended["code"] == "invalid_transition"
    assert ended["details"][0]["field"] == "subscription_id"


def test_start_with_a_coupon_attaches_it_and_a_bad_coupon_refuses_the_whole_start(
    tally: System,
) -> None:
    create(tally, "one-left", percent_off=15, max_redemptions=1)
    started = ok(start(tally, "t1", coupon="one-left"))
    assert [c["code"] for c in started["coupons"]] == ["one-left"]
    sid = UUID(started["subscription_id"])
    assert tally.aggregate(subscription_discounts_id("acme", sid)).coupons[0].code == "one-left"
    assert "coupons" not in ok(start(tally, "t3"))  # without a coupon: the usual reply
    chosen = uuid4()
    refused = start(tally, "t2", coupon="one-left", subscription_id=str(chosen))["error"]
    assert refused["code"] == "coupon_not_redeemable"
    assert refused["details"][0]["field"] == "coupon"
    assert tally.aggregate(chosen) is None  # no subscription, no slot, no quota: nothing
    unknown = start(tally, "t2", coupon="nope", subscription_id=str(chosen))["error"]
    assert unknown["code"] == "not_found" and unknown["details"] == [{"field": "coupon"}]
    assert ok(start(tally, "t2", subscription_id=str(chosen)))["subscription_id"] == str(chosen)


def test_two_racing_attaches_never_pass_the_cap(tally: System) -> None:
    """Both decide on the coupon at the same version; the second commit collides."""
    create(tally, "last", amount_off={"amount": 1000, "currency": "USD"}, max_redemptions=1)
    first = UUID(ok(start(tally, "t1"))["subscription_id"])
    second = UUID(ok(start(tally, "t2"))["subscription_id"])
    racing = [UnitOfWork(tally.ledger, Cause(occurred_at=T0)) for _ in range(2)]
    for uow, sid in zip(racing, (first, second), strict=True):
        attach_coupon(AttachCoupon(app_id="acme", subscription_id=sid, code="last"), uow)
    racing[0].commit()
    with pytest.raises(IntegrityError):
        racing[1].commit()
    assert tally.aggregate(coupon_id("acme", "last")).redemption_count == 1
    assert tally.aggregate(subscription_discounts_id("acme", second)) is None  # all or nothing
    again = attach(tally, str(second), "last")["error"]  # the loser decides again: refused
    assert again["code"] == "coupon_not_redeemable"


def test_concurrent_attaches_through_the_bus_stop_exactly_at_the_cap(tally: System) -> None:
    create(tally, "first3", percent_off=30, max_redemptions=3)
    sids = [UUID(ok(start(tally, f"t{i}"))["subscription_id"]) for i in range(8)]

    def run(sid: UUID) -> str:
        try:
            tally.handle(AttachCoupon(app_id="acme", subscription_id=sid, code="first3"))
        except DomainError as error:
            return error.code
        return "ok"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(run, sids))
    assert outcomes.count("ok") == 3
    assert outcomes.count("coupon_not_redeemable") == 5
    attached = [
        sid for sid in sids if tally.aggregate(subscription_discounts_id("acme", sid)) is not None
    ]
    assert len(attached) == 3 == tally.aggregate(coupon_id("acme", "first3")).redemption_count
