"""Catalog value objects: features, overage pricing models and plan terms."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    TypeAdapter,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from domain.errors import DomainError, InvalidValue
from domain.money import Money, validate_currency
from domain.period import Interval
from domain.value import FrozenValue

KEY_PATTERN = r"^[a-z0-9][a-z0-9_.\-]{0,63}$"
MAX_PRICE = 10**15  # minor units; annualized sums (x365) stay inside a 64-bit integer
MAX_PRICE_PLACES = 12  # decimal places of a unit price, as Stripe's unit_amount_decimal
MAX_AMOUNT = 10**15
"""Largest value one usage event adds (domain/quota.py's consume bound is the same)."""
_KEY = re.compile(KEY_PATTERN)


def validate_key(value: str, field: str) -> str:
    """Keys (plan, feature, coupon) are lower-case slugs of at most 64 characters."""
    if not _KEY.match(value):
        raise InvalidValue(
            f"{field} must match {KEY_PATTERN} (lower-case letters, digits, _ . -)", field=field
        )
    return value


class _Value(FrozenValue):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureKind(StrEnum):
    BOOLEAN = "boolean"
    METERED = "metered"
    SEATS = "seats"


class QuotaPeriod(StrEnum):
    """The window a metered limit counts over; ABSOLUTE never resets."""

    DAY = "day"
    MONTH = "month"
    ABSOLUTE = "absolute"


class Enforcement(StrEnum):
    SOFT = "soft"
    HARD = "hard"


DEFAULT_SOFT_THRESHOLD_PERCENT = 80
"""A soft quota warns when this share of its effective limit is used, unless a plan says."""


def soft_threshold_units(limit: int | None, enforcement: str | None, percent: int) -> int | None:
    """The soft warning threshold in whole units (ceiling); None unless soft and limited."""
    if limit is None or enforcement != Enforcement.SOFT:
        return None
    return -(-limit * percent // 100)


def hard_limit_reached(enforcement: str | None, limit: int | None, used: int | None) -> bool:
    """A hard limit stops use once `used` reaches it; soft or unlimited never does."""
    if enforcement != Enforcement.HARD or limit is None or used is None:
        return False
    return used >= limit


class Meter(StrEnum):
    """How raw usage events aggregate into the quantity counted against a limit."""

    SUM = "sum"
    COUNT = "count"
    MAX = "max"
    UNIQUE_COUNT = "unique_count"
    LATEST = "latest"


METER_NAMES = tuple(meter.value for meter in Meter)
"""The built-in aggregation names; any other `meter` of a feature is a meter key."""


# --- pricing models (the arithmetic is domain/pricing.py) ---


def plain_decimal(value: Decimal) -> str:
    """A decimal as plain digits without exponent or trailing zeros ("0.0035", "100")."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _price_range(amount: int | Decimal, field: str) -> None:
    if not 0 <= amount <= MAX_PRICE:
        raise InvalidValue(
            f"{field} runs from 0 to {MAX_PRICE} minor units (never negative)", field=field
        )


def non_negative(price: Money, field: str) -> Money:
    """A fee or package price: 0 to MAX_PRICE minor units."""
    _price_range(price.amount, field)
    return price


def _decimal_price(value: object) -> Decimal:
    """A decimal string (or int) of minor units with at most MAX_PRICE_PLACES places."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidValue(
            'amount_decimal is a decimal string such as "0.0035"', field="amount_decimal"
        )
    try:
        price = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise InvalidValue(
            f"amount_decimal is not a decimal number: {value!r}", field="amount_decimal"
        ) from None
    if decimal_places(price) > MAX_PRICE_PLACES:
        raise InvalidValue(
            f"amount_decimal is finite with at most {MAX_PRICE_PLACES} decimal places",
            field="amount_decimal",
        )
    _price_range(price, "amount_decimal")
    return price


def decimal_places(value: Decimal) -> int:
    """How many digits follow the decimal point (a large number for NaN and infinities)."""
    exponent = value.as_tuple().exponent
    return max(-exponent, 0) if isinstance(exponent, int) else 10**9


class UnitPrice(_Value):
    """A price per unit in minor units of `currency`: a whole `amount` (10 = 10 cents) or a
    decimal fraction `amount_decimal` ("0.0035" = 0.0035 cents), as Stripe and Lago allow."""

    amount: StrictInt | None = None
    amount_decimal: Decimal | None = None
    currency: str

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return validate_currency(value)

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: int | None) -> int | None:
        if value is not None:
            _price_range(value, "amount")
        return value

    @field_validator("amount_decimal", mode="before")
    @classmethod
    def _amount_decimal(cls, value: object) -> Decimal | None:
        return None if value is None else _decimal_price(value)

    @model_validator(mode="after")
    def _one_amount(self) -> UnitPrice:
        if (self.amount is None) == (self.amount_decimal is None):
            raise InvalidValue("give exactly one of amount and amount_decimal", field="amount")
        return self

    @field_serializer("amount_decimal")
    def _plain(self, value: Decimal | None) -> str | None:
        return None if value is None else plain_decimal(value)

    @model_serializer(mode="wrap")
    def _without_unset_amount(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # {"amount", "currency"} stays exactly the shape stored before decimals existed
        return {k: v for k, v in handler(self).items() if v is not None}

    @property
    def minor_units(self) -> Decimal:
        """The exact price per unit in minor units."""
        if self.amount_decimal is not None:
            return self.amount_decimal
        return Decimal(self.amount or 0)

    def text(self) -> str:
        return plain_decimal(self.minor_units)


class _Priced(_Value):
    free_units: StrictInt = Field(default=0, ge=0, description="subtracted from the quantity first")


class FlatPrice(_Priced):
    """One fixed amount whatever the quantity."""

    model: Literal["flat"] = "flat"
    amount: Money

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: Money) -> Money:
        return non_negative(value, "amount")

    @property
    def currency(self) -> str:
        return self.amount.currency


