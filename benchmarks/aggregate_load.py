"""P7: loading an aggregate with a long history (TARGETS.md: 100,000 events in <= 5 ms).

On a scratch schema, one tenant's quota is consumed `events` times through the command bus
(group commits of 1,000), so its history holds that many events; the ledger snapshots every
`snapshot_interval` events (TALLY_SNAPSHOT_INTERVAL, 100). Then the quota is loaded from the
store again and again at its latest version, past the aggregate cache (`repository.get` with a
version reads the latest snapshot at or below it and the events after): the time of a load
as a process that never saw it would pay. Baseline: the same aggregate rebuilt from its whole
history without snapshots (once; what snapshots save).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from benchmarks.common import bench_system, create_schema, drop_schema, percentile, seed_tenants
from benchmarks.report import Figure

APP = "bench"
FEATURES: list[dict[str, Any]] = [
    {"key": "api", "kind": "metered", "limit": 10_000_000_000, "enforcement": "soft"}
]


def measure(pg_url: str, events: int, say: Any = print, *, loads: int = 200) -> Figure:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    create_schema(pg_url, schema)
    system = bench_system(pg_url, schema)
    try:
        quota, written = _history(system, events, say)
        timings = _loads(system, quota, loads)
        full = _without_snapshots(system, quota)
        interval = system.settings.snapshot_interval
    finally:
        system.close()
        drop_schema(pg_url, schema)
    p50, p99 = percentile(timings, 50), percentile(timings, 99)
    say(f"P7: {written:,} events: load p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    return Figure(
        key="P7",
        what=f"loading an aggregate with {written:,} events in its history (a quota)",
        value=p99,
        unit="ms p99",
        target="≤ 5 ms (snapshots)",
        baseline=full,
        baseline_what="ms rebuilt from the whole history without snapshots",
        extra={"p50_ms": p50, "events": float(written)},
        notes=f"{loads} loads at the latest version past the aggregate cache (snapshot every "
        f"{interval} events, then the events after it): p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
        f"the same aggregate from its {written:,} events without a snapshot: {full:,.0f} ms",
    )


def _history(system: Any, events: int, say: Any) -> tuple[Any, int]:
    """The quota's id and its version once `events` consumes were committed."""
    from commands.quotas.consume_quota import ConsumeQuota
    from domain.quota import quota_id

    seed_tenants(system, APP, 1, FEATURES)
    started = time.perf_counter()
    for first in range(0, events, 1000):
        system.bus.handle_many(
            [
                ConsumeQuota(app_id=APP, tenant_id="t0", feature_key="api", idempotency_key=f"k{n}")
                for n in range(first, min(first + 1000, events))
            ]
        )
    quota = quota_id(APP, "t0", "api")
    version = int(system.ledger.get(quota).version)
    say(f"P7: {version:,} events in the quota's history in {time.perf_counter() - started:.1f} s")
    return quota, version


def _loads(system: Any, quota: Any, loads: int) -> list[float]:
    version = int(system.ledger.get(quota).version)
    timings = []
    for _ in range(loads):
        started = time.perf_counter()
        loaded = system.ledger.get(quota, version=version)
        timings.append((time.perf_counter() - started) * 1000)
        assert loaded.version == version
    return timings


def _without_snapshots(system: Any, quota: Any) -> float:
    """Milliseconds to rebuild the aggregate from all its stored events (no snapshot)."""
    from eventsourcing.application import project_aggregate

    ledger = system.ledger
    started = time.perf_counter()
    stored = ledger.events.get(quota)
    aggregate = project_aggregate(None, list(stored))
    assert aggregate is not None
    return (time.perf_counter() - started) * 1000
