"""`make bench` / `python -m benchmarks` / `tally bench`: measure the TARGETS.md figures this
build supports. Each step's sizes come from its env knobs (docs/benchmarks.md lists them)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import (
    aggregate_load,
    billing_run,
    cold_start,
    command_bus,
    entitlement_check,
    growth,
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


QUICK_ENV = {  # `make bench QUICK=1`: every figure at a smaller size (about 2 minutes)
    "BENCH_INGEST_BATCHES": "20",
    "BENCH_INGEST_SECONDS": "30",
    "BENCH_BILLABLE_SECONDS": "3",
    "BENCH_BILLABLE_RATE": "2000",
}


@dataclass(frozen=True)
class Sizes:
    """How much data each step measures at (full: TARGETS.md's sizes)."""

    events: int
    subscriptions: int
    check_tenants: int = 500
    check_calls: int = 20_000
    history: int = 100_000
    seconds: float = 10.0
    starts: int = 5
    quick: bool = False

    @classmethod
    def of(cls, events: int, quick: bool) -> Sizes:
        subscriptions = int(
            os.environ.get("BENCH_BILLING_SUBSCRIPTIONS", DEFAULT_BILLING_SUBSCRIPTIONS)
        )
        if not quick:
            return cls(events, subscriptions)
        return cls(min(events, 20_000), 500, 100, 5_000, 10_000, 3.0, 2, quick=True)

    def label(self) -> str:
        if not self.quick:
            return "full"
        return (
            f"quick: {self.events:,} events replayed, {self.subscriptions:,} subscriptions, "
            f"{self.history:,}-event history, {self.check_tenants:,} tenants checked"
        )


def run(events: int, out: Path, markdown: Path, *, quick: bool = False) -> list[Figure]:
    console = Console()
    if quick:
        for name, value in QUICK_ENV.items():
            os.environ.setdefault(name, value)
    sizes = Sizes.of(events, quick)
    pg_url = os.environ.get("TALLY_BENCH_DATABASE_URL", DEFAULT_PG)
    nats_url = os.environ.get("TALLY_BENCH_NATS_URL", DEFAULT_NATS)
    redis_url = _redis_if_up(os.environ.get("TALLY_BENCH_REDIS_URL", DEFAULT_REDIS))
    profile = os.environ.get("BENCH_BILLING_PROFILE") == "1"  # P6 run under cProfile (slower)
    ingest, billable = usage_ingest.Knobs.from_env(), usage_billable.Knobs.from_env()
    say = console.print
    figures: list[Figure] = []

    def the(key: str) -> Figure:
        return next(f for f in figures if f.key == key)

    steps: list[Callable[[], list[Figure]]] = [
        lambda: command_bus.measure(
            pg_url, nats_url, say, seconds=sizes.seconds, dedupe_seconds=sizes.seconds / 2
        ),
        lambda: [
            usage_ingest.measure(pg_url, say, nats_url=nats_url, redis_url=redis_url, knobs=ingest)
        ],
        lambda: entitlement_check.measure(
            pg_url,
            say,
            redis_url=redis_url,
            seconds=sizes.seconds,
            tenants=sizes.check_tenants,
            calls=sizes.check_calls,
        ),
        lambda: [
            projection_lag.measure(pg_url, nats_url, 1000, sizes.seconds, say),
            projection_lag.measure(pg_url, nats_url, 200, sizes.seconds / 2, say),
        ],
        lambda: [replay_rate.measure(pg_url, sizes.events, say)],
        lambda: billing_run.measure(pg_url, sizes.subscriptions, say, profile=profile),
        lambda: [aggregate_load.measure(pg_url, sizes.history, say)],
        lambda: cold_start.measure(
            pg_url,
            say,
            nats_url=nats_url,
            redis_url=redis_url,
            starts=sizes.starts,
            load_seconds=sizes.seconds * 2,
        ),
        lambda: [
            growth.p3(pg_url, redis_url, sizes.check_tenants, sizes.check_calls, say),
            growth.p5(pg_url, the("P5"), sizes.events, say),
            growth.p6(pg_url, the("P6-run"), sizes.subscriptions, say),
        ],
        lambda: [
            usage_billable.measure(
                pg_url, say, nats_url=nats_url, redis_url=redis_url, knobs=billable
            )
        ],
    ]
    for step in steps:
        measured = step()
        for figure in measured:
            figure.size = figure.size or sizes.label()
        figures += measured
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
