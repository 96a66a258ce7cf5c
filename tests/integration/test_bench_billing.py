"""The P6 benchmark (benchmarks/billing_run.py) at a tiny size on real PostgreSQL: the
figures are sane (no timing assertions: a benchmark measures, a test checks it works)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from benchmarks.billing_run import _check, _usage_problems, measure_invoice, measure_run
from domain.invoice import LineKind

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]


def test_the_billing_run_figure_renews_and_invoices_every_subscription(pg_url: str) -> None:
    figure = measure_run(pg_url, 6, say=lambda _: None)
    assert figure.key == "P6-run" and figure.target == "≤ 10 s"
    assert figure.unit == "ms" and figure.value > 0
    assert figure.baseline is not None and figure.baseline > 0
    assert figure.ratio is not None and math.isfinite(figure.ratio)
    assert figure.extra["problems"] == 0, figure.notes
    assert "every subscription renewed and invoiced, 0 errors" in figure.notes
    assert "renewed 6, invoiced 6, finalized 6" in figure.notes
    assert figure.extra["seconds"] * 1000 == pytest.approx(figure.value)


def test_the_profiled_run_names_statements_per_subscription(pg_url: str) -> None:
    figure = measure_run(pg_url, 3, say=lambda _: None, profile=True)
    assert figure.extra["problems"] == 0, figure.notes
    assert "PostgreSQL statements per subscription" in figure.notes
    assert "run_billing (runs.py" in figure.notes


def test_the_invoice_figure_has_percentiles_beside_a_baseline(pg_url: str) -> None:
    figure = measure_invoice(pg_url, lines=25, repeats=4, say=lambda _: None)
    assert figure.key == "P6-invoice" and figure.target == "≤ 20 ms"
    assert 0 < figure.extra["p50_ms"] <= figure.extra["p99_ms"] == figure.value
    assert figure.baseline is not None and figure.baseline > 0
    assert "4 invoices of 25 usage lines" in figure.notes


def test_a_run_that_missed_subscriptions_or_failed_is_reported() -> None:
    first = {"invoiced": 4, "errors": []}
    report = {
        "invoiced": 3,
        "renewed": 4,
        "finalized": 3,
        "errors": [{"action": "renew", "code": "conflict"}],
        "complete": False,
    }
    problems = _check(first, report, 4)
    assert "invoiced 3 of 4" in problems and "finalized 3 of 4" in problems
    assert any(p.startswith("1 errors") for p in problems)
    assert "run incomplete" in problems
    assert (
        _check(first, {**report, "invoiced": 4, "finalized": 4, "errors": [], "complete": True}, 4)
        == []
    )


def test_a_renewal_invoice_without_a_usage_line_per_tier_is_reported() -> None:
    def invoice(*kinds: LineKind) -> SimpleNamespace:
        lines = [SimpleNamespace(kind=kind) for kind in kinds]
        return SimpleNamespace(state=SimpleNamespace(lines=lines))

    assert _usage_problems(invoice(LineKind.BASE_FEE, LineKind.USAGE, LineKind.USAGE)) == []
    [problem] = _usage_problems(invoice(LineKind.BASE_FEE))
    assert "not one per tier" in problem
