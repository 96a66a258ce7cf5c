"""P6: a billing run over N subscriptions with usage lines, and one 1,000-line invoice drafted
and finalized, each beside a raw psycopg write of the same bytes in the same run.

P6-run seeds a fresh PostgreSQL schema: plan "pro" (a base fee and a metered feature with a
graduated overage, soft enforcement), one subscription per tenant, usage over the limit for
every tenant (ConsumeQuota in group commits), read models caught up, and a first billing run
at T0 (the in-advance invoices). It then times the run up to T0 + 31 days, which renews every
subscription, resets its quota and invoices the usage and the next fee. Baseline: N rows the
size of one invoice event written by one executemany INSERT in one transaction.

P6-invoice times `system.handle(DraftInvoice)` with 1,000 usage lines plus
`system.handle(FinalizeInvoice)`, repeated; baseline: one INSERT+COMMIT of a row the size of
that invoice's drafted event, repeated as often.

Both steps settle the heap once the system is built (collect, then freeze what is left), as
`tally serve` and every worker do at start-up (adapters/entrypoints.py `settle_heap`).

Times are in milliseconds (the Markdown prints a baseline without decimals). With
`profile=True` the timed run goes under cProfile and the notes name where the time went.
"""

from __future__ import annotations

import cProfile
import gc
import io
import os
import pstats
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from adapters.billing.runs import run_billing
from adapters.entrypoints import settle_heap
from benchmarks.common import (
    T0,
    bench_system,
    create_schema,
    drop_schema,
    percentile,
    seed_tenants,
)
from benchmarks.report import Figure
from commands.invoices.draft_invoice import DraftInvoice
from commands.invoices.finalize_invoice import FinalizeInvoice
from commands.quotas.consume_quota import ConsumeQuota
from domain.invoice import LineKind

APP = "bench"
FEATURE = "api-calls"
LIMIT = 1_000
USAGE_EVENTS = (700, 600)  # per tenant: 1,300 units, 300 over the limit, across both tiers
OVERAGE: dict[str, Any] = {
    "model": "graduated",
    "tiers": [
        {"up_to": 100, "unit_price": {"amount": 3, "currency": "USD"}},
        {"up_to": None, "unit_price": {"amount_decimal": "0.5", "currency": "USD"}},
    ],
}
PLAN_FEATURES: list[dict[str, Any]] = [
    {"key": FEATURE, "kind": "metered", "limit": LIMIT, "enforcement": "soft", "overage": OVERAGE}
]
PERIOD_END = T0 + timedelta(days=31)  # the first monthly period of a start at 2026-01-01
BATCH = 200
ACTIONS_PER_SUBSCRIPTION = 4  # at most: invoice, renew, quota reset, finalize
# psycopg calls that each send one statement: cursor executes and BEGIN/COMMIT/ROLLBACK
STATEMENT_CALLS = frozenset(
    {
        ("cursor.py", "execute"),
        ("cursor.py", "executemany"),
        ("_connection_base.py", "_exec_command"),
    }
)
Say = Callable[[str], Any]


def measure(
    pg_url: str,
    subscriptions: int,
    say: Say = print,
    *,
    invoice_lines: int = 1000,
    repeats: int = 20,
    profile: bool = False,
) -> list[Figure]:
    """Both P6 figures; the invoice first, before the large run's writes load the disk."""
    invoice = measure_invoice(pg_url, invoice_lines, repeats, say)
    return [measure_run(pg_url, subscriptions, say, profile=profile), invoice]


# --- P6-run ----------------------------------------------------------------------------------


def measure_run(
    pg_url: str, subscriptions: int, say: Say = print, *, profile: bool = False
) -> Figure:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    create_schema(pg_url, schema)
    system = bench_system(pg_url, schema)
    settle_heap()  # as every Tally process does once started (adapters/entrypoints.py)
    try:
        say(f"P6: seeding {subscriptions:,} subscriptions with usage in schema {schema} …")
        first = _seed_run(system, subscriptions)
        load = os.getloadavg()
        say("P6: timing the billing run at the period end …")
        profiler = cProfile.Profile() if profile else None
        seconds, report = _timed_run(system, subscriptions, profiler)
        invoice = _renewal_invoice(system)
        problems = _check(first, report, subscriptions) + _usage_problems(invoice)
        event_bytes = _largest_event(system, invoice)
        baseline = _bulk_insert_seconds(pg_url, schema, subscriptions, event_bytes)
        say(f"P6: billing run {seconds:.2f} s; raw write baseline {baseline:.3f} s")
    finally:
        system.close()
        drop_schema(pg_url, schema)
    top = _top_functions(profiler, subscriptions) if profiler is not None else ""
    return _run_figure(subscriptions, seconds, baseline, report, problems, event_bytes, load, top)


