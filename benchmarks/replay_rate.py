"""P5: rebuild every read model from N events, beside a sequential read of the events table."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg import sql

from adapters.bootstrap import System, bootstrap
from adapters.readmodels.parallel_replay import default_processes, replay_in_processes
from adapters.settings import Settings
from benchmarks.common import create_schema, drop_schema, seed_tenants
from benchmarks.report import Figure
from commands.quotas.consume_quota import ConsumeQuota
from domain.clock import SettableClock
from domain.quota import quota_id

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TENANTS = 200


def measure(pg_url: str, events: int, say: Any = print) -> Figure:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    create_schema(pg_url, schema)
    system = bootstrap(
        Settings(database_url=pg_url), SettableClock(T0), schema=schema, deliver_in_process=False
    )
    if not system.runner.projectors:
        system.close()
        raise RuntimeError("P5 needs at least one read model (projections/registry.py)")
    try:
        say(f"P5: writing {events:,} events into schema {schema} …")
        _seed(system, events)
        total = system.ledger.recorder.max_notification_id() or 0
        baseline = _sequential_read_rate(pg_url, schema)
        say(f"P5: baseline sequential read {baseline:,.0f} rows/s; replaying …")
        names = [projector.NAME for projector in system.runner.projectors]
        processes = default_processes(len(names))
        started = time.perf_counter()
        done = replay_in_processes(system.settings, schema, names, processes=processes)
        rate = total / (time.perf_counter() - started)
        per_projector = {f"{d.name} events/s": total / d.seconds for d in done}
    finally:
        system.close()
        drop_schema(pg_url, schema)
    return Figure(
        key="P5",
        what=f"replay: rebuild all {len(per_projector)} read models from {total:,} events",
        value=rate,
        unit="events/s",
        target="≥ 50,000 events/s",
        baseline=baseline,
        baseline_what="rows/s sequential read",
        ratio_target=0.25,
        extra=per_projector,
        notes=f"{processes} replay processes (one per core, the read models shared out); "
        "per read model, in its process: "
        + ", ".join(f"{k.split()[0]} {v:,.0f}/s" for k, v in per_projector.items()),
    )


def _seed(system: System, events: int) -> None:
    """Real plans, subscriptions and quotas through the bus, then bulk usage events cloned
    from a real QuotaConsumed (same shape, fresh ids and versions)."""
    app = "bench"
    seed_tenants(system, app, TENANTS, [{"key": "api-calls", "kind": "metered", "limit": 10**12}])
    system.handle(
        ConsumeQuota(app_id=app, tenant_id="t0", feature_key="api-calls", idempotency_key="k0")
    )
    recorder = system.ledger.recorder
    template = recorder.select_notifications(
        start=recorder.max_notification_id(), limit=1, inclusive_of_start=True
    )[0]
    state = orjson.loads(template.state)
    versions = {n: 1 for n in range(TENANTS)}  # each quota's last version so far
    versions[0] = 2  # t0 also has the template's QuotaConsumed
    remaining = events - (recorder.max_notification_id() or 0)
    rng = random.Random(7)
    while remaining > 0:
        batch = []
        for _ in range(min(2_000, remaining)):  # psycopg stalls on very large pipelined inserts
            n = rng.randrange(TENANTS)
            versions[n] += 1
            at = T0 + timedelta(seconds=versions[n] * 37)
            body = {
                **state,
                "event_id": str(uuid.uuid4()),
                "tenant_id": f"t{n}",
                "idempotency_key": f"k{n}-{versions[n]}",
                "timestamp": at.isoformat(),
            }
            batch.append(
                StoredEvent(
                    originator_id=quota_id(app, f"t{n}", "api-calls"),
                    originator_version=versions[n],
                    topic=template.topic,
                    state=orjson.dumps(body),
                )
            )
        recorder.insert_events(batch)
        remaining -= len(batch)


def _sequential_read_rate(pg_url: str, schema: str) -> float:
    started, rows = time.perf_counter(), 0
    with psycopg.connect(pg_url) as conn, conn.cursor(name="bench_read") as cursor:
        cursor.itersize = 5000
        cursor.execute(
            sql.SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state "
                "FROM {}.tally_events ORDER BY notification_id"
            ).format(sql.Identifier(schema))
        )
        for _ in cursor:
            rows += 1
    return rows / (time.perf_counter() - started)
