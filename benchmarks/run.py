"""`make bench` / `python -m benchmarks` / `tally bench`: measure the TARGETS.md figures this
build supports. Each step's sizes come from its env knobs (docs/benchmarks.md lists them)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import (
    billing_run,
    command_bus,
    entitlement_check,
    projection_lag,
    replay_rate,
    usage_billable,
    usage_ingest,
)
from benchmarks.report import Figure, write

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_NATS = "nats://127.0.0.1:4222"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_BILLING_SUBSCRIPTIONS = 10_000  # P6; env BENCH_BILLING_SUBSCRIPTIONS for a quick run


def _redis_if_up(url: str) -> str | None:
    """The Redis URL when it answers (the entitlement hot cache), else None."""
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
        return url
    except Exception:
        return None


def run(events: int, out: Path, markdown: Path) -> list[Figure]:
    console = Console()
    pg_url = os.environ.get("TALLY_BENCH_DATABASE_URL", DEFAULT_PG)
    nats_url = os.environ.get("TALLY_BENCH_NATS_URL", DEFAULT_NATS)
    redis_url = _redis_if_up(os.environ.get("TALLY_BENCH_REDIS_URL", DEFAULT_REDIS))
    subscriptions = int(
        os.environ.get("BENCH_BILLING_SUBSCRIPTIONS", DEFAULT_BILLING_SUBSCRIPTIONS)
    )
    profile = os.environ.get("BENCH_BILLING_PROFILE") == "1"  # P6 run under cProfile (slower)
    ingest, billable = usage_ingest.Knobs.from_env(), usage_billable.Knobs.from_env()
    steps: list[Callable[[], list[Figure]]] = [
        lambda: command_bus.measure(pg_url, nats_url, console.print),
        lambda: [
            usage_ingest.measure(
                pg_url, console.print, nats_url=nats_url, redis_url=redis_url, knobs=ingest
            )
        ],
        lambda: entitlement_check.measure(pg_url, console.print, redis_url=redis_url),
        lambda: [
            projection_lag.measure(pg_url, nats_url, 1000, 10.0, console.print),
            projection_lag.measure(pg_url, nats_url, 200, 5.0, console.print),
        ],
        lambda: [replay_rate.measure(pg_url, events, console.print)],
        lambda: billing_run.measure(pg_url, subscriptions, console.print, profile=profile),
        lambda: [
            usage_billable.measure(
                pg_url, console.print, nats_url=nats_url, redis_url=redis_url, knobs=billable
            )
        ],
    ]
    figures: list[Figure] = []
    for step in steps:
        figures += step()
        write(figures, out, markdown)  # after each step: a later hang keeps these figures
    table = Table("#", "what", "result", "target", "baseline", "ratio", "verdict")
    for f in figures:
        table.add_row(
            f.key,
            f.what,
            f"{f.value:,.{0 if f.value >= 100 else 2}f} {f.unit}",
            f.target,
            f"{f.baseline:,.0f} {f.baseline_what}" if f.baseline else "—",
            f"{f.ratio:.2f}×" if f.ratio is not None else "—",
            f.verdict,
        )
    console.print(table)
    console.print(f"wrote {out} and {markdown}")
    return figures
