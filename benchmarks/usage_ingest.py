"""P2: usage ingest over HTTP, durable, idempotency keys deduped, batches of 1,000, beside a
psycopg COPY of the same rows in the same run.

Set-up: a scratch database of its own (benchmarks/tally_server.py), one app with a write API
key, N tenants each subscribed to a plan whose metered feature `api` is SOFT (over the limit
is overage, never a refusal), then the real `tally serve` on it (with NATS and Redis when
given: the relay and projectors run in the server, as on the real stack).

The measured pass: K concurrent clients (httpx, one keep-alive connection each) take the next
prepared batch and POST `/v1/usage` `{"events": [...]}` of plain events `{tenant_id,
feature_key, quantity, idempotency_key}` (random tenant, quantity 1..5, every key new) until
every batch is sent, or no new batch is taken after `max_seconds`. The figure is the events
answered `accepted` per second of wall time over the pass; p50/p99 are per batch, send to
full response. One warm-up batch goes first, outside the timing.

The durability check, after the pass: the server is SIGKILLed (nothing it acknowledged may be
lost with it) and started again. Once a barrier event (a new key on an extra tenant that no
batch uses) is counted, the usage read model (`GET /v1/tenants/{id}/usage`, month buckets),
which applies events in log order, must count per tenant exactly the events and quantity sent
(the distinct keys); a second pass resends `resend_percent` of the batches, every event of
which must answer as a duplicate, and after a second barrier no total may have moved.

The baseline: psycopg `COPY` of the same rows (app, tenant, feature, key, quantity, time) into
a logged table with a PRIMARY KEY on (app, key), one transaction per batch, same database.

Env knobs (benchmarks/run.py and `python -m benchmarks.usage_ingest`): BENCH_INGEST_TENANTS
(100), BENCH_INGEST_CLIENTS (8), BENCH_INGEST_BATCHES (200), BENCH_INGEST_BATCH_SIZE (1000),
BENCH_INGEST_SECONDS (120; 0 = no cap), BENCH_INGEST_RESEND_PERCENT (10), BENCH_INGEST_NATS
(1; 0 runs the server on in-process delivery instead of NATS).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import psycopg
from psycopg import sql

from benchmarks.common import percentile
from benchmarks.report import Figure
from benchmarks.tally_server import (
    CpuMeter,
    TallyServer,
    bench_settings,
    delivery,
    forget_run,
    scratch_database,
    server_env,
    split_workers,
)

APP = "bench"
FEATURE = "api"
SOFT_LIMIT = 1000
REQUEST_TIMEOUT = 300.0  # a batch of 1,000 takes seconds on a slow ingest path
OUTCOMES = ("accepted", "duplicates", "refused", "failed")


@dataclass(frozen=True)
class Batch:
    """One prepared POST /v1/usage body and what it carries."""

    index: int
    body: bytes
    rows: tuple[tuple[str, str, str, int], ...]  # (tenant, feature, key, quantity)

    @property
    def events(self) -> int:
        return len(self.rows)


@dataclass
class Pass:
    """What the server answered to one pass over some batches."""

    posted: list[Batch] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    load: float = 0.0  # the 1-minute load average when the pass started
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds over the pass: the API process (`api`); until the read model counted it
    all: each worker process (by name) and the database's backends (`postgres`)."""


@dataclass(frozen=True)
class Knobs:
    """The sizes of one run (defaults: the TARGETS.md workload)."""

    tenants: int = 100
    clients: int = 8
    batches: int = 200
    batch_size: int = 1000
    max_seconds: float = 120.0
    resend_percent: float = 10.0
    use_nats: bool = True
    split_workers: bool = True  # with NATS: the workers in processes of their own
    settle_seconds: float = 300.0  # how long the read model may take to catch up

    @classmethod
    def from_env(cls) -> Knobs:
        env = os.environ.get
        return cls(
            tenants=int(env("BENCH_INGEST_TENANTS", cls.tenants)),
            clients=int(env("BENCH_INGEST_CLIENTS", cls.clients)),
            batches=int(env("BENCH_INGEST_BATCHES", cls.batches)),
            batch_size=int(env("BENCH_INGEST_BATCH_SIZE", cls.batch_size)),
            max_seconds=float(env("BENCH_INGEST_SECONDS", cls.max_seconds)),
            resend_percent=float(env("BENCH_INGEST_RESEND_PERCENT", cls.resend_percent)),
            use_nats=env("BENCH_INGEST_NATS", "1") != "0",
            split_workers=env("BENCH_INGEST_SPLIT", "1") != "0",
        )


