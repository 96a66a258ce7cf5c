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
