"""P1: commands through the NATS command bus, durable (each reply after its commit), from 16
concurrent senders, beside a single-row INSERT+COMMIT loop with psycopg in the same run.

The bus runs in a child process of its own (as `tally worker command-bus` would), on a fresh
PostgreSQL schema; this process is the client: 16 asyncio tasks over two nats-py connections,
each sending consume_quota (with a command_id, as a client that may retry does) for a random
tenant among many, waiting for the reply, and sending the next. Throughput and latency are
counted over a fixed window after a short warm-up.

TALLY_BENCH_BUS_OPTIONS (JSON, e.g. `{"linger": 0.002, "max_batch": 64}`) passes options to the
bus (CommandBusServer) for tuning runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import orjson
import psycopg
from psycopg import sql

from benchmarks.common import bench_system, create_schema, drop_schema, percentile, seed_tenants
from benchmarks.report import Figure

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NATS = "nats://127.0.0.1:4222"
APP = "bench"


def measure(
    pg_url: str,
    nats_url: str,
    say: Any = print,
    *,
    seconds: float = 10.0,
    dedupe_seconds: float = 5.0,
    warmup: float = 1.5,
    senders: int = 16,
    tenants: int = 1000,
) -> list[Figure]:
    """P1 (consume_quota, deduped by its idempotency_key) and P1-dedupe (the same, each also
    carrying a command_id, whose receipt the bus looks up and records)."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    create_schema(pg_url, schema)
    runs: dict[bool, dict[str, Any]] = {}
    try:
        baseline = insert_commit_rate(pg_url, schema, seconds=3.0)
        say(f"P1: baseline single-row INSERT+COMMIT {baseline:,.0f}/s; seeding {tenants} tenants …")
        _seed(pg_url, schema, tenants)
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        server = _spawn_server(pg_url, nats_url, schema, prefix)
        try:
            for with_id, window in ((False, seconds), (True, dedupe_seconds)):
                if window <= 0:
                    continue
                kind = "with a command_id each" if with_id else "idempotency_key only"
                say(f"P1: {senders} senders, {kind}, {window:g}s (+{warmup:g}s warm-up) …")
                before = _events(pg_url, schema)
                runs[with_id] = asyncio.run(
                    _drive(nats_url, prefix, senders, tenants, window, warmup, with_id)
                )
                runs[with_id]["events"] = _events(pg_url, schema) - before
                runs[with_id]["seconds"] = window
        finally:
            stats = _stop_server(server)
            say(f"P1: bus process stats {stats}")
    finally:
        drop_schema(pg_url, schema)
    rss = stats.get("peak_rss_mb", 0.0)
    batch = stats.get("commands", 0) / max(stats.get("batches", 1), 1)
    figures = []
    for with_id, run in runs.items():
        latencies = sorted(run["latencies"])
        rate = len(latencies) / run["seconds"]
        p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
        say(
            f"P1{'-dedupe' if with_id else ''}: {rate:,.0f} commands/s, p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, errors {run['errors']}"
        )
        workload = (
            "consume_quota with a command_id (receipt recorded with the command)"
            if with_id
            else "consume_quota (deduped by its idempotency_key, no command_id)"
        )
        figures.append(
            Figure(
                key="P1-dedupe" if with_id else "P1",
                what=f"NATS command bus, durable, {senders} senders: {workload}",
                value=rate,
                unit="commands/s",
                target="≥ 5,000 commands/s, p99 ≤ 25 ms",
                baseline=baseline,
                baseline_what="single-row INSERT+COMMIT/s (psycopg)",
                ratio_target=2.0,
                extra={
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "errors": float(run["errors"]),
                    "sent": float(run["sent"]),
                    "events_written": float(run["events"]),
                    "avg_batch_whole_run": batch,
                    "bus_peak_rss_mb": rss,
                },
                notes=(
                    f"{workload}, random tenant of {tenants}, {run['seconds']:g}s window; "
                    f"p50 {p50:.1f} ms, **p99 {p99:.1f} ms**, {run['errors']} errors. "
                    f"Group commit averaged {batch:.1f} commands per transaction over the "
                    f"whole run; the bus process peaked at {rss:.0f} MB RSS"
                ),
            )
        )
    return figures


# --- the raw baseline ---------------------------------------------------------------------