class PerUnitPrice(_Priced):
    """Every billable unit at one unit price."""

    model: Literal["per_unit"] = "per_unit"
    unit_price: UnitPrice

    @property
    def currency(self) -> str:
        return self.unit_price.currency


class Tier(_Value):
    up_to: StrictInt | None = Field(default=None, gt=0, description="inclusive; None = infinity")
    unit_price: UnitPrice
    flat_fee: Money | None = None

    @field_validator("flat_fee")
    @classmethod
    def _flat_fee(cls, value: Money | None) -> Money | None:
        return None if value is None else non_negative(value, "flat_fee")


class _Tiered(_Priced):
    tiers: list[Tier] = Field(min_length=1)

    @model_validator(mode="after")
    def _tiers_ascend(self) -> _Tiered:
        bounds = [t.up_to for t in self.tiers]
        if bounds[-1] is not None or None in bounds[:-1]:
            raise InvalidValue(
                "the last tier, and only the last, is open-ended (up_to null)", field="tiers"
            )
        finite = [b for b in bounds if b is not None]
        if finite != sorted(set(finite)):
            raise InvalidValue("tier bounds must strictly ascend", field="tiers")
        currencies = {t.unit_price.currency for t in self.tiers}
        currencies |= {t.flat_fee.currency for t in self.tiers if t.flat_fee}
        if len(currencies) != 1:
            raise InvalidValue("all tiers must use one currency", field="tiers")
        return self

    @property
    def currency(self) -> str:
        return self.tiers[0].unit_price.currency


class GraduatedPrice(_Tiered):
    """Each unit priced in the tier it falls into."""

    model: Literal["graduated"] = "graduated"


class VolumePrice(_Tiered):
    """All units priced at the tier the whole quantity reaches."""

    model: Literal["volume"] = "volume"


class PackagePrice(_Priced):
    """A price per started package of `package_size` units."""

    model: Literal["package"] = "package"
    package_size: StrictInt = Field(gt=0)
    package_price: Money

    @field_validator("package_price")
    @classmethod
    def _package_price(cls, value: Money) -> Money:
        return non_negative(value, "package_price")

    @property
    def currency(self) -> str:
        return self.package_price.currency


AnyPricingModel = FlatPrice | PerUnitPrice | GraduatedPrice | VolumePrice | PackagePrice
PricingModel = Annotated[AnyPricingModel, Field(discriminator="model")]
_PRICING_MODEL: TypeAdapter[AnyPricingModel] = TypeAdapter(PricingModel)
MODEL_NAMES = ("flat", "per_unit", "graduated", "volume", "package")


