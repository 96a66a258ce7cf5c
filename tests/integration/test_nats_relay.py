"""The relay against real PostgreSQL and a real NATS JetStream: publishes every committed
event once after dedup, survives a crash between publish and tracking, rides out a NATS
outage, and only one relay publishes at a time."""

from __future__ import annotations

import asyncio
import signal
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from uuid import UUID

import nats
import orjson
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import StorageType

from adapters.bootstrap import System
from adapters.nats.relay import Relay
from adapters.nats.singleton import FileLock, PgAdvisoryLock, lock_key
from adapters.nats.stream import StreamSettings, ensure_stream
from adapters.nats.workers import build_relay
from projections.envelope import EventEnvelope
from tests.integration.nats_support import (  # noqa: F401  (fixtures)
    NATS_URL,
    PrivateNats,
    assert_exactly_once,
    committed,
    make_events,
    make_quota_events,
    nats_system_fixture,
    open_system,
    relay_position,
    spawn_relay,
    stream_fixture,
    stream_messages,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.timeout(120)]

SURFACE_FIELDS = {
    "id",
    "type",
    "position",
    "aggregate_id",
    "aggregate_type",
    "version",
    "app_id",
    "tenant_id",
    "occurred_at",
    "recorded_at",
    "schema_version",
    "data",
}


class Crash(Exception):
    """Stands in for the relay process dying."""


def test_a_relay_killed_between_publish_and_tracking_leaves_each_event_once(
    nats_system: System, stream: StreamSettings
) -> None:
    make_events(nats_system, tenants=3, uses=3)
    events = committed(nats_system)
    assert len(events) > 10

    async def scenario() -> None:
        first = build_relay(nats_system, batch=7)

        def die(batch: Sequence[EventEnvelope]) -> None:
            raise Crash(f"killed after the acks of {len(batch)} events, before tracking")

        first.before_store = die
        with pytest.raises(Crash):
            await first.run_once()
        await first.close()  # the dead process's connections go away
        assert nats_system.views.position("relay") == 0  # nothing was tracked

        second = build_relay(nats_system, batch=7)
        assert await second.run_once() == len(events)  # republishes from the stored position
        await second.close()

        messages = await stream_messages(stream)
        assert len(messages) == len(events)  # JetStream dedup absorbed the first 7 again
        assert_exactly_once(messages, events)
        assert nats_system.views.position("relay") == events[-1].position

    asyncio.run(scenario())


def test_a_plain_nats_subscriber_gets_every_event_with_the_surface_headers_in_order(
    nats_system: System, stream: StreamSettings
) -> None:
    async def scenario() -> None:
        nc = await nats.connect(NATS_URL)
        received: list[Msg] = []
        relay = build_relay(nats_system, batch=5)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        try:
            # the stream exists once the relay connected; subscribe like any downstream service
            await wait_until(_stream_exists(nc, stream.name), 10, "the stream")
            sub = await nc.jetstream().subscribe(
                f"{stream.prefix}.>", stream=stream.name, ordered_consumer=True
            )
            # commands keep committing while the relay and the subscriber run
            await asyncio.to_thread(make_events, nats_system, tenants=2, uses=4)
            await asyncio.to_thread(make_quota_events, nats_system, 10)
            events = committed(nats_system)

            async def all_received() -> bool:
                try:
                    while True:
                        received.append(await sub.next_msg(timeout=0.05))
                except TimeoutError:
                    pass
                return len({m.headers["Nats-Msg-Id"] for m in received if m.headers}) >= len(events)

            await wait_until(all_received, 20, "every event downstream")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await nc.close()

        by_id = {str(e.id): e for e in events}
        seen: dict[str, EventEnvelope] = {}
        versions: dict[UUID, list[int]] = defaultdict(list)
        for message in received:
            body = orjson.loads(message.data)
            assert SURFACE_FIELDS <= set(body)
            event = by_id[body["id"]]
            headers = message.headers or {}
            assert headers["Nats-Msg-Id"] == str(event.id)
            assert headers["Tally-Position"] == str(event.position)
            assert headers["Tally-Aggregate-Id"] == str(event.aggregate_id)
            assert headers["Tally-Aggregate-Version"] == str(event.version)
            assert headers["Tally-Tenant"] == (event.tenant_id or "")
            assert message.subject == (
                f"{stream.prefix}.{event.app_id}.{event.aggregate_type}.{event.type}"
            )
            assert body == event.model_dump(mode="json")
            if body["id"] in seen:  # a subscriber dedupes on id
                continue
            seen[body["id"]] = event
            versions[event.aggregate_id].append(event.version)
        assert set(seen) == set(by_id)  # every committed event
        for aggregate, got in versions.items():  # in order per aggregate
            assert got == sorted(got), f"aggregate {aggregate} out of order: {got}"
        assert any(len(v) > 5 for v in versions.values())

    asyncio.run(scenario())


