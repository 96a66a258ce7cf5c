from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.errors import CurrencyMismatch, InvalidValue, MoneyOverflow
from domain.money import MAX_MINOR, Money, round_half_up

amounts = st.integers(min_value=-(10**15), max_value=10**15)
currencies = st.sampled_from(["USD", "EUR", "JPY", "KWD"])


def usd(amount: int) -> Money:
    return Money(amount=amount, currency="USD")


@given(amounts, amounts, amounts, currencies)
def test_addition_is_associative_and_commutative(a: int, b: int, c: int, cur: str) -> None:
    x, y, z = (
        Money(amount=a, currency=cur),
        Money(amount=b, currency=cur),
        Money(amount=c, currency=cur),
    )
    assert (x + y) + z == x + (y + z)
    assert x + y == y + x


@given(amounts, currencies)
def test_zero_is_identity_and_negation_inverts(a: int, cur: str) -> None:
    x = Money(amount=a, currency=cur)
    assert x + Money.zero(cur) == x
    assert x + (-x) == Money.zero(cur)
    assert x - x == Money.zero(cur)


@given(amounts, st.integers(min_value=-1000, max_value=1000))
def test_whole_multiplication_distributes(a: int, k: int) -> None:
    assert usd(a) * k == usd(a * k)
    assert usd(a) * (k + 1) == usd(a) * k + usd(a)


def test_mixed_currencies_are_refused() -> None:
    with pytest.raises(CurrencyMismatch):
        usd(1) + Money(amount=1, currency="EUR")
    with pytest.raises(CurrencyMismatch):
        _ = usd(1) < Money(amount=2, currency="EUR")


def test_overflow_is_refused() -> None:
    with pytest.raises(MoneyOverflow):
        usd(MAX_MINOR) + usd(1)
    with pytest.raises(MoneyOverflow):
        usd(MAX_MINOR) * 2
    with pytest.raises(ValidationError):
        usd(MAX_MINOR + 1)


def test_floats_and_unknown_currencies_are_refused() -> None:
    with pytest.raises(ValidationError):
        Money(amount=1.5, currency="USD")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="ISO 4217"):
        Money(amount=1, currency="usd")
    with pytest.raises(ValidationError):
        Money(amount=1, currency="XYZ")
    with pytest.raises(InvalidValue):
        usd(1) * 1.5  # type: ignore[operator]


def test_zero_decimal_and_three_decimal_currencies() -> None:
    assert Money.from_decimal("1500", "JPY") == Money(amount=1500, currency="JPY")
    assert Money(amount=1500, currency="JPY").format() == "1500 JPY"
    assert Money.from_decimal("1.234", "KWD").amount == 1234
    assert Money.from_decimal("12.34", "USD").amount == 1234
    with pytest.raises(InvalidValue):
        Money.from_decimal("12.5", "JPY")
    assert Money(amount=1234, currency="USD").to_decimal() == Decimal("12.34")


def test_scale_rounds_half_up_once() -> None:
    assert usd(5).scale(Fraction(1, 2)) == usd(3)
    assert usd(-5).scale(Fraction(1, 2)) == usd(-3)
    assert usd(1000).scale(Fraction(1, 3)) == usd(333)
    assert usd(1999).scale(Decimal("0.15")) == usd(300)  # 299.85 -> 300


@given(st.integers(min_value=-(10**9), max_value=10**9), st.integers(min_value=1, max_value=10**6))
def test_round_half_up_is_within_half(numerator: int, denominator: int) -> None:
    value = Fraction(numerator, denominator)
    rounded = round_half_up(value)
    assert abs(rounded - value) <= Fraction(1, 2)
    if abs(rounded - value) == Fraction(1, 2):
        assert abs(rounded) > abs(value)


def test_ordering() -> None:
    assert usd(1) < usd(2) <= usd(2) < usd(3)
    assert usd(3) > usd(2) >= usd(2)