def measure(
    pg_url: str,
    say: Callable[[str], Any] = print,
    *,
    nats_url: str | None = None,
    redis_url: str | None = None,
    knobs: Knobs | None = None,
) -> Figure:
    knobs = knobs or Knobs()
    run_id = uuid.uuid4().hex[:10]
    nats_url = nats_url if knobs.use_nats else None
    work = make_batches(run_id, knobs.batches + 1, knobs.batch_size, knobs.tenants)
    warmup, timed = work[:1], work[1:]
    with scratch_database(pg_url, "bench_ingest") as db_url:
        baseline = copy_rate(db_url, timed)
        one_transaction = copy_rate(db_url, timed, commit_each=False, table="bench_copy_one")
        say(
            f"P2: baseline COPY {baseline:,.0f} rows/s (a commit per batch), "
            f"{one_transaction:,.0f} rows/s in one transaction; seeding {knobs.tenants} tenants …"
        )
        api_key = seed(db_url, knobs.tenants + 1)  # + the barrier tenant
        split = split_workers() if nats_url and knobs.split_workers else {}
        server = TallyServer(server_env(db_url, run_id, nats_url, redis_url), workers=split)
        try:
            server.start()
            run = _drive(server.base_url, api_key, warmup, 1, 0.0)
            cap = f"no new batch after {knobs.max_seconds:g}s" if knobs.max_seconds else "no cap"
            say(
                f"P2: {len(timed)} batches of {knobs.batch_size:,} from {knobs.clients} "
                f"clients ({cap}) …"
            )
            meter = CpuMeter(server, db_url).start()
            with sampled(server, os.environ.get("BENCH_INGEST_PYSPY")):
                measured = _drive(server.base_url, api_key, timed, knobs.clients, knobs.max_seconds)
            measured.cpu = meter.read()
            server.check_workers()
            say("P2: SIGKILL, restart, then the durability check …")
            problems = check_durability(
                server, api_key, knobs, [*run.posted, *measured.posted], meter, measured
            )
            meter.close()
        finally:
            server.stop()
            server.discard_log()
            forget_run(nats_url, redis_url, run_id)
    return figure(
        knobs,
        measured,
        (baseline, one_transaction),
        problems,
        warmup_problems=run.problems,
        served=delivery(nats_url, knobs.split_workers),
    )


PY_SPY = ("uvx", "py-spy", "record", "--rate", "50", "--format", "raw")