def _stream_exists(nc: NatsClient, name: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        try:
            await nc.jetstream().stream_info(name)
        except Exception:
            return False
        return True

    return check


def test_a_nats_outage_does_not_stop_commands_and_the_relay_catches_up_without_gaps(
    pg_url: str, pg_schema: str, stream: StreamSettings, tmp_path: Path
) -> None:
    server = PrivateNats(tmp_path)
    server.start()
    system = open_system(pg_url, pg_schema, stream, nats_url=server.url)
    try:

        async def scenario() -> None:
            relay = build_relay(system, batch=20, max_backoff=0.5, ack_timeout=2.0)
            stop = asyncio.Event()
            task = asyncio.create_task(relay.run(stop))
            try:
                await asyncio.to_thread(make_events, system, tenants=2, uses=3)
                before = committed(system)

                async def published_all_so_far() -> bool:
                    return relay.published >= len(before)

                await wait_until(published_all_so_far, 10, "the relay before the outage")

                server.stop()  # NATS goes away
                await asyncio.to_thread(make_events, system, tenants=3, uses=3)
                await asyncio.to_thread(make_quota_events, system, 20)  # commands still commit
                during = committed(system)
                assert len(during) > len(before)
                await asyncio.sleep(1.5)  # the relay retries meanwhile
                assert system.views.position("relay") == before[-1].position

                server.start()  # same port and store dir
                await asyncio.to_thread(make_events, system, tenants=1, uses=2)
                after = committed(system)

                async def caught_up() -> bool:
                    return await asyncio.to_thread(relay_position, system) == (after[-1].position)

                await wait_until(caught_up, 30, "the relay to catch up")

                # again, NATS killed outright while commands and publishing are under way
                load = asyncio.create_task(
                    asyncio.to_thread(make_quota_events, system, 600, "busy")
                )
                await asyncio.sleep(0.3)
                server.kill()
                assert not load.done(), "NATS is killed while commands are still running"
                await asyncio.sleep(1.0)
                server.start()
                await load
                after = committed(system)
                await wait_until(caught_up, 30, "the relay to catch up again")
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)

            messages = await stream_messages(stream, server.url)
            assert_exactly_once(messages, after)  # no gap, nothing doubled, in order

        asyncio.run(scenario())
    finally:
        system.close()
        server.stop()