def insert_commit_rate(pg_url: str, schema: str, seconds: float = 3.0) -> float:
    """Single-row INSERT + COMMIT, one after another, on one connection."""
    table = sql.Identifier(schema, "bench_scratch")
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL)").format(
                table
            )
        )
        conn.commit()
        insert = sql.SQL("INSERT INTO {} (payload) VALUES (%s)").format(table)
        n, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            conn.execute(insert, (f"row {n}",))
            conn.commit()
            n += 1
    return n / elapsed


# --- seeding ------------------------------------------------------------------------------------


def _seed(pg_url: str, schema: str, tenants: int) -> None:
    """A plan with an unlimited metered feature and a subscription per tenant."""
    system = bench_system(pg_url, schema)
    try:
        seed_tenants(system, APP, tenants, [{"key": "api", "kind": "metered", "limit": None}])
    finally:
        system.close()


def _events(pg_url: str, schema: str) -> int:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "tally_events"))
        ).fetchone()
    return int(row[0]) if row else 0


# --- the bus, in a process of its own -------------------------------------------------------------


def _spawn_server(pg_url: str, nats_url: str, schema: str, prefix: str) -> subprocess.Popen[str]:
    config = {
        "pg_url": pg_url,
        "nats_url": nats_url,
        "schema": schema,
        "prefix": prefix,
        "options": json.loads(os.environ.get("TALLY_BENCH_BUS_OPTIONS", "{}")),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.command_bus", "serve", json.dumps(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:  # log lines may come first
        if line.startswith("ready"):
            return process
        seen.append(line)
    process.kill()
    raise RuntimeError(f"the bus process did not start: {''.join(seen[-5:])!r}")


def _stop_server(process: subprocess.Popen[str]) -> dict[str, float]:
    process.send_signal(signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return {}
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            stats: dict[str, float] = json.loads(line)
            return stats
    return {}


def _serve(config: dict[str, Any]) -> None:
    """Child process: the bus on the bench schema until SIGTERM; prints its stats."""
    from adapters.nats.command_bus import CommandBusServer

    system = bench_system(config["pg_url"], config["schema"], nats_url=config["nats_url"])

    async def main() -> dict[str, float]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        server = CommandBusServer(
            system, config["nats_url"], prefix=config["prefix"], **config.get("options", {})
        )
        await server.start()
        print("ready", flush=True)
        await stop.wait()
        await server.stop()
        return {
            "batches": server.batches,
            "commands": server.batched_commands,
            "store_seconds": server.store_seconds,
        }

    try:
        stats = asyncio.run(main())
    finally:
        system.close()
    stats["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(stats), flush=True)


# --- the senders ---------------------------------------------------------------------------


async def _drive(
    nats_url: str,
    prefix: str,
    senders: int,
    tenants: int,
    seconds: float,
    warmup: float,
    with_command_id: bool,
) -> dict[str, Any]:
    connections = [await nats.connect(nats_url, max_reconnect_attempts=1) for _ in range(2)]
    subject = f"{prefix}.cmd.{APP}.consume_quota"
    latencies: list[float] = []
    counts = {"errors": 0, "sent": 0}
    started = time.perf_counter()
    measure_from, until = started + warmup, started + warmup + seconds

    async def sender(n: int) -> None:
        nc = connections[n % len(connections)]
        rng = random.Random(n)
        while (now := time.perf_counter()) < until:
            key = uuid.uuid4().hex
            body = {
                "tenant_id": f"t{rng.randrange(tenants)}",
                "feature_key": "api",
                "idempotency_key": key,
            }
            if with_command_id:
                body["command_id"] = key
            counts["sent"] += 1
            try:
                reply = await nc.request(subject, orjson.dumps(body), timeout=10)
                ok = orjson.loads(reply.data)["ok"]
            except Exception:
                ok = False
            done = time.perf_counter()
            if not ok:
                counts["errors"] += 1
            elif now >= measure_from and done <= until:
                latencies.append(done - now)

    try:
        await asyncio.gather(*(sender(n) for n in range(senders)))
    finally:
        for nc in connections:
            await nc.close()
    return {"latencies": latencies, **counts}


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        _serve(json.loads(sys.argv[2]))
    else:
        window = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
        for figure in measure(
            os.environ.get("TALLY_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
            os.environ.get("TALLY_BENCH_NATS_URL", DEFAULT_NATS),
            seconds=window,
            dedupe_seconds=window / 2,
        ):
            print(figure)
