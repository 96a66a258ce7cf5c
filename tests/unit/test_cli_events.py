"""`tally events`: the audit trail, filtered by aggregate or tenant, as a table."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.bootstrap import bootstrap
from adapters.cli.events import read_log
from adapters.cli.main import app
from adapters.settings import Settings
from domain.clock import SettableClock
from tests.factories import T0, ok

PLAN = {
    "app_id": "acme",
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 1000, "currency": "USD"},
}


def test_events_are_listed_and_filtered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    monkeypatch.setenv("TALLY_DATABASE_URL", url)
    system = bootstrap(Settings(database_url=url), SettableClock(T0), deliver_in_process=False)
    try:
        ok(system.dispatch("define_plan", PLAN))
        for tenant in ("t1", "t2"):
            start = {"app_id": "acme", "tenant_id": tenant, "plan_key": "pro", "actor": "ops"}
            ok(system.dispatch("start_subscription", start))
        everything = read_log(system, 0, 100, None, None)
        assert [e.position for e in everything] == list(range(1, 6))
        t2 = read_log(system, 0, 100, None, "t2")
        assert {e.tenant_id for e in t2} == {"t2"} and len(t2) == 2
        plan = everything[0]
        assert [e.type for e in read_log(system, 0, 100, str(plan.aggregate_id), None)] == [
            "PlanDefined"
        ]
        assert [e.position for e in read_log(system, 2, 2, None, None)] == [3, 4]
    finally:
        system.close()

    shown = CliRunner().invoke(app, ["events", "--tenant", "t1"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "SubscriptionStarted" in shown.output and "TenantSlotOpened" in shown.output
    assert "PlanDefined" not in shown.output and "ops" in shown.output
