"""Catalog value objects: features, overage pricing models and plan terms."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.errors import InvalidValue
from domain.money import Money
from domain.period import Interval

KEY_PATTERN = r"^[a-z0-9][a-z0-9_.\-]{0,63}$"
MAX_PRICE = 10**15  # minor units; annualized sums (x365) stay inside a 64-bit integer
_KEY = re.compile(KEY_PATTERN)


def validate_key(value: str, field: str) -> str:
    """Keys (plan, feature, coupon) are lower-case slugs of at most 64 characters."""
    if not _KEY.match(value):
        raise InvalidValue(
            f"{field} must match {KEY_PATTERN} (lower-case letters, digits, _ . -)", field=field
        )
    return value


class _Value(BaseModel):
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


class Meter(StrEnum):
    """How raw usage events aggregate into the quantity counted against a limit."""

    SUM = "sum"
    COUNT = "count"
    MAX = "max"
    UNIQUE_COUNT = "unique_count"
    LATEST = "latest"


# --- overage pricing models (shape now; arithmetic arrives with the billing engine) ---


class FlatPrice(_Value):
    model: Literal["flat"] = "flat"
    amount: Money


class PerUnitPrice(_Value):
    model: Literal["per_unit"] = "per_unit"
    unit_price: Money


class Tier(_Value):
    up_to: int | None = Field(default=None, gt=0, description="inclusive; None = infinity")
    unit_price: Money
    flat_fee: Money | None = None


class _Tiered(_Value):
    tiers: list[Tier] = Field(min_length=1)

    @model_validator(mode="after")
    def _tiers_ascend(self) -> _Tiered:
        bounds = [t.up_to for t in self.tiers]
        if bounds[-1] is not None or None in bounds[:-1]:
            raise InvalidValue("only the last tier is open-ended (up_to null)", field="tiers")
        finite = [b for b in bounds if b is not None]
        if finite != sorted(set(finite)):
            raise InvalidValue("tier bounds must strictly ascend", field="tiers")
        currencies = {t.unit_price.currency for t in self.tiers}
        currencies |= {t.flat_fee.currency for t in self.tiers if t.flat_fee}
        if len(currencies) != 1:
            raise InvalidValue("all tiers must use one currency", field="tiers")
        return self


class GraduatedPrice(_Tiered):
    model: Literal["graduated"] = "graduated"


class VolumePrice(_Tiered):
    model: Literal["volume"] = "volume"


class PackagePrice(_Value):
    model: Literal["package"] = "package"
    package_size: int = Field(gt=0)
    package_price: Money


PricingModel = Annotated[
    FlatPrice | PerUnitPrice | GraduatedPrice | VolumePrice | PackagePrice,
    Field(discriminator="model"),
]


class FeatureSpec(_Value):
    """One feature of a plan: on/off, metered against a limit, or seats."""

    key: str
    kind: FeatureKind
    limit: int | None = Field(default=None, ge=0, description="metered/seats; None = unlimited")
    period: QuotaPeriod = QuotaPeriod.MONTH
    enforcement: Enforcement = Enforcement.HARD
    soft_threshold_percent: int = Field(default=80, ge=1, le=100)
    meter: Meter = Meter.SUM
    overage: PricingModel | None = None
    seat_price: Money | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        validate_key(self.key, "features.key")
        if self.kind is FeatureKind.BOOLEAN and self.limit is not None:
            raise InvalidValue("a boolean feature has no limit", field=f"features.{self.key}.limit")
        if self.overage is not None and self.kind is not FeatureKind.METERED:
            raise InvalidValue(
                "only metered features have overage pricing", field=f"features.{self.key}.overage"
            )
        return self


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

    @model_validator(mode="after")
    def _unique_features(self) -> PlanTerms:
        validate_key(self.plan_key, "plan_key")
        keys = [f.key for f in self.features]
        if len(keys) != len(set(keys)):
            raise InvalidValue("feature keys must be unique within a plan", field="features")
        prices = {"base_price": self.base_price}
        prices |= {f"price_overrides.{zone}": p for zone, p in self.price_overrides.items()}
        for field, price in prices.items():
            if not 0 <= price.amount <= MAX_PRICE:
                raise InvalidValue(f"prices run from 0 to {MAX_PRICE} minor units", field=field)
        return self

    def feature(self, key: str) -> FeatureSpec | None:
        return next((f for f in self.features if f.key == key), None)

    def price_for(self, zone: str | None) -> Money:
        """The base price, or the override for a country or pricing zone."""
        if zone and zone in self.price_overrides:
            return self.price_overrides[zone]
        return self.base_price