def _timed_run(
    system: Any, subscriptions: int, profiler: cProfile.Profile | None
) -> tuple[float, dict[str, Any]]:
    """Seconds for the billing run up to the period end, and its report (with this
    process's CPU seconds in the run as `cpu_seconds`). The run holds full garbage
    collections off (adapters/billing/collector.py); the collection of the young
    generations it leaves behind is timed with it (`collect_seconds`)."""
    started, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    report = _billing_run(system, subscriptions, PERIOD_END)
    collecting = time.perf_counter()
    gc.collect(1)
    if profiler is not None:
        profiler.disable()
    ended = time.perf_counter()
    return ended - started, {
        **report,
        "cpu_seconds": time.process_time() - cpu,
        "collect_seconds": ended - collecting,
    }


def _seed_run(system: Any, subscriptions: int) -> dict[str, Any]:
    """Plan, subscriptions, usage over the limit, read models caught up, and the first run
    at T0 (returns its report); then the read models catch up on that run's events, as the
    projectors of a running system would in the month between two runs (the timed run
    still catches the usage read model up to its cut-off first, which finds nothing)."""
    seed_tenants(system, APP, subscriptions, PLAN_FEATURES, batch=BATCH)
    usage = [
        ConsumeQuota(
            app_id=APP,
            tenant_id=f"t{n}",
            feature_key=FEATURE,
            amount=amount,
            idempotency_key=f"u{n}-{i}",
        )
        for n in range(subscriptions)
        for i, amount in enumerate(USAGE_EVENTS)
    ]
    for i in range(0, len(usage), BATCH):
        system.bus.handle_many(usage[i : i + BATCH])
    system.sync()
    report = _billing_run(system, subscriptions, T0)
    system.sync()
    return report


def _billing_run(system: Any, subscriptions: int, until: datetime) -> dict[str, Any]:
    """One call of the engine for the whole run: its default cap (10,000 actions a call,
    then `complete: false`) would cut a run of 10,000 subscriptions short."""
    return run_billing(
        system,
        system.index.ids,
        APP,
        system.clock,
        until,
        batch=BATCH,
        max_actions=ACTIONS_PER_SUBSCRIPTION * subscriptions + 10,
    )


def _check(first: dict[str, Any], report: dict[str, Any], subscriptions: int) -> list[str]:
    """What went wrong in the two runs (empty when every subscription was invoiced at T0,
    then renewed and invoiced at the period end, with no error)."""
    expected = {"invoiced": subscriptions, "renewed": subscriptions, "finalized": subscriptions}
    problems = [
        f"{key} {report[key]:,} of {want:,}"
        for key, want in expected.items()
        if report[key] != want
    ]
    if first["invoiced"] != subscriptions:
        problems.append(f"first run invoiced {first['invoiced']:,} of {subscriptions:,}")
    errors = [*first["errors"], *report["errors"]]
    if errors:
        problems.append(f"{len(errors)} errors, first: {errors[0]}")
    if not report["complete"]:
        problems.append("run incomplete")
    return problems


def _renewal_invoice(system: Any) -> Any:
    """Tenant t0's invoice of the timed run (its base fee for February, its January usage)."""
    invoices = [system.aggregate(i) for i in system.index.ids(APP, "invoice", "t0")]
    return max(invoices, key=lambda invoice: invoice.state.number or 0)


def _usage_problems(invoice: Any) -> list[str]:
    kinds = [line.kind for line in invoice.state.lines]
    if kinds.count(LineKind.USAGE) != len(OVERAGE["tiers"]):
        return [f"t0's renewal invoice has lines {[k.value for k in kinds]}, not one per tier"]
    return []


def _largest_event(system: Any, invoice: Any) -> bytes:
    """The stored state of the invoice's largest event."""
    stored = system.ledger.recorder.select_events(invoice.id)
    return bytes(max((e.state for e in stored), key=len))