@contextlib.contextmanager
def sampled(server: TallyServer, output: str | None) -> Iterator[None]:
    """With an output path (BENCH_INGEST_PYSPY), py-spy samples the API process (`--gil`:
    what holds its GIL, unless BENCH_INGEST_PYSPY_GIL=0; to `<output>.api`) and each worker
    process (to `<output>.<worker name>`) while the pass runs: raw collapsed stacks (`uvx
    py-spy`, from PyPI)."""
    if not output or server.process is None:
        yield
        return
    gil = ["--gil"] if os.environ.get("BENCH_INGEST_PYSPY_GIL", "1") != "0" else []
    targets = [("api", server.process.pid, gil)]
    targets += [(name, p.pid, []) for name, p in server.worker_processes.items()]
    spies = [
        subprocess.Popen(
            [*PY_SPY, *flags, "--output", f"{output}.{name}", "--pid", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid, flags in targets
    ]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in spies:
            spy.wait(60)


# --- the workload ---------------------------------------------------------------------------


def make_batches(run_id: str, count: int, size: int, tenants: int) -> list[Batch]:
    """`count` bodies of `size` plain events, each key new, random tenant and quantity."""
    rng = random.Random(12)
    batches = []
    for b in range(count):
        rows = tuple(
            (f"t{rng.randrange(tenants)}", FEATURE, f"{run_id}-{b}-{i}", rng.randint(1, 5))
            for i in range(size)
        )
        batches.append(batch_of(b, rows))
    return batches


def batch_of(index: int, rows: tuple[tuple[str, str, str, int], ...]) -> Batch:
    """The POST /v1/usage body {"events": [...]} of these (tenant, feature, key, quantity)."""
    events = [
        {"tenant_id": t, "feature_key": f, "quantity": q, "idempotency_key": k}
        for t, f, k, q in rows
    ]
    return Batch(index, orjson.dumps({"events": events}), rows)


SOFT_FEATURE: dict[str, Any] = {
    "key": FEATURE,
    "kind": "metered",
    "limit": SOFT_LIMIT,
    "enforcement": "soft",
}


def seed(
    db_url: str, tenants: int, feature: dict[str, Any] | None = None, *, bill_start: bool = False
) -> str:
    """The plan (a soft metered feature), a subscription per tenant; returns a write key.
    With bill_start, a billing run invoices the starts (the fees in advance), so that each
    subscription's upcoming invoice is the renewal that bills the period's usage."""
    from adapters.billing.runs import run_billing
    from adapters.bootstrap import bootstrap
    from benchmarks.common import seed_tenants
    from domain.clock import SettableClock

    clock = SettableClock(datetime.now(UTC))  # the server that follows runs on the wall clock
    system = bootstrap(bench_settings(db_url), clock, deliver_in_process=False)
    try:
        seed_tenants(system, APP, tenants, [feature or SOFT_FEATURE])
        if bill_start:
            system.sync()
            report = run_billing(system, system.index.ids, APP, clock, clock.now())
            if report["errors"] or report["invoiced"] != tenants:
                raise RuntimeError(f"the first billing run went wrong: {report}")
        reply = system.dispatch(
            "create_api_key", {"app_id": APP, "scope": "write", "actor": "bench"}
        )
        if not reply["ok"]:
            raise RuntimeError(f"create_api_key failed: {reply['error']}")
        system.sync()
        return str(reply["result"]["api_key"])
    finally:
        system.close()


# --- the clients ------------------------------------------------------------------------------


def _drive(
    base_url: str, api_key: str, batches: Sequence[Batch], clients: int, max_seconds: float
) -> Pass:
    return asyncio.run(post_batches(base_url, api_key, batches, clients, max_seconds))


async def post_batches(
    base_url: str, api_key: str, batches: Sequence[Batch], clients: int, max_seconds: float
) -> Pass:
    """K clients share the batches (each takes the next); no new batch after max_seconds."""
    result = Pass(load=os.getloadavg()[0])
    queue = iter(batches)
    started = time.perf_counter()
    deadline = started + max_seconds if max_seconds > 0 else float("inf")
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    async def client() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, limits=limits, timeout=REQUEST_TIMEOUT
        ) as http:
            for batch in queue:
                if time.perf_counter() > deadline:
                    break
                result.posted.append(batch)
                sent = time.perf_counter()
                try:
                    response = await http.post("/v1/usage", content=batch.body)
                except httpx.HTTPError as error:
                    result.problems.append(f"batch {batch.index}: {type(error).__name__}")
                    result.counts["errors"] += 1
                    continue
                result.latencies.append(time.perf_counter() - sent)
                _count(result, batch, response)

    await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


def _count(result: Pass, batch: Batch, response: httpx.Response) -> None:
    if response.status_code != 200:
        result.counts["errors"] += 1
        result.problems.append(
            f"batch {batch.index}: HTTP {response.status_code} {response.text[:200]}"
        )
        return
    answer = orjson.loads(response.content)
    for outcome in OUTCOMES:
        result.counts[outcome] += int(answer.get(outcome, 0))
    answered = sum(int(answer.get(outcome, 0)) for outcome in OUTCOMES)
    if answered != batch.events:
        result.problems.append(f"batch {batch.index}: {answered} of {batch.events} answered")


# --- durability --------------------------------------------------------------------------------


Totals = dict[str, tuple[int, int]]  # tenant -> (events, quantity)


def expected_totals(batches: Sequence[Batch], tenants: int) -> Totals:
    events: Counter[str] = Counter()
    quantity: Counter[str] = Counter()
    for batch in batches:
        for tenant, _, _, q in batch.rows:
            events[tenant] += 1
            quantity[tenant] += q
    return {f"t{n}": (events[f"t{n}"], quantity[f"t{n}"]) for n in range(tenants)}


def read_totals(base_url: str, api_key: str, tenants: Sequence[str]) -> Totals:
    """Each tenant's (events, quantity) of the feature, from the usage read model over HTTP."""
    totals: Totals = {}
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        for tenant in tenants:
            response = http.get(
                f"/v1/tenants/{tenant}/usage", params={"feature": FEATURE, "granularity": "month"}
            )
            response.raise_for_status()
            rows = response.json()["usage"]
            totals[tenant] = (
                sum(int(r["events"]) for r in rows),
                sum(int(r["quantity"]) for r in rows),
            )
    return totals


def barrier_tenant(tenants: int) -> str:
    """The extra tenant seeded for the barrier events (never in a measured batch)."""
    return f"t{tenants}"


def barrier(server: TallyServer, api_key: str, knobs: Knobs, n: int) -> list[str]:
    """Record the n-th barrier event (a new key, on the barrier tenant) and wait until the
    read model counts it: the usage read model applies events in log order, so every event
    acknowledged before it is counted by then."""
    tenant = barrier_tenant(knobs.tenants)
    event = (tenant, FEATURE, f"barrier-{n}", 1)
    answer = _drive(server.base_url, api_key, [batch_of(-n, (event,))], 1, 0.0)
    if answer.counts["accepted"] != 1:
        return [f"barrier event {n} was not accepted: {answer.problems or dict(answer.counts)}"]
    deadline = time.monotonic() + knobs.settle_seconds
    while read_totals(server.base_url, api_key, [tenant])[tenant][0] < n:
        if time.monotonic() > deadline:
            return [f"the usage read model did not count barrier event {n} in time"]
        time.sleep(0.05)
    return []


def differences(label: str, expected: Totals, found: Totals) -> list[str]:
    wrong = [t for t in expected if expected[t] != found.get(t)]
    if not wrong:
        return []
    first = wrong[0]
    return [
        f"{label}: {len(wrong)} tenants differ (e.g. {first}: expected (events, quantity) "
        f"{expected[first]}, read model {found.get(first)})"
    ]


def check_durability(
    server: TallyServer,
    api_key: str,
    knobs: Knobs,
    posted: Sequence[Batch],
    meter: CpuMeter | None = None,
    measured: Pass | None = None,
) -> list[str]:
    """Kill -9 and restart; totals = what was sent; a resend is all duplicates; totals hold.
    The meter is read once the read model counted everything (the workers' and PostgreSQL's
    CPU for the pass, projection included)."""
    server.kill()
    server.start()
    expected = expected_totals(posted, knobs.tenants)
    problems = barrier(server, api_key, knobs, 1)
    if meter is not None and measured is not None:
        caught_up = meter.read()
        measured.cpu |= {name: cpu for name, cpu in caught_up.items() if name != "api"}
    found = read_totals(server.base_url, api_key, list(expected))
    problems += differences("after SIGKILL and restart", expected, found)
    step = max(1, round(100 / knobs.resend_percent)) if knobs.resend_percent > 0 else 0
    resend = list(posted[::step]) if step else []
    again = _drive(server.base_url, api_key, resend, knobs.clients, 0.0)
    resent = sum(b.events for b in resend)
    if again.counts["duplicates"] != resent or again.counts["errors"]:
        problems.append(
            f"resending {resent:,} events: {dict(again.counts)} (expected all duplicates)"
        )
    problems += again.problems[:3]
    problems += barrier(server, api_key, knobs, 2)
    found = read_totals(server.base_url, api_key, list(expected))
    problems += differences("after the resend", expected, found)
    return problems


# --- the raw baseline -------------------------------------------------------------------------


def copy_rate(
    db_url: str, batches: Sequence[Batch], *, commit_each: bool = True, table: str = "bench_copy"
) -> float:
    """Rows/s of psycopg COPY of the same rows into a logged table with PRIMARY KEY (app, key):
    a COPY and a commit per batch (as durable batches need), or one transaction for all."""
    columns = "app_id, tenant_id, feature_key, idempotency_key, quantity, recorded_at"
    with psycopg.connect(db_url) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (app_id TEXT NOT NULL, tenant_id TEXT NOT NULL, "
                "feature_key TEXT NOT NULL, idempotency_key TEXT NOT NULL, "
                "quantity BIGINT NOT NULL, recorded_at TIMESTAMPTZ NOT NULL, "
                "PRIMARY KEY (app_id, idempotency_key))"
            ).format(sql.Identifier(table))
        )
        conn.commit()
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(columns)
        )
        rows, started = 0, time.perf_counter()
        for batch in batches:
            now = datetime.now(UTC)
            with conn.cursor() as cur, cur.copy(statement) as copy:
                for tenant, feature, key, quantity in batch.rows:
                    copy.write_row((APP, tenant, feature, key, quantity, now))
            if commit_each:
                conn.commit()
            rows += batch.events
        conn.commit()
        elapsed = time.perf_counter() - started
    return rows / elapsed if elapsed > 0 else 0.0


