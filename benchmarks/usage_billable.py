"""P11: usage event -> billable, at a steady rate over HTTP: from the POST of a batch to the
moment the usage read model counts it (the read model the upcoming invoice and the billing
run read usage from).

Set-up as P2 (benchmarks/usage_ingest.py): a scratch database, N tenants on a plan whose
metered feature is soft with a per-unit overage, the real `tally serve`. Senders post batches
of B plain events for ONE tenant each (round robin over the tenants) on a fixed schedule
(`rate` events/s); at most `clients` batches are in flight, and a tenant's next batch waits
for the answer to its previous one, so a tenant's batches commit in order. A poller beside
them (a thread with a System of its own on the server's database, reading only) runs the `usage`
query (what `GET /v1/tenants/{id}/usage` answers) for every tenant with answered batches not
yet counted, round after round; a batch is billable once its tenant's count of events
reaches the count up to and including it. Its latency is that moment minus the batch's send
time: an upper bound (the poller's round over the pending tenants is in it).

At the end the upcoming invoice (`GET /v1/subscriptions/{id}/upcoming-invoice`) of a few
tenants must bill exactly the units the read model counts beyond the included ones.

Env knobs: BENCH_BILLABLE_RATE (10000 events/s), BENCH_BILLABLE_SECONDS (10),
BENCH_BILLABLE_BATCH_SIZE (100), BENCH_BILLABLE_TENANTS (100), BENCH_BILLABLE_CLIENTS (8),
BENCH_BILLABLE_NATS (1; 0 = in-process delivery).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from benchmarks.common import percentile
from benchmarks.report import Figure
from benchmarks.tally_server import (
    TallyServer,
    bench_settings,
    delivery,
    forget_run,
    scratch_database,
    server_env,
    split_workers,
)
from benchmarks.usage_ingest import APP, FEATURE, OUTCOMES, SOFT_LIMIT, Batch, batch_of, seed

FEATURE_SPEC: dict[str, Any] = {
    "key": FEATURE,
    "kind": "metered",
    "limit": SOFT_LIMIT,
    "enforcement": "soft",
    "overage": {"model": "per_unit", "unit_price": {"amount": 1, "currency": "USD"}},
}
SETTLE_SECONDS = 60.0  # after the last send: how long a batch may take to be counted
INVOICE_SAMPLE = 5


@dataclass(frozen=True)
class Knobs:
    rate: float = 10_000.0
    seconds: float = 10.0
    batch_size: int = 100
    tenants: int = 100
    clients: int = 8
    use_nats: bool = True
    split_workers: bool = True  # with NATS: the workers in processes of their own

    @classmethod
    def from_env(cls) -> Knobs:
        env = os.environ.get
        return cls(
            rate=float(env("BENCH_BILLABLE_RATE", cls.rate)),
            seconds=float(env("BENCH_BILLABLE_SECONDS", cls.seconds)),
            batch_size=int(env("BENCH_BILLABLE_BATCH_SIZE", cls.batch_size)),
            tenants=int(env("BENCH_BILLABLE_TENANTS", cls.tenants)),
            clients=int(env("BENCH_BILLABLE_CLIENTS", cls.clients)),
            use_nats=env("BENCH_BILLABLE_NATS", "1") != "0",
            split_workers=env("BENCH_BILLABLE_SPLIT", "1") != "0",
        )


@dataclass(frozen=True)
class Planned:
    """A batch on the schedule: its tenant, and the tenant's event count once it is in."""

    batch: Batch
    tenant: str
    due: float  # seconds after the start
    count_after: int


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)  # send -> counted, per batch
    ingest: list[float] = field(default_factory=list)  # send -> answered, per batch
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    sent_seconds: float = 0.0
    uncounted: int = 0