def _scratch_table(conn: psycopg.Connection[Any], schema: str) -> sql.Composed:
    table = sql.Identifier(schema, "bench_raw_invoices")
    conn.execute(
        sql.SQL("CREATE TABLE {} (id BIGINT PRIMARY KEY, state BYTEA NOT NULL)").format(table)
    )
    conn.commit()
    return sql.SQL("INSERT INTO {} (id, state) VALUES (%s, %s)").format(table)


def _bulk_insert_seconds(pg_url: str, schema: str, rows: int, state: bytes) -> float:
    """N rows of this state by one executemany INSERT in one transaction (the events table
    keeps its state as BYTEA too)."""
    with psycopg.connect(pg_url) as conn:
        insert = _scratch_table(conn, schema)
        started = time.perf_counter()
        with conn.cursor() as cursor:
            cursor.executemany(insert, [(n, state) for n in range(rows)])
        conn.commit()
        return time.perf_counter() - started


def _run_figure(
    subscriptions: int,
    seconds: float,
    baseline: float,
    report: dict[str, Any],
    problems: list[str],
    event_bytes: bytes,
    load: tuple[float, float, float],
    top: str,
) -> Figure:
    outcome = (
        "; ".join(problems) if problems else "every subscription renewed and invoiced, 0 errors"
    )
    notes = (
        f"{subscriptions:,} subscriptions of plan pro (base fee + metered {FEATURE}, "
        f"{sum(USAGE_EVENTS):,} units used against a limit of {LIMIT:,}, graduated overage in "
        f"2 tiers), run up to T0 + 31 days in group commits of {BATCH}: **{seconds:.2f} s**, "
        f"{subscriptions / seconds:,.0f} subscriptions/s; renewed {report['renewed']:,}, "
        f"invoiced {report['invoiced']:,}, finalized {report['finalized']:,}, quotas reset "
        f"{report['quotas_reset']:,}: {outcome}. The bench process was on CPU "
        f"{report['cpu_seconds']:.1f} s of the {seconds:.1f} s (the rest: waiting for a core "
        f"or for PostgreSQL, which shares them), {report['collect_seconds']:.2f} s of it the "
        f"garbage collection the run put off. Baseline: {subscriptions:,} rows of "
        f"{len(event_bytes):,} bytes (one invoice event) by one psycopg executemany INSERT in "
        f"one transaction. Load average before the run {load[0]:.2f} / {load[1]:.2f} / "
        f"{load[2]:.2f} (2 shared cores)"
    )
    return Figure(
        key="P6-run",
        what=f"billing run: {subscriptions:,} subscriptions with usage lines renewed and invoiced",
        value=seconds * 1000,
        unit="ms",
        target="≤ 10 s",
        baseline=baseline * 1000,
        baseline_what=f"ms INSERT of {subscriptions:,} invoice-sized rows (psycopg)",
        notes=notes + (f". Profile (cumulative): {top}" if top else ""),
        extra={
            "seconds": seconds,
            "subscriptions_per_s": subscriptions / seconds,
            "baseline_seconds": baseline,
            "problems": float(len(problems)),
            "load_1m": load[0],
            "cpu_seconds": report["cpu_seconds"],
            "collect_seconds": report["collect_seconds"],
        },
    )


def _top_functions(profiler: cProfile.Profile, subscriptions: int, count: int = 12) -> str:
    """PostgreSQL statements per subscription and the functions with the most cumulative
    time (`name (file:line) seconds x calls`)."""
    stats: dict[Any, Any] = pstats.Stats(profiler, stream=io.StringIO()).stats  # type: ignore[attr-defined]
    rows, statements = [], 0
    for (file, line, name), (_, calls, _, cumulative, _) in stats.items():
        if "psycopg" in file and (os.path.basename(file), name) in STATEMENT_CALLS:
            statements += calls
        rows.append((cumulative, calls, f"{name} ({os.path.basename(file)}:{line})"))
    rows.sort(reverse=True)
    top = "; ".join(f"{label} {cum:.2f} s × {calls:,}" for cum, calls, label in rows[:count])
    return f"{statements / subscriptions:.1f} PostgreSQL statements per subscription; {top}"


# --- P6-invoice ------------------------------------------------------------------------------


