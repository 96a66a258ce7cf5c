"""Tax: an app's rate per country (the TaxRate aggregate), the TaxCalculator port with its
default RateTableTaxCalculator, and allocate_discount (each line's share of a discount, so tax
is computed on the discounted net). Rules, once (docs/tax-and-profiles.md):

- exclusive: tax = net x rate, added to the total;
- inclusive: the net already holds the tax: tax = net - net / (1 + rate); the total does not
  grow (the invoice shows the tax as included);
- one rounding per line, half-up (halves away from zero) to the currency's minor unit; a
  negative net (a proration credit) gets the exact negative of the tax of its positive twin;
- exempt tenants get no tax lines, a country without a rate gets none, reverse-charge tenants
  get one zero line per line saying the recipient accounts for the tax; a zero net gets none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction
from typing import Any, ClassVar, Protocol
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.errors import CurrencyMismatch, InvalidValue
from domain.money import Money
from domain.profile import Country, TaxStatus, validate_country

RATE_PATTERN = re.compile(r"^\d{1,3}(\.\d{1,4})?$")  # Stripe allows 4 decimal places too
REVERSE_CHARGE_TEXT = "Reverse charge: tax to be accounted for by the recipient"
TAX_LABELS = {"AU": "GST", "CA": "GST", "IN": "GST", "NZ": "GST", "SG": "GST", "US": "Sales tax"}
DEFAULT_LABEL = "VAT"


class TaxBehavior(StrEnum):
    EXCLUSIVE = "exclusive"  # tax is added on top of the net
    INCLUSIVE = "inclusive"  # the net already contains the tax


def tax_rate_id(app_id: str, country: str) -> UUID:
    return stable_id("tax_rate", app_id, country)


def canonical_rate_percent(value: str | Decimal) -> str:
    """A percent from 0 to 100 with at most 4 decimals, as "19.0", "7.7", "8.875"."""
    text = format(value, "f") if isinstance(value, Decimal) else str(value).strip()
    try:
        percent = Decimal(text)
    except InvalidOperation:
        percent = Decimal(-1)
    if not RATE_PATTERN.match(text) or not 0 <= percent <= 100:
        raise InvalidValue(
            "rate_percent is a decimal string from 0 to 100 with at most 4 decimals, "
            f'such as "19.0"; got {value!r}',
            field="rate_percent",
        )
    if percent == percent.to_integral_value():
        return f"{int(percent)}.0"
    return format(percent.normalize(), "f")


class TaxRateTerms(BaseModel):
    """One country's rate: a percent (decimal string) and whether prices include it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_percent: str
    behavior: TaxBehavior

    @field_validator("rate_percent", mode="before")
    @classmethod
    def _canonical(cls, value: Any) -> str:
        if not isinstance(value, str | Decimal):
            raise InvalidValue("rate_percent is a decimal string", field="rate_percent")
        return canonical_rate_percent(value)

    @property
    def rate(self) -> Fraction:
        """The exact rate as a fraction (19.0 % -> 19/100)."""
        return Fraction(Decimal(self.rate_percent)) / 100

    def describe(self, country: str) -> str:
        """ "VAT 19% (DE)", or "VAT 19% (DE), included" for an inclusive rate."""
        percent = self.rate_percent.removesuffix(".0")
        label = f"{TAX_LABELS.get(country, DEFAULT_LABEL)} {percent}% ({country})"
        return f"{label}, included" if self.behavior is TaxBehavior.INCLUSIVE else label


class TaxRateState(AggregateState):
    country: str
    rate_percent: str
    behavior: TaxBehavior

    @property
    def terms(self) -> TaxRateTerms:
        return TaxRateTerms(rate_percent=self.rate_percent, behavior=self.behavior)


class TaxRateSet(CreatedEvent):
    """A country's rate was set (the first time creates the TaxRate)."""

    AGGREGATE_TYPE: ClassVar[str] = "tax_rate"
    NAME: ClassVar[str] = "TaxRateSet"
    country: str
    rate_percent: str
    behavior: TaxBehavior

    def mutate(self, aggregate: Any) -> Any:
        if aggregate is None:
            return super().mutate(aggregate)  # CreatedEvent: builds the aggregate
        return DomainEvent.mutate(self, aggregate)

    def apply(self, aggregate: Any) -> None:
        aggregate.state = TaxRateState(
            app_id=self.app_id,
            country=self.country,
            rate_percent=self.rate_percent,
            behavior=self.behavior,
        )


class TaxRate(Aggregate[TaxRateState]):
    """The tax rate an app charges customers of one country."""

    TYPE: ClassVar[str] = "tax_rate"
    State = TaxRateState

    @classmethod
    def create(cls, app_id: str, country: str, terms: TaxRateTerms, cause: Cause) -> TaxRate:
        return cls._create(
            TaxRateSet,
            tax_rate_id(app_id, validate_country(country)),
            cause,
            app_id=app_id,
            country=country,
            rate_percent=terms.rate_percent,
            behavior=terms.behavior,
        )

    @property
    def terms(self) -> TaxRateTerms:
        return self.state.terms

    def change(self, terms: TaxRateTerms, cause: Cause) -> bool:
        """Set a new rate or behavior; the same terms again record nothing (returns False)."""
        if terms == self.terms:
            return False
        self._trigger(
            TaxRateSet,
            cause,
            country=self.state.country,
            rate_percent=terms.rate_percent,
            behavior=terms.behavior,
        )
        return True