def test_only_one_relay_publishes_and_another_takes_over_when_the_holder_dies(
    nats_system: System, stream: StreamSettings, pg_url: str, pg_schema: str
) -> None:
    """The holder runs in a child process and gets SIGKILLed: its lock connection dies with it
    and the standby (polling pg_try_advisory_lock) takes over from the stored position."""
    child = spawn_relay(pg_url, pg_schema, stream)
    try:

        async def scenario() -> None:
            await asyncio.to_thread(make_events, nats_system, tenants=1, uses=2)

            async def child_published() -> bool:
                position = await asyncio.to_thread(relay_position, nats_system)
                return position == committed(nats_system)[-1].position

            await wait_until(child_published, 20, "the child relay to publish")

            standby = build_relay(nats_system, batch=10, lock_poll_seconds=0.1)
            stop = asyncio.Event()
            task = asyncio.create_task(standby.run(stop))
            try:
                await asyncio.to_thread(make_events, nats_system, tenants=2, uses=2)
                await wait_until(child_published, 10, "the holder to publish more")
                await asyncio.sleep(0.3)
                assert standby.published == 0, "only the lock holder publishes"
                assert not standby.lock.still_held()

                child.send_signal(signal.SIGKILL)  # the holder dies, its lock connection too
                child.wait(10)
                await asyncio.to_thread(make_events, nats_system, tenants=2, uses=2)
                events = committed(nats_system)

                async def taken_over() -> bool:
                    position = await asyncio.to_thread(relay_position, nats_system)
                    return standby.published > 0 and position == events[-1].position

                await wait_until(taken_over, 15, "the standby relay to take over")
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)

            messages = await stream_messages(stream)
            assert_exactly_once(messages, events)

        asyncio.run(scenario())
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def test_two_relays_in_one_process_never_both_publish(
    nats_system: System, stream: StreamSettings
) -> None:
    """Two relays race for the lock; when the holder's lock connection is closed under it,
    it stops publishing, whoever gets the lock next carries on, and nothing is doubled."""

    async def scenario() -> None:
        relays = [build_relay(nats_system, batch=5, lock_poll_seconds=0.05) for _ in range(2)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(r.run(stop)) for r in relays]
        try:
            await asyncio.to_thread(make_events, nats_system, tenants=2, uses=2)
            first = committed(nats_system)

            async def published(count: int) -> bool:
                return sum(r.published for r in relays) >= count

            await wait_until(lambda: published(len(first)), 10, "the first events")
            assert sorted(bool(r.published) for r in relays) == [False, True]
            holder = next(r for r in relays if r.published)
            lock = holder.lock
            assert isinstance(lock, PgAdvisoryLock)
            await asyncio.to_thread(lock.conn.close)  # the lock connection dies

            await asyncio.to_thread(make_events, nats_system, tenants=2, uses=2)
            events = committed(nats_system)

            async def all_tracked() -> bool:
                position = await asyncio.to_thread(relay_position, nats_system)
                return position == events[-1].position

            await wait_until(all_tracked, 15, "the relays to publish the rest")
            holders = [r for r in relays if r.lock.still_held()]
            assert len(holders) == 1
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 10)

        messages = await stream_messages(stream)
        assert_exactly_once(messages, events)

    asyncio.run(scenario())


def test_the_stream_is_created_and_brought_up_to_date(stream: StreamSettings) -> None:
    async def scenario() -> None:
        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            created = await ensure_stream(js, stream)
            assert created.config.subjects == [f"{stream.prefix}.>"]
            assert created.config.duplicate_window == pytest.approx(120)
            assert created.config.max_age == pytest.approx(86_400)
            assert created.config.storage == StorageType.FILE
            again = await ensure_stream(js, stream)  # idempotent
            assert again.config == created.config
            changed = StreamSettings(
                name=stream.name, prefix=stream.prefix, dedup_window_seconds=60, max_age_days=2
            )
            updated = await ensure_stream(js, changed)
            assert updated.config.duplicate_window == pytest.approx(60)
            assert updated.config.max_age == pytest.approx(2 * 86_400)
        finally:
            await nc.close()

    asyncio.run(scenario())


def test_relay_run_once_does_nothing_while_another_relay_holds_the_lock(
    nats_system: System,
) -> None:
    make_events(nats_system, tenants=1, uses=1)

    async def scenario() -> None:
        holder = build_relay(nats_system)
        other = build_relay(nats_system)
        try:
            assert await holder.run_once() == len(committed(nats_system))
            assert await other.run_once() == 0
        finally:
            await holder.close()
            await other.close()
        assert isinstance(other, Relay)

    asyncio.run(scenario())


def test_on_sqlite_a_file_lock_beside_the_database_allows_one_holder(tmp_path: Path) -> None:
    first = FileLock(str(tmp_path / "views.db.relay.lock"), "relay")
    second = FileLock(str(tmp_path / "views.db.relay.lock"), "relay")
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()
    assert lock_key("a") != lock_key("b") and lock_key("a") == lock_key("a")
