"""P9 cold start and P8 memory of `tally serve` (TARGETS.md).

P9: `tally serve` launched as a child process on a scratch PostgreSQL database (with NATS and
Redis when they answer, as the real stack runs) until its first 200 on /health, several times;
the first start also applies the migrations and is reported apart. Baseline: `python -c pass`
in the same venv, the same number of times.

P8: one `tally serve` under a mixed load for a fixed time, from client threads on keep-alive
connections: entitlement checks (P3's route), usage batches of 100 (P2's route) and commands
(consume_quota through `POST /v1/commands/{name}`, P1's command over HTTP); the server's peak
resident set (VmHWM of /proc/<pid>/status) is the figure, sampled RSS beside it.
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import bench_system, seed_tenants
from benchmarks.report import Figure
from benchmarks.tally_server import TallyServer, forget_run, scratch_database, server_env

APP = "bench"
TENANTS = 200
FEATURES: list[dict[str, Any]] = [
    {"key": "api", "kind": "metered", "limit": 100_000_000, "enforcement": "soft"},
    {"key": "sso", "kind": "boolean"},
]


def measure(
    pg_url: str,
    say: Any = print,
    *,
    nats_url: str | None = None,
    redis_url: str | None = None,
    starts: int = 5,
    load_seconds: float = 20.0,
) -> list[Figure]:
    run_id = uuid.uuid4().hex[:8]
    try:
        with scratch_database(pg_url, "bench_cold") as db_url:
            env = server_env(db_url, run_id, nats_url, redis_url)
            first, times, cpu = _starts(env, starts, say)
            baseline = _python_pass(starts)
            key = _seed(db_url)
            memory = _memory(env, key, load_seconds, say)
    finally:
        forget_run(nats_url, redis_url, run_id)
    return [_p9(first, times, cpu, baseline, env), _p8(memory, load_seconds)]


def _starts(env: dict[str, str], starts: int, say: Any) -> tuple[float, list[float], list[float]]:
    """(the first start, which migrates; the following ones) in seconds to the first 200,
    and the CPU seconds each server had used by then (what a loaded machine cannot inflate)."""
    seconds: list[float] = []
    cpu: list[float] = []
    for n in range(starts + 1):
        server = TallyServer(env)
        try:
            seconds.append(server.start())
            cpu.append(server.cpu()["api"])
        finally:
            server.stop()
            server.discard_log()
        say(f"P9: start {n}: {seconds[-1]:.2f} s to the first 200 on /health, {cpu[-1]:.2f} s CPU")
    return seconds[0], seconds[1:], cpu[1:]


def _python_pass(runs: int) -> float:
    """Median seconds of `python -c pass` in this venv."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def _p9(
    first: float, times: list[float], cpu: list[float], baseline: float, env: dict[str, str]
) -> Figure:
    median = statistics.median(times)
    stack = "PostgreSQL" + (", NATS" if "TALLY_NATS_URL" in env else "")
    stack += ", Redis" if "TALLY_REDIS_URL" in env else ""
    return Figure(
        key="P9",
        what="cold start: `tally serve` launched → first 200 on /health",
        value=median * 1000,
        unit="ms (median)",
        target="≤ 1,500 ms",
        baseline=baseline * 1000,
        baseline_what="ms `python -c pass`",
        extra={
            "max_ms": max(times) * 1000,
            "first_start_ms": first * 1000,
            "cpu_ms": statistics.median(cpu) * 1000,
        },
        notes=f"{len(times)} starts on a migrated scratch database ({stack}): median "
        f"{median * 1000:,.0f} ms, slowest {max(times) * 1000:,.0f} ms; the first start, "
        f"which applied the migrations, {first * 1000:,.0f} ms; the server had used "
        f"{statistics.median(cpu) * 1000:,.0f} ms of CPU by its first 200 (median; what a "
        f"loaded machine cannot inflate); `python -c pass` {baseline * 1000:,.0f} ms",
    )


# --- P8 --------------------------------------------------------------------------------------


