"""Rating: what a quantity of units costs under a pricing model, line by line.

Pure and exact. Arithmetic runs on Decimal in a local context that traps any inexact result
(never a float); each line is rounded once, half-up (halves away from zero), to a whole minor
unit, and the amount is the sum of the rounded lines. Prices are already in minor units, so
the currency's exponent (JPY 0, USD 2, KWD 3) never changes the arithmetic: a USD unit price of
"0.0035" is 0.0035 cents. `free_units` are subtracted from the quantity before rating; tier
bounds count the units left after them. docs/pricing.md has the rules with worked examples.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import (
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ConfigDict, field_serializer

from domain.catalog import (
    AnyPricingModel,
    FeatureSpec,
    FlatPrice,
    GraduatedPrice,
    PerUnitPrice,
    Tier,
    VolumePrice,
    decimal_places,
    included_units,
    plain_decimal,
    pricing_model,
)
from domain.errors import InvalidValue, MoneyOverflow
from domain.money import MAX_MINOR, Money, round_half_up

Quantity = int | Decimal
MAX_QUANTITY = MAX_MINOR
MAX_QUANTITY_PLACES = 30
# 19 integer digits x (16 + 12) price digits + 30 places fit with room to spare; any inexact
# operation raises instead of rounding silently.
_EXACT = Context(prec=200, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])


class RatedLine(BaseModel):
    """One priced step: a tier reached, the packages started, the units, or a flat fee."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str
    quantity: int | Decimal
    unit_price: str
    amount: Money

    @field_serializer("quantity")
    def _plain(self, value: int | Decimal) -> int | str:
        return value if isinstance(value, int) else plain_decimal(value)


class Rating(BaseModel):
    """What a quantity costs: the lines, each rounded once, and their sum."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: Money
    lines: list[RatedLine]


def parse_quantity(value: object, field: str = "quantity") -> Quantity:
    """A quantity from an int, a Decimal or a decimal string: 0 to MAX_QUANTITY, at most
    MAX_QUANTITY_PLACES decimal places; a whole Decimal becomes an int."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise InvalidValue(f"{field} is an integer or a decimal string, never a float", field=field)
    number = _as_number(value, field)
    if isinstance(number, Decimal) and decimal_places(number) > MAX_QUANTITY_PLACES:
        raise InvalidValue(
            f"{field} is finite with at most {MAX_QUANTITY_PLACES} decimal places", field=field
        )
    if not 0 <= number <= MAX_QUANTITY:
        raise InvalidValue(f"{field} runs from 0 to {MAX_QUANTITY} (never negative)", field=field)
    return _whole_if_integral(number)


def _as_number(value: int | Decimal | str, field: str) -> Quantity:
    if isinstance(value, int | Decimal):
        return value
    try:
        return Decimal(value.strip())
    except InvalidOperation:
        raise InvalidValue(f"{field} is not a decimal number: {value!r}", field=field) from None


def _whole_if_integral(number: Quantity) -> Quantity:
    if isinstance(number, Decimal) and number == number.to_integral_value():
        return int(number)
    return number


def rate(model: AnyPricingModel | Mapping[str, Any], quantity: Quantity) -> Rating:
    """Price `quantity` units under `model` (the catalog's object or its JSON shape)."""
    priced = pricing_model(model)
    used = parse_quantity(quantity)
    with localcontext(_EXACT):
        billable = _whole_if_integral(max(used - priced.free_units, 0))
        lines = _lines(priced, billable)
    return Rating(amount=_total(lines, priced.currency), lines=lines)


def rate_feature(spec: FeatureSpec, quantity: Quantity) -> Rating | None:
    """Price a metered feature's usage: its included units (`included`, else `limit`) come
    off first, then its overage model rates the rest; None when it has no overage model."""
    if spec.overage is None:
        return None
    used = parse_quantity(quantity)
    with localcontext(_EXACT):
        beyond = max(used - included_units(spec), 0)
    return rate(spec.overage, beyond)


