"""P4: projection lag, commit -> relay -> JetStream -> projector -> read model, at a steady rate.

Lag of one event = the wall time its read-model transaction committed minus the event's
`recorded_at` (stamped as it is written, just before the command commits), so the figure
slightly overstates the true commit-to-read-model time.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from adapters.bootstrap import System, bootstrap
from adapters.nats.projector_worker import ProjectorWorker
from adapters.nats.relay import Relay
from adapters.nats.workers import build_projector_worker, build_relay
from adapters.settings import Settings
from benchmarks.common import create_schema, drop_schema, percentile, seed_tenants
from benchmarks.report import Figure
from commands.quotas.consume_quota import ConsumeQuota
from domain.clock import SettableClock
from projections.envelope import EventEnvelope

TENANTS = 100
TICK = 0.01  # a group commit every 10 ms


def measure(
    pg_url: str, nats_url: str, rate: int = 1000, seconds: float = 10.0, say: Any = print
) -> Figure:
    run_id = uuid.uuid4().hex[:10]
    schema = f"bench_lag_{run_id}"
    create_schema(pg_url, schema)
    settings = Settings(
        database_url=pg_url,
        nats_url=nats_url,
        nats_stream=f"BENCH_LAG_{run_id.upper()}",
        nats_subject_prefix=f"bench.lag.{run_id}",
        relay_idle_seconds=0.002,
    )
    system = bootstrap(
        settings, SettableClock(datetime.now(UTC)), schema=schema, deliver_in_process=False
    )
    try:
        _seed(system)
        say(f"P4: {rate} events/s for {seconds:.0f} s through relay, JetStream and projectors …")
        lags, produced = asyncio.run(_run(system, pg_url, schema, rate, seconds))
    finally:
        system.close()
        asyncio.run(_delete_stream(nats_url, settings.nats_stream))
        drop_schema(pg_url, schema)
    lags.sort()
    p50, p99 = percentile(lags, 50), percentile(lags, 99)
    return Figure(
        key="P4",
        what=f"projection lag at {rate:,} events/s ({produced:,} events, commit → read model)",
        value=p99,
        unit="ms p99",
        target="p99 ≤ 50 ms",
        notes=f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lags[-1]:.1f} ms over {len(lags):,} "
        "events (usage read model; load from a separate process, relay polling every 2 ms)",
        extra={"p50_ms": p50, "p99_ms": p99, "events": float(len(lags))},
    )


def _seed(system: System) -> None:
    seed_tenants(system, "bench", TENANTS, [{"key": "api", "kind": "metered", "limit": 10**12}])


async def _run(
    system: System, pg_url: str, schema: str, rate: int, seconds: float
) -> tuple[list[float], int]:
    lags: list[float] = []
    usage = next(p for p in system.runner.projectors if p.NAME == "usage")
    original = usage.after_commit

    def timed(events: Sequence[EventEnvelope]) -> None:
        now = time.time()
        for event in events:
            if event.recorded_at:
                lag = (now - datetime.fromisoformat(event.recorded_at).timestamp()) * 1000
                lags.extend([lag] * usage_events_in(event))
        original(events)

    usage.after_commit = timed  # type: ignore[method-assign]
    relay = build_relay(system)
    workers: list[Relay | ProjectorWorker] = [
        relay,
        *(build_projector_worker(system, p.NAME, p) for p in system.runner.projectors),
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(worker.run(stop)) for worker in workers]
    await asyncio.sleep(1.0)  # connect, create the stream and consumers
    lags.clear()
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # other services, not us
        produced = await asyncio.to_thread(pool.apply, _produce, (pg_url, schema, rate, seconds))
    deadline = time.monotonic() + 30
    while len(lags) < produced and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    for worker in workers:
        worker.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    return lags, produced


def usage_events_in(event: EventEnvelope) -> int:
    """How many consume commands an event counted: one for QuotaConsumed, and a group
    commit's UsageRecorded (one per quota per batch) carries one fact per command."""
    if event.type == "QuotaConsumed":
        return 1
    if event.type == "UsageRecorded":
        return len(event.data.get("facts", [])) + len(event.data.get("late_facts", []))
    return 0


def _produce(pg_url: str, schema: str, rate: int, seconds: float) -> int:
    """A separate process sending usage through its own command bus at a steady rate."""
    system = bootstrap(Settings(database_url=pg_url), schema=schema, deliver_in_process=False)
    try:
        return _steady(system, rate, seconds)
    finally:
        system.close()


def _steady(system: System, rate: int, seconds: float) -> int:
    per_tick = max(1, round(rate * TICK))
    produced, n = 0, 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        commands = []
        for _ in range(per_tick):
            n += 1
            commands.append(
                ConsumeQuota(
                    app_id="bench",
                    tenant_id=f"t{n % TENANTS}",
                    feature_key="api",
                    idempotency_key=f"k{n}",
                )
            )
        system.bus.handle_many(commands)
        produced += len(commands)
        next_tick = started + (produced / per_tick) * TICK
        time.sleep(max(0.0, next_tick - time.monotonic()))
    return produced


async def _delete_stream(nats_url: str, stream: str) -> None:
    import nats

    nc = await nats.connect(nats_url)
    try:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()