def _seed(db_url: str) -> str:
    """A plan, TENANTS subscriptions and a write key, straight through the command bus."""
    system = bench_system(db_url, None)  # type: ignore[arg-type]
    try:
        seed_tenants(system, APP, TENANTS, FEATURES)
        reply = system.dispatch(
            "create_api_key", {"app_id": APP, "scope": "write", "actor": "bench"}
        )
        assert reply["ok"], reply
        return str(reply["result"]["api_key"])
    finally:
        system.close()


def _memory(env: dict[str, str], key: str, seconds: float, say: Any) -> dict[str, Any]:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    server = TallyServer(env | {"TALLY_RATE_LIMIT_PER_KEY": "0"})
    server.start()
    assert server.process is not None
    pid = server.process.pid
    try:
        idle = _rss_kb(pid, "VmRSS")
        done = threading.Event()
        counts: dict[str, int] = {"checks": 0, "usage events": 0, "commands": 0, "errors": 0}
        loads = [_checks, _usage, _commands, _checks]
        threads = [
            threading.Thread(target=load, args=(server.base_url, key, done, counts, n))
            for n, load in enumerate(loads)
        ]
        samples: list[int] = []
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            samples.append(_rss_kb(pid, "VmRSS"))
            time.sleep(0.25)
        done.set()
        for thread in threads:
            thread.join()
        peak = _rss_kb(pid, "VmHWM")
    finally:
        server.stop()
        server.discard_log()
    say(f"P8: peak RSS {peak / 1024:,.0f} MB under load ({counts})")
    return {"idle": idle, "peak": peak, "samples": samples, "counts": counts}


def _checks(base: str, key: str, done: threading.Event, counts: dict[str, int], n: int) -> None:
    features = ["api", "sso"]
    with _client(base, key) as http:
        i = 0
        while not done.is_set():
            i += 1
            path = f"/v1/tenants/t{(i * 7 + n) % TENANTS}/entitlements/{features[i % 2]}"
            _count(counts, "checks", http.get(path).status_code)


def _usage(base: str, key: str, done: threading.Event, counts: dict[str, int], n: int) -> None:
    with _client(base, key) as http:
        batch = 0
        while not done.is_set():
            batch += 1
            events = [
                {
                    "tenant_id": f"t{(batch + i) % TENANTS}",
                    "feature_key": "api",
                    "quantity": 1,
                    "idempotency_key": f"m{n}-{batch}-{i}",
                }
                for i in range(100)
            ]
            status = http.post("/v1/usage", json={"events": events}).status_code
            _count(counts, "usage events", status, 100)


def _commands(base: str, key: str, done: threading.Event, counts: dict[str, int], n: int) -> None:
    with _client(base, key) as http:
        i = 0
        while not done.is_set():
            i += 1
            body = {
                "tenant_id": f"t{i % TENANTS}",
                "feature_key": "api",
                "amount": 1,
                "idempotency_key": f"c{n}-{i}",
            }
            status = http.post("/v1/commands/consume_quota", json=body).status_code
            _count(counts, "commands", status)


def _client(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _count(counts: dict[str, int], what: str, status: int, n: int = 1) -> None:
    counts[what if status < 400 else "errors"] += n if status < 400 else 1


def _rss_kb(pid: int, field: str) -> int:
    """A memory field of /proc/<pid>/status in kB (VmRSS now, VmHWM the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def _p8(memory: dict[str, Any], seconds: float) -> Figure:
    peak_mb, idle_mb = memory["peak"] / 1024, memory["idle"] / 1024
    samples = memory["samples"] or [0]
    counts = ", ".join(f"{v:,} {k}" for k, v in memory["counts"].items())
    return Figure(
        key="P8",
        what="memory of `tally serve` under load (checks, usage batches, commands)",
        value=peak_mb,
        unit="MB peak RSS",
        target="≤ 400 MB RSS",
        extra={"idle_mb": idle_mb, "sampled_max_mb": max(samples) / 1024},
        notes=f"{seconds:g} s of 2 check clients, 1 usage client (batches of 100) and 1 "
        f"command client on keep-alive connections: {counts}; RSS idle {idle_mb:,.0f} MB, "
        f"sampled max {max(samples) / 1024:,.0f} MB, peak (VmHWM) {peak_mb:,.0f} MB",
    )
