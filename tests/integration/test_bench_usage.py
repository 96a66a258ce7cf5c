"""The usage benchmarks (benchmarks/usage_ingest.py, P2; benchmarks/usage_billable.py, P11)
at a tiny size against the real `tally serve` on PostgreSQL: the report has its figures and
the checks pass, and the durability check does catch events that were never recorded. No
timing assertions: a benchmark measures, a test checks that it works."""

from __future__ import annotations

import math

import pytest

from benchmarks import usage_billable, usage_ingest
from benchmarks.tally_server import TallyServer, scratch_database, server_env
from benchmarks.usage_ingest import Knobs, Pass

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

TINY = Knobs(tenants=2, clients=2, batches=3, batch_size=50, max_seconds=0, use_nats=False)


def quiet(_: str) -> None:
    return None


def test_the_ingest_bench_reports_throughput_beside_copy_and_a_passed_durability_check(
    pg_url: str,
) -> None:
    figure = usage_ingest.measure(pg_url, quiet, knobs=TINY)
    assert figure.key == "P2" and figure.unit == "events/s"
    assert figure.target == "≥ 100,000 events/s" and figure.ratio_target == 0.35
    assert figure.value > 0 and figure.baseline is not None and figure.baseline > 0
    assert figure.ratio is not None and math.isfinite(figure.ratio)
    extra = figure.extra
    assert extra["durable"] == 1.0, figure.notes
    assert "durability check passed" in figure.notes
    assert extra["batches"] == 3 and extra["events"] == 150 and extra["accepted"] == 150
    assert extra["duplicates"] == extra["refused"] == extra["failed"] == extra["errors"] == 0
    assert 0 < extra["p50_ms"] <= extra["p99_ms"]
    assert extra["copy_one_transaction_rows_s"] > 0
    assert "3 batches of 50 from 2 keep-alive clients" in figure.notes


def test_the_durability_check_reports_events_the_server_never_recorded(pg_url: str) -> None:
    knobs = Knobs(tenants=2, clients=1, batches=2, batch_size=20, resend_percent=100)
    sent, never_sent = usage_ingest.make_batches("lost", 2, 20, knobs.tenants)
    with scratch_database(pg_url, "test_ingest") as db_url:
        api_key = usage_ingest.seed(db_url, knobs.tenants + 1)  # + the barrier tenant
        server = TallyServer(server_env(db_url, "test", None, None))
        try:
            server.start()
            first = usage_ingest._drive(server.base_url, api_key, [sent], 1, 0.0)
            assert first.counts["accepted"] == 20, first.problems
            problems = usage_ingest.check_durability(server, api_key, knobs, [sent, never_sent])
        finally:
            server.stop()
            server.discard_log()
    assert any(p.startswith("after SIGKILL and restart: ") for p in problems), problems
    assert any(p.startswith("resending 40 events: ") for p in problems), problems


def test_a_failed_check_marks_the_figure_not_durable() -> None:
    run = Pass(seconds=1.0, latencies=[0.1, 0.2])
    run.counts.update(accepted=90, refused=10)
    figure = usage_ingest.figure(TINY, run, (1000.0, 2000.0), ["after the resend: 1 tenant"])
    assert figure.extra["durable"] == 0.0
    assert "DURABILITY CHECK FAILED: after the resend: 1 tenant" in figure.notes
    assert "first pass: 10 refused" in figure.notes


def test_the_billable_bench_counts_every_batch_in_the_read_model_and_the_invoice(
    pg_url: str,
) -> None:
    knobs = usage_billable.Knobs(
        rate=400, seconds=1.0, batch_size=40, tenants=2, clients=2, use_nats=False
    )
    figure = usage_billable.measure(pg_url, quiet, knobs=knobs)
    assert figure.key == "P11" and figure.unit == "ms p99"
    assert figure.target == "p99 ≤ 100 ms at 10,000 events/s"
    extra = figure.extra
    assert extra["problems"] == 0, figure.notes
    assert extra["batches"] == extra["counted"] == 10
    assert 0 < extra["p50_ms"] <= extra["p99_ms"] == figure.value
    assert extra["achieved_events_s"] > 0
    assert "the upcoming invoices agree with the read model" in figure.notes