class TaxableLine(BaseModel):
    """An invoice line as tax sees it: `net` is its amount after its share of discounts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line_id: str = Field(min_length=1)
    description: str
    net: Money


class TaxRequest(BaseModel):
    """The lines of one invoice (one currency) and the customer tax treats them for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    country: Country
    tax_status: TaxStatus
    lines: list[TaxableLine] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_invoice(self) -> TaxRequest:
        if len({line.net.currency for line in self.lines}) > 1:
            raise CurrencyMismatch("the lines of a tax request share one currency", field="lines")
        if len({line.line_id for line in self.lines}) < len(self.lines):
            raise InvalidValue("line_id values must be unique", field="lines")
        return self


class TaxLine(BaseModel):
    """The tax of one line: `amount` is rounded once; `taxable_amount` excludes the tax."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line_id: str
    country: str
    description: str
    taxable_amount: Money
    rate_percent: str
    behavior: TaxBehavior
    amount: Money
    reverse_charge: bool = False

    @property
    def added_to_total(self) -> Money:
        """What this tax adds to the invoice total: all of it when exclusive, nothing when
        inclusive (the line's net already contains it)."""
        if self.behavior is TaxBehavior.INCLUSIVE:
            return Money.zero(self.amount.currency)
        return self.amount


class TaxCalculator(Protocol):
    """Port: the tax of an invoice's lines for one customer (plugins may replace it)."""

    def tax(self, request: TaxRequest) -> list[TaxLine]: ...


def exclusive_tax(net: Money, rate: Fraction) -> Money:
    """Tax added on top of a net: net x rate, rounded once, half-up."""
    return net.scale(rate)


def inclusive_tax(gross: Money, rate: Fraction) -> Money:
    """Tax contained in an amount: gross - gross / (1 + rate) = gross x rate / (1 + rate)."""
    return gross.scale(rate / (1 + rate))


class RateTableTaxCalculator:
    """The default TaxCalculator: one rate per country, from the app's TaxRate aggregates."""

    def __init__(self, rates: Mapping[str, TaxRateTerms]) -> None:
        self.rates = dict(rates)

    def tax(self, request: TaxRequest) -> list[TaxLine]:
        lines = [line for line in request.lines if not line.net.is_zero()]
        terms = self.rates.get(request.country)
        if request.tax_status is TaxStatus.EXEMPT:
            return []
        if request.tax_status is TaxStatus.REVERSE_CHARGE:
            return [reverse_charge_line(line, request.country, terms) for line in lines]
        if terms is None:
            return []
        return [taxed_line(line, request.country, terms) for line in lines]


def taxed_line(line: TaxableLine, country: str, terms: TaxRateTerms) -> TaxLine:
    if terms.behavior is TaxBehavior.EXCLUSIVE:
        amount = exclusive_tax(line.net, terms.rate)
        taxable = line.net
    else:
        amount = inclusive_tax(line.net, terms.rate)
        taxable = line.net - amount
    return TaxLine(
        line_id=line.line_id,
        country=country,
        description=terms.describe(country),
        taxable_amount=taxable,
        rate_percent=terms.rate_percent,
        behavior=terms.behavior,
        amount=amount,
    )


def reverse_charge_line(line: TaxableLine, country: str, terms: TaxRateTerms | None) -> TaxLine:
    """No tax charged: the customer self-accounts for it; the line carries the legal note."""
    return TaxLine(
        line_id=line.line_id,
        country=country,
        description=REVERSE_CHARGE_TEXT,
        taxable_amount=line.net,
        rate_percent="0.0",
        behavior=terms.behavior if terms is not None else TaxBehavior.EXCLUSIVE,
        amount=Money.zero(line.net.currency),
        reverse_charge=True,
    )


def allocate_discount(lines_amounts: Sequence[Money], discount: Money) -> list[Money]:
    """Each line's share of a discount, proportional to its amount, by largest remainder.

    Only positive lines take a share (a credit is never made larger); no share exceeds its
    line. The shares sum to the discount, or to the positive lines' sum when the discount is
    larger (the rest is not applied here: carry it forward). Ties go to the earlier line.
    """
    if discount.amount < 0:
        raise InvalidValue("a discount to allocate is zero or positive", field="discount")
    for amount in lines_amounts:
        if amount.currency != discount.currency:
            raise CurrencyMismatch(
                f"a line is in {amount.currency}, the discount in {discount.currency}",
                field="lines_amounts",
            )
    weights = [max(amount.amount, 0) for amount in lines_amounts]
    return [discount.with_amount(share) for share in _largest_remainder(weights, discount.amount)]


def _largest_remainder(weights: list[int], total: int) -> list[int]:
    """Integer shares of min(total, sum(weights)) proportional to non-negative weights."""
    whole = sum(weights)
    applied = min(total, whole)
    if applied == 0:
        return [0] * len(weights)
    parts = [divmod(applied * weight, whole) for weight in weights]
    shares = [share for share, _ in parts]
    left = applied - sum(shares)
    by_remainder = sorted(range(len(parts)), key=lambda i: (-parts[i][1], i))
    for index in by_remainder[:left]:
        shares[index] += 1
    return shares