def measure_invoice(pg_url: str, lines: int, repeats: int, say: Say = print) -> Figure:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    create_schema(pg_url, schema)
    system = bench_system(pg_url, schema)
    settle_heap()  # as every Tally process does once started (adapters/entrypoints.py)
    try:
        say(f"P6: drafting and finalizing {repeats} invoices of {lines:,} lines …")
        build = _draft_command(lines)
        times, cpu, event_bytes = _draft_and_finalize(system, build, repeats)
        baseline = _single_insert_times(pg_url, schema, event_bytes, repeats)
    finally:
        system.close()
        drop_schema(pg_url, schema)
    say(
        f"P6: {lines:,}-line invoice p50 {percentile(times, 50):.1f} ms, p99 "
        f"{percentile(times, 99):.1f} ms; baseline p99 {percentile(baseline, 99):.2f} ms"
    )
    return _invoice_figure(lines, times, cpu, baseline, len(event_bytes))


def _invoice_figure(
    lines: int, times: list[float], cpu: list[float], baseline: list[float], event_size: int
) -> Figure:
    p50, p99 = percentile(times, 50), percentile(times, 99)
    cpu50, cpu99 = percentile(cpu, 50), percentile(cpu, 99)
    base50, base99 = percentile(baseline, 50), percentile(baseline, 99)
    slowest = max(range(len(times)), key=times.__getitem__)
    return Figure(
        key="P6-invoice",
        what=f"one {lines:,}-line invoice drafted and finalized (`system.handle` × 2)",
        value=p99,
        unit="ms p99",
        target="≤ 20 ms",
        baseline=base99,
        baseline_what="ms p99 INSERT+COMMIT of an invoice-sized row (psycopg)",
        extra={
            "p50_ms": p50,
            "p99_ms": p99,
            "cpu_p50_ms": cpu50,
            "cpu_p99_ms": cpu99,
            "baseline_p50_ms": base50,
            "baseline_p99_ms": base99,
        },
        notes=f"{len(times)} invoices of {lines:,} usage lines, each DraftInvoice then "
        f"FinalizeInvoice on PostgreSQL (commands built beforehand): p50 {p50:.1f} ms, "
        f"**p99 {p99:.1f} ms** (the slowest, #{slowest + 1} of {len(times)}); the bench "
        f"process on CPU p50 {cpu50:.1f} ms, p99 {cpu99:.1f} ms of them; baseline: one "
        f"INSERT+COMMIT of the {event_size:,}-byte drafted event, {len(baseline)} times: "
        f"p50 {base50:.2f} ms, p99 {base99:.2f} ms",
    )


def _draft_command(lines: int) -> Callable[[], DraftInvoice]:
    usage_line = {
        "kind": "usage",
        "description": "api-calls, 100 units",
        "quantity": 100,
        "unit_amount": {"amount": 3, "currency": "USD"},
    }
    payload = {"app_id": APP, "tenant_id": "t-invoice", "currency": "USD"}
    body = [{**usage_line, "line_id": f"l{n}"} for n in range(lines)]
    return lambda: DraftInvoice.model_validate({**payload, "lines": body})


def _draft_and_finalize(
    system: Any, build: Callable[[], DraftInvoice], repeats: int
) -> tuple[list[float], list[float], bytes]:
    """Per invoice: milliseconds for the draft + finalize, wall and this process's CPU; and
    the drafted event's bytes."""
    times: list[float] = []
    cpu: list[float] = []
    invoice_id: UUID | None = None
    for _ in range(repeats):
        command = build()
        started, on_cpu = time.perf_counter(), time.process_time()
        drafted = system.handle(command)
        invoice_id = UUID(drafted.result["invoice_id"])
        system.handle(FinalizeInvoice(app_id=APP, invoice_id=invoice_id))
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - on_cpu) * 1000)
    assert invoice_id is not None
    first = system.ledger.recorder.select_events(invoice_id, limit=1)[0]
    return times, cpu, bytes(first.state)


def _single_insert_times(pg_url: str, schema: str, state: bytes, repeats: int) -> list[float]:
    with psycopg.connect(pg_url) as conn:
        insert = _scratch_table(conn, schema)
        times = []
        for n in range(repeats):
            started = time.perf_counter()
            conn.execute(insert, (n, state))
            conn.commit()
            times.append((time.perf_counter() - started) * 1000)
        return times
