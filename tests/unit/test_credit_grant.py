"""Prepaid credit grants (domain/credit_grant.py): the draw order, expiry, void, and the
properties (hypothesis): a grant never goes below zero, never gives more than was granted,
its remaining is always the sum of its movements, a draw never exceeds what was asked.

Worked examples: Stripe credit grants ("priority ... 0 is the highest", drawn by priority,
then the earliest expiry, then the oldest:
https://docs.stripe.com/billing/subscriptions/usage-based/billing-credits) and Lago wallets
(a $25 invoice on a wallet holding $10: $10 of credits applied, $15 left to pay, the wallet at
zero: https://docs.getlago.com/guide/wallet-and-prepaid-credits).
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.base import Cause
from domain.credit_grant import (
    CreditDrawn,
    CreditExpired,
    CreditGranted,
    CreditMovement,
    CreditReinstated,
    CreditVoided,
    TenantCredits,
)
from domain.errors import InvalidTransition, InvalidValue, NotFound
from domain.money import Money
from tests.factories import T0


def cause(days: float = 0) -> Cause:
    return Cause(occurred_at=T0 + timedelta(days=days), actor="ops@acme")


def usd(amount: int) -> Money:
    return Money.of(amount, "USD")


def ledger() -> TenantCredits:
    return TenantCredits.open("acme", "t1", cause())


def test_draws_by_priority_then_earliest_expiry_then_oldest() -> None:
    credits = ledger()
    late = credits.grant(usd(100), cause(), priority=10, reason="no expiry")
    older = credits.grant(
        usd(100), cause(), priority=10, reason="far", expires_at=T0 + timedelta(days=90)
    )
    soon = credits.grant(
        usd(100), cause(), priority=10, reason="soon", expires_at=T0 + timedelta(days=30)
    )
    first = credits.grant(usd(100), cause(), priority=0, reason="promo")
    twin = credits.grant(usd(100), cause(), priority=0, reason="promo, newer")
    credits.collect_events()
    invoice = uuid4()
    assert credits.draw(usd(450), cause(1), invoice_id=invoice) == usd(450)
    drawn = [e for e in credits.collect_events() if isinstance(e, CreditDrawn)]
    assert [(e.grant_id, -e.amount.amount) for e in drawn] == [
        (first.grant_id, 100),
        (twin.grant_id, 100),
        (soon.grant_id, 100),
        (older.grant_id, 100),
        (late.grant_id, 50),
    ]
    assert all(e.invoice_id == invoice for e in drawn)
    assert credits.grant_of(late.grant_id).remaining == usd(50)
    assert credits.balances() == {"USD": usd(50)}


def test_lago_wallet_example_draws_only_what_is_there() -> None:
    credits = ledger()
    credits.grant(usd(1000), cause(), priority=50, reason="wallet top-up")
    assert credits.draw(usd(2500), cause(1), invoice_id=uuid4()) == usd(1000)  # $15 left to pay
    assert credits.balances() == {}
    assert credits.draw(usd(2500), cause(2), invoice_id=uuid4()) == usd(0)


def test_only_grants_in_the_invoice_currency_are_drawn() -> None:
    credits = ledger()
    credits.grant(Money.of(500, "EUR"), cause(), priority=0, reason="eur")
    credits.grant(usd(300), cause(), priority=90, reason="usd")
    assert credits.draw(usd(1000), cause(1), invoice_id=uuid4()) == usd(300)
    assert credits.balances() == {"EUR": Money.of(500, "EUR")}


def test_a_grant_past_its_expiry_lapses_before_a_draw() -> None:
    credits = ledger()
    gone = credits.grant(
        usd(300), cause(), priority=0, reason="trial", expires_at=T0 + timedelta(days=5)
    )
    credits.grant(usd(200), cause(), priority=50, reason="paid")
    credits.collect_events()
    assert credits.available("USD", T0 + timedelta(days=6)) == usd(200)
    assert credits.draw(usd(1000), cause(6), invoice_id=uuid4()) == usd(200)
    events = credits.collect_events()
    expired = [e for e in events if isinstance(e, CreditExpired)]
    assert [(e.grant_id, e.amount) for e in expired] == [(gone.grant_id, usd(-300))]
    assert credits.grant_of(gone.grant_id).status == "expired"


def test_expiry_by_the_clock_and_void() -> None:
    credits = ledger()
    soon = credits.grant(
        usd(300), cause(), priority=0, reason="a", expires_at=T0 + timedelta(days=5)
    )
    kept = credits.grant(usd(200), cause(), priority=0, reason="b")
    assert credits.due_expiry() == T0 + timedelta(days=5)
    assert credits.expire_due(cause(4)) == []
    assert [g.grant_id for g in credits.expire_due(cause(5))] == [soon.grant_id]
    assert credits.due_expiry() is None
    credits.draw(usd(50), cause(6), invoice_id=uuid4())
    voided = credits.void(kept.grant_id, cause(7), reason="goodwill ended")
    assert (voided.status, voided.remaining) == ("voided", usd(0))
    last = credits.collect_events()[-1]
    assert isinstance(last, CreditVoided) and last.amount == usd(-150) and last.balance == usd(0)
    with pytest.raises(InvalidTransition):
        credits.void(kept.grant_id, cause(8), reason="again")
    with pytest.raises(InvalidTransition):
        credits.void(soon.grant_id, cause(8), reason="expired already")
    with pytest.raises(NotFound):
        credits.void(uuid4(), cause(8), reason="unknown")


@pytest.mark.parametrize(
    ("amount", "priority", "expires_in", "field"),
    [
        (0, 0, None, "amount"),
        (-5, 0, None, "amount"),
        (100, -1, None, "priority"),
        (100, 101, None, "priority"),
        (100, 0, 0, "expires_at"),
        (100, 0, -1, "expires_at"),
    ],
)
def test_bad_terms_name_the_field(
    amount: int, priority: int, expires_in: int | None, field: str
) -> None:
    expires = None if expires_in is None else T0 + timedelta(days=expires_in)
    with pytest.raises(InvalidValue) as raised:
        ledger().grant(usd(amount), cause(), priority=priority, reason="x", expires_at=expires)
    assert raised.value.field == field


ACTIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("grant"),
            st.integers(1, 10_000),
            st.integers(0, 100),
            st.none() | st.integers(1, 60),
        ),
        st.tuples(st.just("draw"), st.integers(0, 20_000), st.just(0), st.none()),
        st.tuples(st.just("void"), st.integers(0, 20), st.just(0), st.none()),
        st.tuples(st.just("tick"), st.integers(1, 20), st.just(0), st.none()),
        st.tuples(st.just("void_invoice"), st.integers(0, 20), st.just(0), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ACTIONS)
def test_never_negative_never_more_than_granted_and_the_sum_of_movements(
    actions: list[tuple[str, int, int, int | None]],
) -> None:
    credits, day = ledger(), 0
    moved: dict[str, int] = {}
    invoices: list[UUID] = []
    for action, value, priority, expires in actions:
        if action == "grant":
            at = None if expires is None else T0 + timedelta(days=day + expires)
            credits.grant(usd(value), cause(day), priority=priority, reason="p", expires_at=at)
        elif action == "draw":
            before = credits.available("USD", T0 + timedelta(days=day))
            invoices.append(uuid4())
            drawn = credits.draw(usd(value), cause(day), invoice_id=invoices[-1])
            assert drawn == min(usd(value), before)
        elif action == "void_invoice":
            if invoices:
                voided = invoices.pop(value % len(invoices))
                credits.reinstate(voided, cause(day))
                assert credits.reinstate(voided, cause(day)) is None  # once
        elif action == "void":
            grant = credits.grants()[value % len(credits.grants())] if credits.grants() else None
            if grant is not None and grant.status not in ("expired", "voided"):
                credits.void(grant.grant_id, cause(day), reason="v")
        else:
            day += value
        for event in credits.collect_events():
            if isinstance(event, CreditMovement):
                key = str(event.grant_id)
                moved[key] = moved.get(key, 0) + event.amount.amount
                assert event.remaining.amount == moved[key]
                assert event.balance.amount >= 0
    total = 0
    for grant in credits.grants():
        assert 0 <= grant.remaining.amount <= grant.amount.amount
        assert grant.remaining.amount == moved[str(grant.grant_id)]
        total += grant.remaining.amount if grant.usable else 0
    assert credits.balances().get("USD", usd(0)) == usd(total)


def test_granted_event_carries_the_actor_and_terms() -> None:
    credits = ledger()
    credits.grant(
        usd(100), cause(), priority=7, reason="refund goodwill", expires_at=T0 + timedelta(days=1)
    )
    granted = [e for e in credits.collect_events() if isinstance(e, CreditGranted)]
    assert [(e.actor, e.priority, e.reason, e.amount, e.remaining, e.balance) for e in granted] == [
        ("ops@acme", 7, "refund goodwill", usd(100), usd(100), usd(100))
    ]


def test_a_voided_invoice_gives_back_what_it_drew_except_to_lapsed_grants() -> None:
    """Stripe reinstates the billing credits a voided invoice had used."""
    credits = ledger()
    lapsing = credits.grant(
        usd(300), cause(), priority=0, reason="a", expires_at=T0 + timedelta(days=5)
    )
    kept = credits.grant(usd(500), cause(), priority=1, reason="b")
    invoice = uuid4()
    assert credits.draw(usd(700), cause(1), invoice_id=invoice) == usd(700)
    assert credits.balances() == {"USD": usd(100)}
    credits.collect_events()
    assert credits.reinstate(invoice, cause(6)) == usd(400)  # the first is past its expiry
    back = [e for e in credits.collect_events() if isinstance(e, CreditReinstated)]
    assert [(e.grant_id, e.amount, e.remaining, e.balance) for e in back] == [
        (kept.grant_id, usd(400), usd(500), usd(500))
    ]
    lapsed = credits.grant_of(lapsing.grant_id)
    assert (lapsed.status, lapsed.remaining) == ("depleted", usd(0))  # nothing came back
    assert credits.grant_of(kept.grant_id).status == "active"
    assert credits.reinstate(invoice, cause(7)) is None
    assert credits.reinstate(uuid4(), cause(7)) is None