# --- the figure ---------------------------------------------------------------------------------


def cpu_figures(run: Pass) -> dict[str, float]:
    """CPU microseconds per accepted event: API process, workers, PostgreSQL."""
    accepted = run.counts["accepted"]
    if not accepted or not run.cpu:
        return {}
    return {f"{name}_cpu_us_per_event": s * 1e6 / accepted for name, s in run.cpu.items()}


def cpu_note(run: Pass) -> str:
    """Where the CPU went, per event, and the rate one free core each would allow."""
    per = cpu_figures(run)
    if not per:
        return ""
    api = per.get("api_cpu_us_per_event", 0.0)
    parts = ", ".join(
        f"{name.removesuffix('_cpu_us_per_event')} {us:.1f} µs" for name, us in per.items()
    )
    bound = f" (the API process alone on one free core: ~{1e6 / api:,.0f} events/s)" if api else ""
    return f"CPU per accepted event: {parts}{bound}; load average at the start {run.load:.1f}"


def figure(
    knobs: Knobs,
    run: Pass,
    baselines: tuple[float, float],
    problems: list[str],
    *,
    warmup_problems: Sequence[str] = (),
    served: str = "",
) -> Figure:
    baseline, one_transaction = baselines
    problems = [*warmup_problems, *run.problems[:5], *problems]
    counts = run.counts
    if counts["refused"] or counts["failed"] or counts["duplicates"]:
        problems.append(
            f"first pass: {counts['refused']} refused, {counts['failed']} failed, "
            f"{counts['duplicates']} duplicates (expected none)"
        )
    rate = counts["accepted"] / run.seconds if run.seconds else 0.0
    p50 = percentile(run.latencies, 50) * 1000
    p99 = percentile(run.latencies, 99) * 1000
    events = sum(b.events for b in run.posted)
    capped = (
        f" (no new batch after {knobs.max_seconds:g}s: {len(run.posted)} of {knobs.batches} sent)"
        if len(run.posted) < knobs.batches
        else ""
    )
    check = (
        "durability check passed: after SIGKILL and a restart the usage read model counted "
        "every event sent exactly once, the resent batches answered all duplicates and "
        "changed no total"
        if not problems
        else "DURABILITY CHECK FAILED: " + "; ".join(problems[:6])
    )
    return Figure(
        key="P2",
        what=f"usage ingest over HTTP, durable, deduped, batches of {knobs.batch_size:,}, "
        f"{knobs.clients} clients",
        value=rate,
        unit="events/s",
        target="≥ 100,000 events/s",
        baseline=baseline,
        baseline_what="rows/s psycopg COPY (logged, PK (app, key), commit per batch)",
        ratio_target=0.35,
        extra={
            "p50_ms": p50,
            "p99_ms": p99,
            "seconds": run.seconds,
            "batches": float(len(run.posted)),
            "events": float(events),
            **{name: float(counts[name]) for name in (*OUTCOMES, "errors")},
            "tenants": float(knobs.tenants),
            "durable": 0.0 if problems else 1.0,
            "copy_one_transaction_rows_s": one_transaction,
            **cpu_figures(run),
        },
        notes=(
            f"{events:,} plain events in {len(run.posted)} batches of {knobs.batch_size:,} "
            f"from {knobs.clients} keep-alive clients, random tenant of {knobs.tenants} (soft "
            f"metered feature){capped}, `tally serve` with {served or delivery(None)}: "
            f"{counts['accepted']:,} accepted in {run.seconds:.1f}s; "
            f"per batch p50 {p50:,.0f} ms, **p99 {p99:,.0f} ms**; {check}. Baseline: psycopg "
            f"COPY of the same rows into a logged table with PRIMARY KEY (app, key), a COPY and "
            f"a commit per batch (every reply comes after a commit); all in one transaction "
            f"instead: {one_transaction:,.0f} rows/s. {cpu_note(run)}"
        ),
    )


if __name__ == "__main__":
    print(
        measure(
            os.environ.get("TALLY_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
            nats_url=os.environ.get("TALLY_BENCH_NATS_URL", "nats://127.0.0.1:4222"),
            knobs=Knobs.from_env(),
        )
    )
