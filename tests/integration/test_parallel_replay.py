"""`tally replay` of every read model on PostgreSQL: rebuilt in processes of their own
(adapters/readmodels/parallel_replay.py), each read model ends equal to the live one."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.bootstrap import System, bootstrap
from adapters.readmodels.parallel_replay import _groups, replay_in_processes
from adapters.settings import Settings
from domain.clock import SettableClock
from projections.registry import build_projectors
from tests.e2e.conftest import tally_command
from tests.integration.test_replay_equals_live import fresh_schema, snapshot

APP = "acme"


@pytest.fixture
def schema(pg_url: str) -> Iterator[str]:
    with fresh_schema(pg_url, "parallel") as made:
        yield made


@pytest.fixture
def system(pg_url: str, schema: str) -> Iterator[System]:
    built = bootstrap(
        Settings(database_url=pg_url),
        SettableClock(datetime(2026, 1, 1, tzinfo=UTC)),
        schema=schema,
        deliver_in_process=False,
    )
    try:
        yield built
    finally:
        built.close()


def run(system: System, command: str, **payload: Any) -> None:
    reply = system.dispatch(command, {"app_id": APP, **payload})
    assert reply["ok"], reply


def test_every_read_model_rebuilt_in_processes_equals_the_live_one(
    system: System, schema: str
) -> None:
    features = [{"key": "api", "kind": "metered", "limit": 100}, {"key": "sso", "kind": "boolean"}]
    base = {"amount": 1000, "currency": "USD"}
    run(system, "define_plan", plan_key="pro", name="Pro", base_price=base, features=features)
    for n in range(5):
        run(system, "start_subscription", tenant_id=f"t{n}", plan_key="pro")
        for i in range(3):
            run(
                system,
                "consume_quota",
                tenant_id=f"t{n}",
                feature_key="api",
                amount=n + 1,
                idempotency_key=f"k{n}-{i}",
            )
    system.sync()
    live = snapshot(system.views)
    with system.views.transaction() as conn:  # a bug left wrong rows in the live models
        system.views.execute(conn, f"UPDATE {system.views.physical('entitlements')} SET used = 99")
        system.views.execute(conn, f"DELETE FROM {system.views.physical('revenue_arr')}")
    assert snapshot(system.views) != live
    names = [p.NAME for p in system.runner.projectors]
    done = replay_in_processes(system.settings, schema, names, processes=2)
    assert sorted(d.name for d in done) == sorted(names)
    head = system.ledger.recorder.max_notification_id()
    assert {d.position for d in done} == {head}
    assert snapshot(system.views) == live


def test_tally_replay_rebuilds_every_read_model_of_the_configured_store(
    fresh_database: str,
) -> None:
    url = fresh_database
    seeded = bootstrap(Settings(database_url=url), deliver_in_process=False)
    try:
        base = {"amount": 500, "currency": "EUR"}
        run(seeded, "define_plan", plan_key="basic", name="Basic", base_price=base)
        run(seeded, "start_subscription", tenant_id="t1", plan_key="basic")
        seeded.sync()
        live = snapshot(seeded.views)
    finally:
        seeded.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    done = subprocess.run(
        [*tally_command(), "replay"],
        env={**env, "TALLY_DATABASE_URL": url, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.count("✓ position") == len(build_projectors()), done.stdout
    again = bootstrap(Settings(database_url=url), deliver_in_process=False)
    try:
        assert snapshot(again.views) == live
    finally:
        again.close()


def test_read_models_are_shared_out_round_robin_heaviest_first() -> None:
    names = ["entitlements", "usage", "revenue", "alerts", "outbox"]
    assert _groups(names, 2) == [["entitlements", "revenue", "outbox"], ["usage", "alerts"]]
    assert _groups(names[:1], 4) == [["entitlements"]]
