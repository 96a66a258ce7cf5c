"""Projectors fed from JetStream (durable pull consumers) against real PostgreSQL and NATS:
end to end from a command to a read model; a failing or killed projector ends up with exactly
the read model a from-scratch rebuild gives."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nats
import pytest

from adapters.bootstrap import System, bootstrap
from adapters.nats.projector_worker import ProjectorWorker
from adapters.nats.singleton import LocalLock
from adapters.nats.stream import StreamSettings
from adapters.nats.workers import build_projector_worker, build_relay
from adapters.settings import Settings
from domain.clock import SettableClock
from projections.base import ViewTx
from projections.envelope import EventEnvelope
from tests.conftest import T0
from tests.integration.nats_support import (  # noqa: F401  (fixtures)
    NATS_URL,
    CountingProjector,
    FlakyProjector,
    committed,
    make_events,
    make_quota_events,
    nats_system_fixture,
    other_schema_fixture,
    read_model,
    rebuild_from_scratch,
    spawn_hanging_worker,
    stream_fixture,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.timeout(120)]


async def _projected(system: System, name: str = CountingProjector.NAME) -> int:
    return await asyncio.to_thread(system.views.position, name)


def test_command_to_event_to_relay_to_nats_to_projector_to_read_model(
    nats_system: System, stream: StreamSettings, pg_url: str, other_schema: str
) -> None:
    projector = CountingProjector()

    async def scenario() -> None:
        relay = build_relay(nats_system)
        worker = build_projector_worker(nats_system, projector.NAME, projector=projector)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(worker.run(stop))]
        try:
            await asyncio.to_thread(make_events, nats_system, tenants=3, uses=3)
            await asyncio.to_thread(make_quota_events, nats_system, 15)
            last = committed(nats_system)[-1].position

            async def projected() -> bool:
                return await _projected(nats_system) == last

            await wait_until(projected, 20, "the read model to reach the last event")
            # a durable consumer named after the projector
            nc = await nats.connect(NATS_URL)
            try:
                info = await nc.jetstream().consumer_info(stream.name, "proj-test_counts")
                assert info.config.durable_name == "proj-test_counts"
            finally:
                await nc.close()
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
        assert worker.applied == len(committed(nats_system))

    asyncio.run(scenario())
    live = read_model(nats_system.views)
    assert sum(row["n"] for row in live["event_counts"]) == len(committed(nats_system))
    assert {"UsageRecorded", "SubscriptionStarted", "PlanDefined"} <= {
        row["event_type"] for row in live["event_counts"]
    }
    assert live == rebuild_from_scratch(nats_system, pg_url, other_schema)


def test_a_failing_projector_is_retried_in_order_never_skipped(
    nats_system: System, stream: StreamSettings, pg_url: str, other_schema: str
) -> None:
    make_events(nats_system, tenants=3, uses=3)
    make_quota_events(nats_system, 12)
    events = committed(nats_system)
    projector = FlakyProjector(fail_at=7, times=3)  # the batch fails, then its retry too

    async def scenario() -> None:
        assert await build_relay(nats_system).run_once() == len(events)
        worker = build_projector_worker(nats_system, projector.NAME, projector=projector, batch=5)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:

            async def projected() -> bool:
                return await _projected(nats_system) == events[-1].position

            await wait_until(projected, 30, "the projector to get past the failures")
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
        assert projector.raised == 3
        assert worker.failures >= 1

    asyncio.run(scenario())
    live = read_model(nats_system.views)
    assert sum(row["n"] for row in live["event_counts"]) == len(events)
    assert live == rebuild_from_scratch(nats_system, pg_url, other_schema)


def test_a_projector_killed_mid_batch_ends_equal_to_a_rebuild_from_scratch(
    nats_system: System,
    stream: StreamSettings,
    pg_url: str,
    pg_schema: str,
    other_schema: str,
    tmp_path: Path,
) -> None:
    make_events(nats_system, tenants=3, uses=4)
    make_quota_events(nats_system, 15)
    events = committed(nats_system)
    marker = tmp_path / "hanging"

    async def scenario() -> None:
        assert await build_relay(nats_system).run_once() == len(events)
        # a worker process that hangs inside its third batch (events 11..15), then SIGKILL
        child = spawn_hanging_worker(pg_url, pg_schema, stream, 13, marker, batch=5)
        try:
            await wait_until(_exists(marker), 30, "the child worker to reach event 13")
            before_kill = await _projected(nats_system)
            assert 0 < before_kill < events[-1].position
            child.send_signal(signal.SIGKILL)
            await asyncio.to_thread(child.wait, 10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        # half applied, never acknowledged: a new worker takes over
        worker = build_projector_worker(
            nats_system, CountingProjector.NAME, projector=CountingProjector(), batch=5
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:

            async def projected() -> bool:
                return await _projected(nats_system) == events[-1].position

            await wait_until(projected, 30, "the new worker to finish the read model")
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)

    asyncio.run(scenario())
    live = read_model(nats_system.views)
    assert sum(row["n"] for row in live["event_counts"]) == len(events)
    assert live == rebuild_from_scratch(nats_system, pg_url, other_schema)


def _exists(path: Path) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return path.exists()

    return check


class _Poison(CountingProjector):
    """Fails on one event, `times` times."""

    def __init__(self, position: int, times: int) -> None:
        self.position, self.times = position, times

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        if event.position == self.position and self.times:
            self.times -= 1
            raise RuntimeError("poison")
        super().apply(event, tx)


class _FakeMsg:
    """Just enough of a nats-py JetStream message for ProjectorWorker.handle_batch."""

    def __init__(self, seq: int, envelope: EventEnvelope, log: list[tuple[str, int]]) -> None:
        self.metadata = SimpleNamespace(sequence=SimpleNamespace(stream=seq))
        self.data = envelope.model_dump_json().encode()
        self.subject = envelope.subject()
        self.seq, self.log = seq, log

    async def ack(self) -> None:
        self.log.append(("ack", self.seq))

    async def nak(self, delay: float | None = None) -> None:
        self.log.append(("nak", self.seq))


def test_the_worker_applies_strictly_in_stream_order(tmp_path: Path) -> None:
    """Later messages that overtake one waiting for redelivery are held back (nak'd), copies
    of one message share its fate, and a failed event is never acknowledged."""
    system = bootstrap(
        Settings(database_url=f"sqlite:///{tmp_path / 'events.db'}"),
        SettableClock(T0),
        deliver_in_process=False,
    )
    try:
        make_events(system, tenants=1, uses=4)
        events = committed(system)[:6]
        projector = _Poison(events[2].position, times=2)  # event 3 fails twice
        worker = ProjectorWorker(
            views=system.views,
            projector=projector,
            lock=LocalLock("unit"),
            nats_url="nats://unused",
            stream=StreamSettings(),
        )
        system.views.ensure(projector)
        worker.expected = 1
        log: list[tuple[str, int]] = []

        def msgs(*seqs: int) -> list[Any]:
            return [_FakeMsg(seq, events[seq - 1], log) for seq in seqs]

        async def scenario() -> None:
            # 1, 2 apply; 3 fails (batch, then one by one): 3 and 4 are nak'd
            await worker.handle_batch(msgs(2, 1, 3, 4))
            assert log == [("nak", 3), ("nak", 4), ("ack", 1), ("ack", 2)]
            assert worker.expected == 3
            log.clear()
            # 5 and 6 arrive before 3 is redelivered: held back, nothing applied
            await worker.handle_batch(msgs(5, 6))
            assert log == [("nak", 5), ("nak", 6)]
            log.clear()
            # 3 comes back (twice) with 4..6: all applied in order; the copy and 1 are acked
            await worker.handle_batch(msgs(4, 3, 3, 5, 6, 1))
            assert sorted(log) == [("ack", s) for s in (1, 3, 3, 4, 5, 6)]
            assert worker.expected == 7

        asyncio.run(scenario())
        assert system.views.position(projector.NAME) == events[5].position
        counts = read_model(system.views)["aggregate_versions"]
        assert sum(row["n"] for row in counts) == 6  # each applied once
    finally:
        system.close()


class _OnlyOneType(CountingProjector):
    """Handles a single event type, and only counts it (it sees no aggregate's whole
    history, so the version check of CountingProjector does not apply)."""

    def __init__(self, event_type: str) -> None:
        self.HANDLES = frozenset({event_type})  # type: ignore[misc]

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        tx.increment("event_counts", {"event_type": event.type}, {"n": 1})


def test_events_the_projector_does_not_handle_move_its_position_unread(tmp_path: Path) -> None:
    """Messages of types the projector does not handle are never decoded (their body could
    be anything): their position, from the headers, is recorded with the batch."""
    system = bootstrap(
        Settings(database_url=f"sqlite:///{tmp_path / 'events.db'}"),
        SettableClock(T0),
        deliver_in_process=False,
    )
    try:
        make_events(system, tenants=2, uses=3)
        events = committed(system)
        handled = events[-1].type
        projector = _OnlyOneType(handled)
        worker = ProjectorWorker(
            views=system.views,
            projector=projector,
            lock=LocalLock("unit"),
            nats_url="nats://unused",
            stream=StreamSettings(),
        )
        system.views.ensure(projector)
        worker.expected = 1
        log: list[tuple[str, int]] = []
        messages: list[Any] = []
        for seq, envelope in enumerate(events, start=1):
            message = _FakeMsg(seq, envelope, log)
            message.headers = envelope.headers()  # type: ignore[attr-defined]
            if envelope.type != handled:
                message.data = b"not an event: never read"
            messages.append(message)

        asyncio.run(worker.handle_batch(messages))
        assert sorted(log) == [("ack", seq) for seq in range(1, len(events) + 1)]
        assert worker.expected == len(events) + 1
        assert system.views.position(projector.NAME) == events[-1].position
        counts = read_model(system.views)["event_counts"]
        assert counts == [{"event_type": handled, "n": sum(e.type == handled for e in events)}]
    finally:
        system.close()