def plan(run_id: str, knobs: Knobs) -> list[Planned]:
    """The schedule: rate*seconds/B batches, tenants round robin, quantity 1 each event."""
    total = max(1, round(knobs.rate * knobs.seconds / knobs.batch_size))
    interval = knobs.batch_size / knobs.rate
    counts: Counter[str] = Counter()
    planned = []
    for j in range(total):
        tenant = f"t{j % knobs.tenants}"
        rows = tuple((tenant, FEATURE, f"{run_id}-{j}-{i}", 1) for i in range(knobs.batch_size))
        counts[tenant] += knobs.batch_size
        planned.append(Planned(batch_of(j, rows), tenant, j * interval, counts[tenant]))
    return planned


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
    schedule = plan(run_id, knobs)
    with scratch_database(pg_url, "bench_billable") as db_url:
        say(f"P11: seeding {knobs.tenants} tenants …")
        api_key = seed(db_url, knobs.tenants, FEATURE_SPEC, bill_start=True)
        split = split_workers() if nats_url and knobs.split_workers else {}
        server = TallyServer(server_env(db_url, run_id, nats_url, redis_url), workers=split)
        try:
            server.start()
            say(
                f"P11: {knobs.rate:,.0f} events/s in batches of {knobs.batch_size} for "
                f"{knobs.seconds:g}s, polling the usage read model …"
            )
            run = Run()
            poller = Poller(db_url, run)
            poller.start()
            try:
                asyncio.run(drive(server.base_url, api_key, schedule, knobs.clients, poller))
            finally:
                poller.sending.clear()
                poller.join()
            if poller.failure is not None:
                raise RuntimeError("the P11 poller failed") from poller.failure
            run.problems += check_upcoming_invoices(server.base_url, api_key, knobs.tenants)
        finally:
            server.stop()
            server.discard_log()
            forget_run(nats_url, redis_url, run_id)
    return figure(knobs, run, len(schedule), served=delivery(nats_url, knobs.split_workers))


# --- senders and the poller ------------------------------------------------------------------


class Poller(threading.Thread):
    """Beside the senders: each round, every tenant with answered batches not yet counted is
    looked up once with the `usage` query on the read model (a System of its own on the
    server's database, reading only); a batch counts once its tenant's events reach its
    count_after. A thread, so that queries never hold up the senders' event loop."""

    def __init__(self, db_url: str, run: Run) -> None:
        super().__init__(name="p11-poller", daemon=True)
        self.db_url, self.run_ = db_url, run
        self.lock = threading.Lock()
        self.pending: dict[int, tuple[Planned, float]] = {}  # batch -> (planned, sent at)
        self.sending = threading.Event()
        self.sending.set()
        self.failure: BaseException | None = None

    def answered(self, planned: Planned, sent: float) -> None:
        with self.lock:
            self.pending[planned.batch.index] = (planned, sent)

    def run(self) -> None:
        from adapters.bootstrap import bootstrap

        try:
            settings = bench_settings(self.db_url)
            system = bootstrap(settings, deliver_in_process=False)
        except BaseException as error:
            self.failure = error
            return
        try:
            self._poll(system)
        except BaseException as error:
            self.failure = error
        finally:
            system.close()

    def _poll(self, system: Any) -> None:
        deadline = float("inf")
        while True:
            with self.lock:
                tenants = list(dict.fromkeys(p.tenant for p, _ in self.pending.values()))
            if not self.sending.is_set():
                if not tenants:
                    return
                if deadline == float("inf"):
                    deadline = time.perf_counter() + SETTLE_SECONDS
                elif time.perf_counter() > deadline:
                    self.run_.uncounted = len(self.pending)
                    return
            found = 0
            for tenant in tenants:
                rows = system.query(
                    "usage", app_id=APP, tenant_id=tenant, feature=FEATURE, granularity="month"
                )
                count = sum(int(row["events"]) for row in rows)
                now = time.perf_counter()
                with self.lock:
                    done = [
                        j
                        for j, (p, _) in self.pending.items()
                        if p.tenant == tenant and p.count_after <= count
                    ]
                    for j in done:
                        self.run_.latencies.append(now - self.pending.pop(j)[1])
                found += len(done)
            if not found:
                time.sleep(0.001)


async def drive(
    base_url: str, api_key: str, schedule: list[Planned], clients: int, poller: Poller
) -> None:
    """The senders on the schedule; each answered batch is handed to the poller."""
    run = poller.run_
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    locks: dict[str, asyncio.Lock] = {p.tenant: asyncio.Lock() for p in schedule}
    queue = iter(schedule)
    started = time.perf_counter()

    async def sender() -> None:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as http:
            for planned in queue:
                await asyncio.sleep(max(0.0, started + planned.due - time.perf_counter()))
                async with locks[planned.tenant]:  # a tenant's batches commit in order
                    sent = time.perf_counter()
                    try:
                        response = await http.post("/v1/usage", content=planned.batch.body)
                    except httpx.HTTPError as error:
                        run.problems.append(f"batch {planned.batch.index}: {error!r}")
                        run.counts["errors"] += 1
                        continue
                    run.ingest.append(time.perf_counter() - sent)
                    if response.status_code != 200:
                        run.counts["errors"] += 1
                        run.problems.append(f"batch {planned.batch.index}: {response.text[:200]}")
                        continue
                    answer = orjson.loads(response.content)
                    for outcome in OUTCOMES:
                        run.counts[outcome] += int(answer.get(outcome, 0))
                    poller.answered(planned, sent)

    await asyncio.gather(*(sender() for _ in range(clients)))
    run.sent_seconds = time.perf_counter() - started