def _lines(model: AnyPricingModel, quantity: Quantity) -> list[RatedLine]:
    if isinstance(model, FlatPrice):
        return [_line("flat fee", 1, Decimal(model.amount.amount), model.currency)]
    if isinstance(model, PerUnitPrice):
        return [_line("per unit", quantity, model.unit_price.minor_units, model.currency)]
    if isinstance(model, GraduatedPrice):
        return _graduated(model, quantity)
    if isinstance(model, VolumePrice):
        return [_volume(model, quantity)]
    packages = _started(quantity, model.package_size)
    noun = "package" if packages == 1 else "packages"
    description = f"{packages} {noun} of {model.package_size} units ({_text(quantity)} units)"
    return [_line(description, packages, Decimal(model.package_price.amount), model.currency)]


def _graduated(model: GraduatedPrice, quantity: Quantity) -> list[RatedLine]:
    """A line per tier holding units; the first tier's flat fee is due even at quantity 0."""
    lines: list[RatedLine] = []
    lower = 0
    for number, tier in enumerate(model.tiers, start=1):
        inside = (quantity if tier.up_to is None else min(quantity, tier.up_to)) - lower
        if inside > 0 or (number == 1 and tier.flat_fee is not None):
            label = f"tier {number}, {_units(lower, tier.up_to)}"
            lines.append(_tier_line(label, inside, tier, model.currency))
        if tier.up_to is None or quantity <= tier.up_to:
            break
        lower = tier.up_to
    return lines


def _volume(model: VolumePrice, quantity: Quantity) -> RatedLine:
    """One line: every unit at the price of the tier the quantity reaches, plus its flat fee."""
    index, lower = _reached(model.tiers, quantity)
    tier = model.tiers[index]
    label = f"all units at tier {index + 1} ({_units(lower, tier.up_to)})"
    return _tier_line(label, quantity, tier, model.currency)


def _reached(tiers: list[Tier], quantity: Quantity) -> tuple[int, int]:
    """The index of the tier holding the quantity's last unit, and that tier's lower bound."""
    lower = 0
    for index, tier in enumerate(tiers):
        if tier.up_to is None or quantity <= tier.up_to:
            return index, lower
        lower = tier.up_to
    raise AssertionError("the catalog keeps the last tier open-ended")


def _tier_line(label: str, quantity: Quantity, tier: Tier, currency: str) -> RatedLine:
    flat = tier.flat_fee.amount if tier.flat_fee is not None else 0
    description = f"{label} + flat fee {tier.flat_fee}" if tier.flat_fee is not None else label
    return _line(description, quantity, tier.unit_price.minor_units, currency, flat)


def _line(
    description: str, quantity: Quantity, unit_price: Decimal, currency: str, flat_fee: int = 0
) -> RatedLine:
    """quantity x unit_price + flat_fee, rounded once, half-up, to a whole minor unit."""
    amount = round_half_up(Fraction(quantity * unit_price + flat_fee))
    if amount > MAX_MINOR:
        raise MoneyOverflow(f"{description}: the amount exceeds 64 bits", field="amount")
    return RatedLine(
        description=description,
        quantity=_whole_if_integral(quantity),
        unit_price=plain_decimal(unit_price),
        amount=Money(amount=amount, currency=currency),
    )


def _started(quantity: Quantity, size: int) -> int:
    """Packages needed for `quantity` units: a started package counts whole."""
    whole, rest = divmod(quantity, size)
    return int(whole) + (1 if rest else 0)


def _units(lower: int, upper: int | None) -> str:
    return f"units {lower + 1} and above" if upper is None else f"units {lower + 1} to {upper}"


def _text(quantity: Quantity) -> str:
    return str(quantity) if isinstance(quantity, int) else plain_decimal(quantity)


def _total(lines: list[RatedLine], currency: str) -> Money:
    return sum((line.amount for line in lines), Money.zero(currency))


__all__ = ["RatedLine", "Rating", "parse_quantity", "rate", "rate_feature"]