def pricing_model(value: AnyPricingModel | Mapping[str, Any]) -> AnyPricingModel:
    """The catalog's model object for a model or its JSON shape; InvalidValue names the field."""
    if isinstance(value, FlatPrice | PerUnitPrice | GraduatedPrice | VolumePrice | PackagePrice):
        return value
    try:
        return _PRICING_MODEL.validate_python(value)
    except ValidationError as error:
        raise _first_problem(error) from None


def _first_problem(error: ValidationError) -> InvalidValue:
    item = error.errors(include_url=False)[0]
    path = [str(part) for part in item["loc"]]
    if path[:1] and path[0] in MODEL_NAMES:  # the union's tag, not a field of the model
        path = path[1:]
    cause = item.get("ctx", {}).get("error")
    if isinstance(cause, DomainError) and cause.field and path[-1:] != [cause.field]:
        path.append(cause.field)
    message = str(item["msg"]).removeprefix("Value error, ")
    return InvalidValue(message, field=".".join(path) or "model", rule=item["type"])


class FeatureSpec(_Value):
    """One feature of a plan: on/off, metered against a limit, or seats."""

    key: str
    kind: FeatureKind
    limit: StrictInt | None = Field(
        default=None, ge=0, description="metered/seats; None = unlimited"
    )
    period: QuotaPeriod = QuotaPeriod.MONTH
    enforcement: Enforcement = Enforcement.HARD
    soft_threshold_percent: StrictInt = Field(default=DEFAULT_SOFT_THRESHOLD_PERCENT, ge=1, le=100)
    meter: Meter = Meter.SUM
    included: StrictInt | None = Field(
        default=None, ge=0, description="units included before pricing; None = the limit"
    )
    overage: PricingModel | None = None
    seat_price: Money | None = None
    meter_key: str | None = Field(
        default=None,
        description="the key of the app's meter (POST /v1/meters) whose aggregation `meter` is",
    )

    @model_validator(mode="before")
    @classmethod
    def _meter_key_from_meter(cls, data: Any) -> Any:
        """`meter` names a built-in aggregation or a meter key: a key moves to `meter_key`
        (`meter` is then filled from the meter's definition when the plan is saved)."""
        if not isinstance(data, Mapping):
            return data
        named = data.get("meter")
        if not isinstance(named, str) or named in METER_NAMES:
            return data
        if not _KEY.match(named):
            return data  # neither: refused by the aggregation's own check, naming `meter`
        key = data.get("meter_key")
        if key is not None and key != named:
            raise InvalidValue(
                f"meter {named!r} and meter_key {key!r} name different meters", field="meter"
            )
        rest = {name: value for name, value in data.items() if name != "meter"}
        return {**rest, "meter_key": named}

    @field_validator("seat_price")
    @classmethod
    def _seat_price(cls, value: Money | None) -> Money | None:
        return None if value is None else non_negative(value, "seat_price")

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        validate_key(self.key, "features.key")
        if self.kind is FeatureKind.BOOLEAN:
            for name in ("limit", "included"):
                if getattr(self, name) is not None:
                    raise InvalidValue(
                        f"a boolean feature has no {name}", field=f"features.{self.key}.{name}"
                    )
        if self.overage is not None and self.kind is not FeatureKind.METERED:
            raise InvalidValue(
                "only metered features have overage pricing", field=f"features.{self.key}.overage"
            )
        if self.meter_key is not None:
            self._check_meter_key(self.meter_key)
        return self

    def _check_meter_key(self, key: str) -> None:
        field = f"features.{self.key}.meter"
        if self.kind is not FeatureKind.METERED:
            raise InvalidValue("only metered features name a meter key", field=field)
        if not _KEY.match(key) or key in METER_NAMES:
            raise InvalidValue(
                f"meter_key must match {KEY_PATTERN}, not an aggregation", field=field
            )


def included_units(spec: FeatureSpec) -> int:
    """Units of a feature subtracted before rating: `included`, else the `limit`, else 0."""
    if spec.included is not None:
        return spec.included
    return spec.limit if spec.limit is not None else 0


