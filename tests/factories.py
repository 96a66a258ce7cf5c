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


def embedded_system(clock: Any = None, *, deliver_in_process: bool = False) -> Any:
    """The whole system on an in-memory SQLite store (read models fed by `system.sync()`)."""
    from adapters.bootstrap import bootstrap
    from adapters.settings import Settings
    from domain.clock import SettableClock

    return bootstrap(
        Settings(database_url="sqlite:///:memory:"),
        clock or SettableClock(T0),
        deliver_in_process=deliver_in_process,
    )


def ok(reply: dict[str, Any]) -> dict[str, Any]:
    """The result of a successful dispatch reply (fails the test with the reply otherwise)."""
    assert reply["ok"], reply
    return dict(reply["result"])


def free_port() -> int:
    """A loopback port nothing listens on (for a private server, or a refused connection)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
