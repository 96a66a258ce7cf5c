"""Lifecycle hooks on the real stack: the `plugins` JetStream consumer (PostgreSQL event store
and read models, NATS) delivers every committed event to the hooks once in a normal run, keeps
its position across a restart, and dead-letters an event a hook keeps failing on; in process
on PostgreSQL the runner's tables and position work the same."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import nats
import pytest

from adapters.bootstrap import System, bootstrap
from adapters.nats.stream import StreamSettings
from adapters.nats.workers import build_plugins_worker, build_relay
from adapters.plugins.wiring import hook_runner
from adapters.settings import Settings
from domain.clock import SettableClock
from projections.envelope import EventEnvelope
from tests.conftest import T0
from tests.integration.nats_support import (  # noqa: F401  (fixtures)
    NATS_URL,
    committed,
    make_events,
    nats_system_fixture,
    open_system,
    stream_fixture,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.timeout(120)]


class Collector:
    """Keeps every event it is given (from the hook runner's threads)."""

    name = "collector"

    def __init__(self) -> None:
        self.events: list[EventEnvelope] = []
        self._lock = threading.Lock()

    def on_event(self, event: EventEnvelope) -> None:
        with self._lock:
            self.events.append(event)


class FailsOnPlans:
    name = "fails-on-plans"

    def on_plan_defined(self, event: EventEnvelope) -> None:
        raise RuntimeError("this plugin cannot take plans")


async def run_workers(system: System, until: Any, what: str) -> Any:
    """Relay + plugins worker until `until()` holds; returns the worker."""
    relay, worker = build_relay(system), build_plugins_worker(system)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(worker.run(stop))]
    try:

        async def check() -> bool:
            return bool(await asyncio.to_thread(until))

        await wait_until(check, 30, what)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
    return worker


def test_the_plugins_consumer_delivers_every_event_once_and_keeps_its_place(
    nats_system: System, stream: StreamSettings, pg_url: str, pg_schema: str
) -> None:
    first = Collector()
    nats_system.plugins.register(first)
    make_events(nats_system, tenants=2, uses=2)
    log = committed(nats_system)
    runner = hook_runner(nats_system)

    async def scenario() -> None:
        await run_workers(nats_system, lambda: runner.position() == log[-1].position, "hooks")
        nc = await nats.connect(NATS_URL)
        try:
            info = await nc.jetstream().consumer_info(stream.name, "plugins")
            assert info.config.durable_name == "plugins"
        finally:
            await nc.close()

    asyncio.run(scenario())
    assert [e.id for e in first.events] == [e.id for e in log]  # in order, none twice
    assert first.events == log  # the typed envelope, as published

    # a restarted process (a new system, a new plugin instance): only what was committed
    # since is delivered
    restarted = open_system(pg_url, pg_schema, stream)
    try:
        later = Collector()
        restarted.plugins.register(later)
        make_events(restarted, tenants=1, uses=1)
        newer = committed(restarted)[len(log) :]
        again = hook_runner(restarted)
        asyncio.run(
            run_workers(restarted, lambda: again.position() == newer[-1].position, "new hooks")
        )
        assert [e.id for e in later.events] == [e.id for e in newer]
    finally:
        restarted.close()


def test_a_hook_that_keeps_failing_is_dead_lettered_in_postgres_and_skipped(
    nats_system: System,
) -> None:
    collector = Collector()
    nats_system.plugins.register(FailsOnPlans())
    nats_system.plugins.register(collector)
    make_events(nats_system, tenants=1, uses=1)
    log = committed(nats_system)
    runner = hook_runner(nats_system)
    asyncio.run(run_workers(nats_system, lambda: runner.position() == log[-1].position, "hooks"))
    letters = runner.dead_letters()
    plans = [e for e in log if e.type == "PlanDefined"]
    assert [letter["position"] for letter in letters] == [e.position for e in plans]
    assert letters[0]["plugin"] == "fails-on-plans" and letters[0]["attempts"] == 3
    assert len(collector.events) == len(log)  # the other plugin got everything
    metrics = nats_system.plugins.metrics
    assert metrics.value("fails-on-plans", "on_plan_defined", "error") == 3 * len(plans)


def test_in_process_hooks_on_postgresql(pg_url: str, pg_schema: str) -> None:
    collector = Collector()
    settings = Settings(database_url=pg_url, plugins_discover=False)
    system = bootstrap(settings, SettableClock(T0), schema=pg_schema, plugins=[collector])
    try:
        make_events(system, tenants=1, uses=1)
        head = int(system.ledger.recorder.max_notification_id() or 0)
        runner = hook_runner(system)

        async def delivered() -> bool:
            return await asyncio.to_thread(runner.position) == head

        asyncio.run(wait_until(delivered, 20, "in-process hooks"))
        assert [e.position for e in collector.events] == list(range(1, head + 1))
    finally:
        system.close()