def check_plan_currencies(
    base_price: Money, features: list[FeatureSpec], price_overrides: Mapping[str, Money]
) -> None:
    """Every price of a plan is in the base price's currency (InvalidValue names the field)."""
    prices = {f"price_overrides.{zone}": p.currency for zone, p in price_overrides.items()}
    for spec in features:
        if spec.overage is not None:
            prices[f"features.{spec.key}.overage"] = spec.overage.currency
        if spec.seat_price is not None:
            prices[f"features.{spec.key}.seat_price"] = spec.seat_price.currency
    for field, currency in prices.items():
        if currency != base_price.currency:
            raise InvalidValue(
                f"{field} must be in the plan's currency {base_price.currency}, got {currency}",
                field=field,
                rule="currency",
            )


def check_thresholds(thresholds: list[Money], currency: str) -> None:
    """Progressive billing thresholds: positive, strictly ascending, in the plan's currency."""
    for index, threshold in enumerate(thresholds):
        field = f"progressive_thresholds.{index}"
        if threshold.currency != currency:
            raise InvalidValue("thresholds are in the plan's currency", field=field)
        if not 0 < threshold.amount <= MAX_PRICE:
            raise InvalidValue(f"thresholds run from 1 to {MAX_PRICE} minor units", field=field)
        if index and threshold.amount <= thresholds[index - 1].amount:
            raise InvalidValue("thresholds must be strictly ascending", field=field)


STRATEGY_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
"""A strategy plugin's name (as adapters/plugins registers it)."""


class PlanStrategies(_Value):
    """Strategy plugins a plan's subscriptions use instead of the settings' (by name)."""

    pricing_strategy: str | None = Field(default=None, pattern=STRATEGY_NAME_PATTERN)
    tax_calculator: str | None = Field(default=None, pattern=STRATEGY_NAME_PATTERN)
    usage_aggregator: str | None = Field(default=None, pattern=STRATEGY_NAME_PATTERN)


class PlanTerms(_Value):
    """What a subscriber of one plan version gets and pays; copied into subscription events."""

    plan_key: str
    version: int = Field(ge=1)
    name: str = Field(min_length=1, max_length=200)
    base_price: Money
    interval: Interval
    trial_days: int = Field(default=0, ge=0, le=730)
    features: list[FeatureSpec] = Field(default_factory=list)
    price_overrides: dict[str, Money] = Field(default_factory=dict)
    base_fee_timing: Literal["in_advance", "in_arrears"] = "in_advance"
    minimum_spend: Money | None = Field(
        default=None, description="per billing period: a shortfall is billed as a true-up"
    )
    progressive_thresholds: list[Money] = Field(
        default_factory=list,
        max_length=10,
        description="usage spend in a period that issues an interim invoice when crossed",
    )
    strategies: PlanStrategies | None = Field(
        default=None, description="strategy plugins by name, instead of the settings' ones"
    )

    @model_validator(mode="after")
    def _unique_features(self) -> PlanTerms:
        validate_key(self.plan_key, "plan_key")
        keys = [f.key for f in self.features]
        if len(keys) != len(set(keys)):
            raise InvalidValue("feature keys must be unique within a plan", field="features")
        prices = {"base_price": self.base_price}
        prices |= {f"price_overrides.{zone}": p for zone, p in self.price_overrides.items()}
        check_thresholds(self.progressive_thresholds, self.base_price.currency)
        if self.minimum_spend is not None:
            prices["minimum_spend"] = self.minimum_spend
            if self.minimum_spend.currency != self.base_price.currency:
                raise InvalidValue(
                    "minimum_spend must be in the plan's currency", field="minimum_spend"
                )
        for field, price in prices.items():
            if not 0 <= price.amount <= MAX_PRICE:
                raise InvalidValue(f"prices run from 0 to {MAX_PRICE} minor units", field=field)
        check_plan_currencies(self.base_price, self.features, self.price_overrides)
        return self

    def feature(self, key: str) -> FeatureSpec | None:
        return next((f for f in self.features if f.key == key), None)

    def price_for(self, zone: str | None) -> Money:
        """The base price, or the override for a country or pricing zone."""
        if zone and zone in self.price_overrides:
            return self.price_overrides[zone]
        return self.base_price

    def seats_feature(self) -> FeatureSpec | None:
        """The plan's seats feature (its limit is the most seats; its price, one seat's)."""
        return next((f for f in self.features if f.kind is FeatureKind.SEATS), None)

    def seat_price(self) -> Money | None:
        """The price of one seat, when the plan charges for seats."""
        feature = self.seats_feature()
        return feature.seat_price if feature is not None else None
