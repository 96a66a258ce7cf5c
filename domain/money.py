"""Money: integer minor units plus an ISO 4217 currency; never a float."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Self

from pydantic import ConfigDict, field_validator

from domain.errors import CurrencyMismatch, InvalidValue, MoneyOverflow
from domain.value import FrozenValue

MAX_MINOR = 2**63 - 1  # fits a PostgreSQL bigint

_THREE = "BHD IQD JOD KWD LYD OMR TND"
_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_FOUR = "CLF UYW"
_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD "
    "FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD "
    "KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD "
    "NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
    "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED "
    "VES WST XCD YER ZAR ZMW ZWG"
)
CURRENCY_EXPONENTS: dict[str, int] = {
    **{c: 2 for c in _TWO.split()},
    **{c: 0 for c in _ZERO.split()},
    **{c: 3 for c in _THREE.split()},
    **{c: 4 for c in _FOUR.split()},
}


def validate_currency(code: str) -> str:
    """Return the ISO 4217 code, or raise naming the rule."""
    if code not in CURRENCY_EXPONENTS:
        raise InvalidValue(
            f"currency must be an ISO 4217 code in upper case, got {code!r}", field="currency"
        )
    return code


def round_half_up(value: Fraction) -> int:
    """Round an exact fraction to the nearest integer, halves away from zero."""
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    whole, rest = divmod(magnitude.numerator, magnitude.denominator)
    if 2 * rest >= magnitude.denominator:
        whole += 1
    return sign * whole


class Money(FrozenValue):
    """An exact amount: `amount` minor units (cents, yen...) of `currency`."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    amount: int
    currency: str

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return validate_currency(value)

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: int) -> int:
        return _checked(value)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(amount=0, currency=currency)

    @classmethod
    def of(cls, amount: int, currency: str) -> Money:
        return cls(amount=amount, currency=currency)

    @classmethod
    def from_decimal(cls, value: Decimal | str, currency: str) -> Money:
        """Parse a major-unit amount ("12.34" USD -> 1234); refuses excess precision."""
        exponent = CURRENCY_EXPONENTS[validate_currency(currency)]
        scaled = Decimal(value).scaleb(exponent)
        if scaled != scaled.to_integral_value():
            raise InvalidValue(
                f"{currency} has {exponent} decimal places, got {value}", field="amount"
            )
        return cls(amount=int(scaled), currency=currency)

    @property
    def exponent(self) -> int:
        return CURRENCY_EXPONENTS[self.currency]

    def to_decimal(self) -> Decimal:
        return Decimal(self.amount).scaleb(-self.exponent)

    def format(self) -> str:
        return f"{self.to_decimal():.{self.exponent}f} {self.currency}"

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise InvalidValue("money can only be combined with money", field="amount")
        if other.currency != self.currency:
            raise CurrencyMismatch(
                f"cannot combine {self.currency} with {other.currency}", field="currency"
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(amount=_checked(self.amount + other.amount), currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(amount=_checked(self.amount - other.amount), currency=self.currency)

    def __neg__(self) -> Money:
        return Money(amount=_checked(-self.amount), currency=self.currency)

    def __mul__(self, factor: int) -> Money:
        if isinstance(factor, bool) or not isinstance(factor, int):
            raise InvalidValue("money is multiplied by whole numbers only; use scale()")
        return Money(amount=_checked(self.amount * factor), currency=self.currency)

    __rmul__ = __mul__

    def scale(self, ratio: Fraction | Decimal | int) -> Money:
        """Multiply by an exact ratio, rounding once, half-up (for percents, proration)."""
        exact = Fraction(self.amount) * Fraction(ratio)
        return Money(amount=_checked(round_half_up(exact)), currency=self.currency)

    def _cmp(self, other: Money) -> tuple[int, int]:
        self._same(other)
        return self.amount, other.amount

    def __lt__(self, other: Money) -> bool:
        a, b = self._cmp(other)
        return a < b

    def __le__(self, other: Money) -> bool:
        a, b = self._cmp(other)
        return a <= b

    def __gt__(self, other: Money) -> bool:
        a, b = self._cmp(other)
        return a > b

    def __ge__(self, other: Money) -> bool:
        a, b = self._cmp(other)
        return a >= b

    def is_zero(self) -> bool:
        return self.amount == 0

    def __str__(self) -> str:
        return self.format()

    def with_amount(self, amount: int) -> Self:
        return type(self)(amount=amount, currency=self.currency)


def _checked(amount: int) -> int:
    if not -MAX_MINOR <= amount <= MAX_MINOR:
        raise MoneyOverflow("amount is outside the signed 64-bit range", field="amount")
    return amount
