"""The plan terms a caller sends when defining or revising a plan."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from domain.catalog import (
    KEY_PATTERN,
    FeatureSpec,
    PlanStrategies,
    PlanTerms,
    check_plan_currencies,
    check_thresholds,
)
from domain.money import Money
from domain.period import Interval


class PlanTermsInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    plan_key: str = Field(pattern=KEY_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    base_price: Money
    interval: Interval = Interval.MONTH
    trial_days: StrictInt = Field(default=0, ge=0, le=730)
    features: list[FeatureSpec] = Field(default_factory=list, max_length=200)
    price_overrides: dict[str, Money] = Field(default_factory=dict)
    base_fee_timing: Literal["in_advance", "in_arrears"] = Field(
        default="in_advance", description="the base fee is billed at the period's start or end"
    )
    minimum_spend: Money | None = Field(
        default=None, description="per billing period: a shortfall is billed as a true-up"
    )
    progressive_thresholds: list[Money] = Field(
        default_factory=list,
        max_length=10,
        description="usage spend in a period that issues an interim invoice when crossed",
    )
    strategies: PlanStrategies | None = Field(
        default=None,
        description="strategy plugins (by name) this plan's subscriptions use instead of the "
        "settings' ones: pricing_strategy, tax_calculator, usage_aggregator (docs/plugins.md)",
    )

    @model_validator(mode="after")
    def _one_currency(self) -> PlanTermsInput:
        # refused with the command's other field errors, before any handler runs
        check_plan_currencies(self.base_price, self.features, self.price_overrides)
        if self.minimum_spend is not None and (
            self.minimum_spend.currency != self.base_price.currency
        ):
            raise ValueError("minimum_spend must be in the plan's currency (base_price's)")
        check_thresholds(self.progressive_thresholds, self.base_price.currency)
        return self

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
            base_fee_timing=self.base_fee_timing,
            minimum_spend=self.minimum_spend,
            progressive_thresholds=self.progressive_thresholds,
            strategies=self.strategies,
        )
