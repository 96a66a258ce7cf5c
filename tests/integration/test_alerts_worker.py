"""`tally worker alerts` on PostgreSQL: the evaluator runs on its own while it holds the
instance lock; a second worker waits and takes over when the first stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from adapters.alerts.worker import AlertsWorker, evaluator_of
from adapters.bootstrap import System, bootstrap
from adapters.nats.singleton import PgAdvisoryLock
from adapters.readmodels.runner import ProjectionRunner
from adapters.settings import Settings
from domain.alert import AlertTriggered
from domain.clock import SettableClock
from tests.factories import ok

pytestmark = pytest.mark.postgres
APP = "acme"


@pytest.fixture
def system(pg_url: str, pg_schema: str, clock: SettableClock) -> Iterator[System]:
    built = bootstrap(
        Settings(database_url=pg_url), clock, schema=pg_schema, deliver_in_process=False
    )
    try:
        yield built
    finally:
        built.close()


def triggered(system: System) -> int:
    notes = system.ledger.recorder.select_notifications(start=1, limit=10_000)
    return sum(note.topic == AlertTriggered.NAME for note in notes)


def test_the_worker_fires_alerts_without_sync_and_hands_over(
    system: System, pg_url: str, pg_schema: str
) -> None:
    feature = {"key": "api", "kind": "metered", "limit": 10, "enforcement": "soft"}
    plan = {"plan_key": "pro", "name": "Pro", "base_price": {"amount": 0, "currency": "USD"}}
    ok(system.dispatch("define_plan", {"app_id": APP, **plan, "features": [feature]}))
    ok(system.dispatch("start_subscription", {"app_id": APP, "tenant_id": "t1", "plan_key": "pro"}))
    alert = {"kind": "usage", "tenant_id": "t1", "feature_key": "api"}
    ok(system.dispatch("create_alert", {"app_id": APP, **alert, "thresholds": [{"percent": 50}]}))
    usage = {"app_id": APP, "tenant_id": "t1", "feature_key": "api", "amount": 6}
    ok(system.dispatch("consume_quota", {**usage, "idempotency_key": "k1"}))
    ProjectionRunner.catch_up(system.runner)  # the read models only, as projector workers do
    assert triggered(system) == 0

    lock_name = f"tally:{pg_schema}:alerts-test"
    first = AlertsWorker(evaluator_of(system), PgAdvisoryLock(pg_url, lock_name), 0.05)
    second = AlertsWorker(evaluator_of(system), PgAdvisoryLock(pg_url, lock_name), 0.05)

    async def scenario() -> None:
        stop_first, stop_second = asyncio.Event(), asyncio.Event()
        running = asyncio.create_task(first.run(stop_first))
        await _until(lambda: first.lock.still_held())
        waiting = asyncio.create_task(second.run(stop_second))
        await _until(lambda: triggered(system) == 1)
        assert first.lock.still_held() and not second.lock.still_held()
        stop_first.set()
        await running
        await _until(lambda: second.lock.still_held())
        stop_second.set()
        await waiting

    asyncio.run(scenario())
    assert triggered(system) == 1  # fired once, never again by the second worker


async def _until(condition: object, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_serve_runs_the_alerts_worker_beside_the_relay_and_projectors(
    pg_url: str, pg_schema: str, clock: SettableClock
) -> None:
    from adapters.http.serve import _workers

    settings = Settings(database_url=pg_url, nats_url="nats://127.0.0.1:4222")
    system = bootstrap(settings, clock, schema=pg_schema, deliver_in_process=False)
    try:
        workers = _workers(system)
        assert sum(isinstance(worker, AlertsWorker) for worker in workers) == 1
        assert len(workers) == 3 + len(system.runner.projectors)  # + relay, alerts, sealer
    finally:
        system.close()
