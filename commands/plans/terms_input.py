"""The plan terms a caller sends when defining or revising a plan."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from domain.catalog import KEY_PATTERN, FeatureSpec, PlanTerms
from domain.money import Money
from domain.period import Interval


class PlanTermsInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    plan_key: str = Field(pattern=KEY_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    base_price: Money
    interval: Interval = Interval.MONTH
    trial_days: int = Field(default=0, ge=0, le=730)
    features: list[FeatureSpec] = Field(default_factory=list, max_length=200)
    price_overrides: dict[str, Money] = Field(default_factory=dict)

    def terms(self, version: int = 1) -> PlanTerms:
        return PlanTerms(
            plan_key=self.plan_key,
            version=version,
            name=self.name,
            base_price=self.base_price,
            interval=self.interval,
            trial_days=self.trial_days,
            features=self.features,
            price_overrides=self.price_overrides,
        )
