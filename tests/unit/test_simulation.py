"""The deterministic simulation (TARGETS.md R9, adapters/simulation/) in `make test`.

Three seeds of 1,000 steps over 24 simulated months hold every invariant; one seed gives the
same trace byte for byte twice in this process and once more in another process with another
hash seed (through `tally chaos --seed`); and the checks catch a product that breaks them: a
hard limit not enforced, redeliveries applied twice. A failing seed names the command that
replays it. `make chaos` runs many more seeds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adapters.billing.runs import run_billing
from adapters.cli.main import app
from adapters.readmodels.sql_store import SqlViewTx, ViewStore
from adapters.simulation.cli import replay_command
from adapters.simulation.scenario import Report, simulate
from commands.usage.record_usage import UsageEventIn
from domain.balance import balance_id
from domain.clock import SettableClock
from domain.usage_batch import UsageTally
from projections.base import Projector
from projections.envelope import EventEnvelope
from tests.factories import T0, embedded_system, ok

SEEDS = (11, 22, 33)
STEPS, MONTHS = 1000, 24
SHORT = 300  # steps of the determinism and sabotage runs
PROGRESSIVE_PLAN = {
    "app_id": "acme",
    "plan_key": "p",
    "name": "P",
    "base_price": {"amount": 1000, "currency": "USD"},
    "base_fee_timing": "in_arrears",
    "progressive_thresholds": [{"amount": 2000, "currency": "USD"}],
    "features": [
        {
            "key": "api",
            "kind": "metered",
            "enforcement": "soft",
            "overage": {"model": "per_unit", "unit_price": {"amount": 100, "currency": "USD"}},
        }
    ],
}
INVARIANTS = {
    "events_exactly_once",
    "delivered_exactly_once",
    "read_models_equal_replay",
    "quotas_within_limits",
    "entitlements_match_quotas",
    "invoice_totals",
    "money_conserved",
    "voids_return_balance",
    "revenue_matches_invoices",
    "refusals_record_nothing",
    "duplicates_answered_as_duplicates",
    "conflicts_resolved",
    "billing_runs_clean",
    "no_unexpected_errors",
}


def verdicts(report: Report) -> str:
    lines = [check.line() for check in report.checks if not check.passed]
    return "\n".join([*lines, *report.tracebacks[:1]])


def check_of(report: Report, name: str) -> Any:
    return next(check for check in report.checks if check.name == name)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_seed_holds_every_invariant(seed: int, tmp_path: Path) -> None:
    trace = tmp_path / f"sim-{seed}.trace"
    report = simulate(seed, STEPS, MONTHS, trace)
    replay = replay_command(seed, STEPS, MONTHS)
    assert report.passed, f"{verdicts(report)}\nreplay: {replay}"
    assert {check.name for check in report.checks} == INVARIANTS
    assert trace.read_bytes() == report.trace.encode("utf-8")
    steps = {line[:5] for line in report.trace.splitlines()}
    assert f"{STEPS:05d}" in steps  # every step traced, the last one too


@pytest.fixture(scope="module")
def short_trace() -> str:
    return simulate(7, SHORT).trace


def test_the_same_seed_gives_the_same_trace_byte_for_byte(short_trace: str, tmp_path: Path) -> None:
    again = tmp_path / "again.trace"
    simulate(7, SHORT, trace=again)
    assert again.read_bytes() == short_trace.encode("utf-8")
    assert simulate(8, SHORT).trace != short_trace  # the trace follows the seed


def test_another_process_with_another_hash_seed_writes_the_same_trace(
    short_trace: str, tmp_path: Path
) -> None:
    path = tmp_path / "cli.trace"
    command = [sys.executable, "-m", "adapters.cli.main", "chaos", "--seed", "7"]
    done = subprocess.run(
        [*command, "--steps", str(SHORT), "--trace", str(path)],
        env={**os.environ, "PYTHONHASHSEED": "4242"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert path.read_bytes() == short_trace.encode("utf-8")
    assert "PASS events_exactly_once" in done.stdout
    assert "seed 7: PASS" in done.stdout


def test_a_hard_limit_not_enforced_fails_and_the_cli_names_the_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(UsageTally, "refusal", lambda self, fact: None)  # never refuses
    # three months, so that usage reaches the limits within a window
    arguments = ["chaos", "--seed", "5", "--steps", str(SHORT), "--months", "3"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 1, result.output
    assert "FAIL quotas_within_limits" in result.output
    assert "past its hard limit" in result.output
    assert f"replay: tally chaos --seed 5 --steps {SHORT} --months 3" in result.output


def apply_every_time(self: ViewStore, projector: Projector, events: list[EventEnvelope]) -> int:
    """ViewStore.apply without its position check: a redelivery is applied again."""
    with self.transaction() as conn:
        tx = SqlViewTx(self, conn)
        for event in events:
            if event.type in projector.HANDLES:
                projector.apply(event, tx)
        tx.flush()
        if events:
            self.set_position(conn, projector.NAME, events[-1].position)
    return events[-1].position if events else self.position(projector.NAME)


def test_redeliveries_applied_twice_fail_the_delivery_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ViewStore, "apply", apply_every_time)
    report = simulate(5, SHORT)
    delivered = check_of(report, "delivered_exactly_once")
    assert not delivered.passed
    assert "applied 2 times" in delivered.problems[0]


def test_seeds_are_given_as_a_range() -> None:
    result = CliRunner().invoke(app, ["chaos", "--seeds", "9..3"])
    assert result.exit_code == 2
    assert "A..B needs A <= B" in result.output
    assert CliRunner().invoke(app, ["chaos"]).exit_code == 2


# --- what the simulation found, kept as regression tests --------------------------------------


def test_an_interim_invoice_is_still_deducted_after_a_pause() -> None:
    """First seen with seed 37: a resume moves the open period's end by the paused time; the
    interim invoice's period must move with it, or the period's invoice bills the usage again
    (no deduction) and every later threshold check collides with the interim invoice made."""
    clock = SettableClock(T0)
    system = embedded_system(clock)
    try:
        ok(system.dispatch("define_plan", PROGRESSIVE_PLAN))
        started = {"app_id": "acme", "tenant_id": "t1", "plan_key": "p"}
        sub = ok(system.dispatch("start_subscription", started))["subscription_id"]
        clock.set(T0 + timedelta(days=5))
        used = UsageEventIn(idempotency_key="a", tenant_id="t1", feature_key="api", quantity=25)
        assert system.usage.record("acme", [used])["accepted"] == 1
        run_billing(system, system.index.ids, "acme", clock, T0 + timedelta(days=5))
        ok(system.dispatch("pause_subscription", {"app_id": "acme", "subscription_id": sub}))
        clock.set(T0 + timedelta(days=8))
        ok(system.dispatch("resume_subscription", {"app_id": "acme", "subscription_id": sub}))
        report = run_billing(system, system.index.ids, "acme", clock, T0 + timedelta(days=40))
        assert report["errors"] == []
        invoices = [system.aggregate(i) for i in system.index.ids("acme", "invoice")]
        assert [[(li.kind.value, li.amount.amount) for li in i.state.lines] for i in invoices] == [
            [("usage", 2500)],
            [("base_fee", 1000), ("usage", 2500), ("adjustment", -2500)],
        ]
    finally:
        system.close()


def test_a_void_gives_back_the_credit_balance_the_invoice_applied() -> None:
    """First seen with seed 2: a voided invoice kept the credit balance it had drawn (Stripe
    gives it back)."""
    system = embedded_system(SettableClock(T0))
    try:
        refund = invoice(system, "adjustment", -1000)  # a total below zero: 10.00 of balance
        drawing = invoice(system, "base_fee", 600)  # paid from the balance: 4.00 left
        assert (refund["balance_created"]["amount"], drawing["balance_applied"]["amount"]) == (
            1000,
            600,
        )
        voided = {"app_id": "acme", "invoice_id": drawing["invoice_id"], "reason": "mistake"}
        ok(system.dispatch("void_invoice", voided))
        balance = system.aggregate(balance_id("acme", "t1", "USD"))
        assert balance.balance.amount == 1000
    finally:
        system.close()


def invoice(system: Any, kind: str, amount: int) -> dict[str, Any]:
    line = {"kind": kind, "description": kind, "unit_amount": {"amount": amount, "currency": "USD"}}
    drafted = ok(
        system.dispatch(
            "draft_invoice",
            {
                "app_id": "acme",
                "tenant_id": "t1",
                "currency": "USD",
                "lines": [line],
            },
        )
    )
    finalize = {"app_id": "acme", "invoice_id": drafted["invoice_id"]}
    return ok(system.dispatch("finalize_invoice", finalize))
