"""Small builders shared by tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from domain.base import Cause
from domain.catalog import FeatureSpec, PlanTerms
from domain.money import Money

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def cause(at: datetime = T0, actor: str = "tester", command_id: str | None = None) -> Cause:
    return Cause(occurred_at=at, actor=actor, command_id=command_id, correlation_id="corr-1")


def terms(
    plan_key: str = "pro",
    *,
    version: int = 1,
    price: int = 1000,
    currency: str = "USD",
    trial_days: int = 0,
    interval: str = "month",
    features: list[dict[str, Any]] | None = None,
) -> PlanTerms:
    return PlanTerms(
        plan_key=plan_key,
        version=version,
        name=plan_key.title(),
        base_price=Money(amount=price, currency=currency),
        interval=interval,  # type: ignore[arg-type]
        trial_days=trial_days,
        features=[FeatureSpec.model_validate(f) for f in (features or [])],
    )
