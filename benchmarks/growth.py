"""P10: growth. P3, P5 and P6 measured again at a tenth of the data, so each main figure (at
10x) stands beside the same figure at 1x from the same run (TARGETS.md: P3 p99 within 1.2x,
P5 and P6 rates within 1.3x, linear or better)."""

from __future__ import annotations

import uuid
from typing import Any

from benchmarks import billing_run, entitlement_check, replay_rate
from benchmarks.common import create_schema, drop_schema
from benchmarks.report import Figure


def p3(pg_url: str, redis_url: str | None, tenants: int, calls: int, say: Any) -> Figure:
    """The in-process check p99 at `tenants` (1x) and 10x as many."""
    small = _check_p99(pg_url, redis_url, tenants, calls)
    large = _check_p99(pg_url, redis_url, tenants * 10, calls)
    say(f"P10: check p99 {small:.1f} µs at {tenants:,} tenants, {large:.1f} µs at 10×")
    return Figure(
        key="P10-P3",
        what=f"growth: P3 in-process check p99 at {tenants * 10:,} tenants vs {tenants:,}",
        value=large,
        unit="µs p99",
        target="within 1.2× of the 1× figure",
        baseline=small,
        baseline_what=f"µs p99 at {tenants:,} tenants",
        notes=f"{calls:,} checks each; p99 {small:.1f} µs at {tenants:,} tenants, "
        f"{large:.1f} µs at {tenants * 10:,}",
    )


def _check_p99(pg_url: str, redis_url: str | None, tenants: int, calls: int) -> float:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    create_schema(pg_url, schema)
    try:
        entitlement_check._seed(pg_url, schema, tenants)
        results = entitlement_check._in_process(pg_url, schema, redis_url, tenants, calls)
    finally:
        drop_schema(pg_url, schema)
    return next(iter(results.values()))[1]


def p5(pg_url: str, main: Figure, events: int, say: Any) -> Figure:
    """The replay rate at a tenth of `events` beside the main P5 (at `events`)."""
    small = replay_rate.measure(pg_url, events // 10, say)
    return _rates(
        "P10-P5",
        f"growth: P5 replay rate at {events:,} events vs {events // 10:,}",
        main.value,
        small.value,
        "events/s",
        f"events/s at {events // 10:,} events",
    )


def p6(pg_url: str, main: Figure, subscriptions: int, say: Any) -> Figure:
    """The billing run's rate at a tenth of `subscriptions` beside the main P6-run."""
    small = next(
        f for f in billing_run.measure(pg_url, subscriptions // 10, say) if f.key == "P6-run"
    )
    return _rates(
        "P10-P6",
        f"growth: P6 billing run rate at {subscriptions:,} subscriptions vs "
        f"{subscriptions // 10:,}",
        subscriptions / main.value * 1000,
        subscriptions // 10 / small.value * 1000,
        "subscriptions/s",
        f"subscriptions/s at {subscriptions // 10:,}",
    )


def _rates(key: str, what: str, large: float, small: float, unit: str, base: str) -> Figure:
    return Figure(
        key=key,
        what=what,
        value=large,
        unit=unit,
        target="within 1.3× of the 1× rate",
        baseline=small,
        baseline_what=base,
        notes=f"{large:,.0f} {unit} at 10× the data, {small:,.0f} at 1×",
    )