# --- the upcoming invoice ---------------------------------------------------------------------


def check_upcoming_invoices(base_url: str, api_key: str, tenants: int) -> list[str]:
    """The upcoming invoice of a few tenants bills the read model's units beyond the limit."""
    problems = []
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        for n in range(min(tenants, INVOICE_SAMPLE)):
            tenant = f"t{n}"
            rows = http.get(
                f"/v1/tenants/{tenant}/usage", params={"feature": FEATURE, "granularity": "month"}
            ).json()["usage"]
            used = sum(int(row["quantity"]) for row in rows)
            events = sum(int(row["events"]) for row in rows)
            [subscription] = http.get("/v1/subscriptions", params={"tenant_id": tenant}).json()[
                "subscriptions"
            ]
            invoice = http.get(
                f"/v1/subscriptions/{subscription['subscription_id']}/upcoming-invoice"
            )
            if invoice.status_code != 200:
                problems.append(f"{tenant}: upcoming invoice answered {invoice.status_code}")
                continue
            lines = [
                line
                for line in invoice.json()["lines"]
                if line["kind"] == "usage"
                and (line.get("usage") or {}).get("feature_key") == FEATURE
            ]
            billed = sum(int(line["quantity"]) for line in lines)
            counted = {int(line["usage"]["events"]) for line in lines}
            if billed != max(0, used - SOFT_LIMIT) or counted != {events}:
                problems.append(
                    f"{tenant}: the upcoming invoice bills {billed} units from {counted} events, "
                    f"the usage read model counts {used} units ({SOFT_LIMIT} included) from "
                    f"{events} events"
                )
    return problems


# --- the figure ---------------------------------------------------------------------------------


def figure(knobs: Knobs, run: Run, batches: int, *, served: str = "") -> Figure:
    latencies = [x * 1000 for x in run.latencies]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    ingest_p99 = percentile([x * 1000 for x in run.ingest], 99)
    achieved = run.counts["accepted"] / run.sent_seconds if run.sent_seconds else 0.0
    problems = [*run.problems[:5]]
    if run.uncounted:
        problems.append(f"{run.uncounted} batches not counted {SETTLE_SECONDS:g}s after the last")
    if run.counts["accepted"] != batches * knobs.batch_size:
        problems.append(f"{run.counts['accepted']:,} of {batches * knobs.batch_size:,} accepted")
    check = (
        "every batch counted; the upcoming invoices agree with the read model"
        if not (problems)
        else "PROBLEMS: " + "; ".join(problems)
    )
    return Figure(
        key="P11",
        what=f"usage event → billable (usage read model), {knobs.rate:,.0f} events/s asked",
        value=p99,
        unit="ms p99",
        target="p99 ≤ 100 ms at 10,000 events/s",
        extra={
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": max(latencies, default=float("nan")),
            "ingest_p99_ms": ingest_p99,
            "achieved_events_s": achieved,
            "batches": float(batches),
            "counted": float(len(latencies)),
            "problems": float(len(problems)),
        },
        notes=(
            f"batches of {knobs.batch_size} events for one tenant each (round robin over "
            f"{knobs.tenants}), {knobs.clients} clients, `tally serve` with "
            f"{served or delivery(None)}, scheduled at {knobs.rate:,.0f} "
            f"events/s for {knobs.seconds:g}s: **{achieved:,.0f} events/s achieved** in "
            f"{run.sent_seconds:.1f}s; send → counted in the usage read model p50 {p50:,.0f} "
            f"ms, **p99 {p99:,.0f} ms** over {len(latencies):,} batches (the POST alone: p99 "
            f"{ingest_p99:,.0f} ms); {check}"
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
