"""What every benchmark needs: a scratch PostgreSQL schema, a system on it, percentiles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def create_schema(pg_url: str, schema: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))


def drop_schema(pg_url: str, schema: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def bench_system(pg_url: str, schema: str, **settings: Any) -> Any:
    """A system on the scratch schema, with a test clock and no in-process delivery."""
    from adapters.bootstrap import bootstrap
    from adapters.settings import Settings
    from domain.clock import SettableClock

    settings.setdefault("rate_limit_per_key", 0)  # back-to-back figures, not 429s
    return bootstrap(
        Settings(database_url=pg_url, **settings),
        SettableClock(T0),
        schema=schema,
        deliver_in_process=False,
    )


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile (nearest rank) of the values; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def seed_tenants(
    system: Any,
    app_id: str,
    tenants: int,
    features: list[dict[str, Any]],
    *,
    batch: int = 200,
) -> None:
    """A plan "pro" with these features and one subscription per tenant t0..tN-1, started
    through the command bus in group commits of `batch`."""
    from commands.plans.define_plan import DefinePlan
    from commands.subscriptions.start_subscription import StartSubscription

    system.handle(
        DefinePlan.model_validate(
            {
                "app_id": app_id,
                "plan_key": "pro",
                "name": "Pro",
                "base_price": {"amount": 4900, "currency": "USD"},
                "features": features,
            }
        )
    )
    starts = [
        StartSubscription(app_id=app_id, tenant_id=f"t{n}", plan_key="pro") for n in range(tenants)
    ]
    for i in range(0, tenants, batch):
        system.bus.handle_many(starts[i : i + batch])
