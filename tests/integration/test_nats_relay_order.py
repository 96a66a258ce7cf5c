"""The relay's order when a batch half landed (real PostgreSQL and NATS JetStream): a late
copy of a batch's tail, as a client replays its buffer after NATS was killed mid-batch, is
refused by JetStream; the retried batch fills the gap in order, each event once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import pytest
from nats.js.errors import BadRequestError

from adapters.bootstrap import System
from adapters.nats.relay import Relay, encode, ordered_headers
from adapters.nats.stream import StreamSettings, ensure_stream
from adapters.nats.workers import build_relay
from tests.integration.nats_support import (  # noqa: F401  (fixtures)
    NATS_URL,
    PrivateNats,
    assert_exactly_once,
    committed,
    delete_stream,
    make_events,
    make_quota_events,
    nats_system_fixture,
    open_system,
    relay_position,
    stream_fixture,
    stream_messages,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.timeout(180)]

WRONG_LAST_MSG_ID = 10070  # JetStream's error code: the stream's last message is another one


def test_a_late_copy_of_a_half_landed_batch_is_refused_and_the_retry_fills_in_order(
    nats_system: System, stream: StreamSettings
) -> None:
    make_events(nats_system, tenants=3, uses=4)
    events = committed(nats_system)
    assert len(events) >= 20

    async def scenario() -> None:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        try:
            await ensure_stream(js, stream)
            first = events[:10]  # a batch that landed whole
            for envelope, headers in zip(first, ordered_headers(first, 0), strict=True):
                await js.publish(envelope.subject(stream.prefix), encode(envelope), headers=headers)
            second = events[10:20]  # a batch whose first half was lost with the connection
            late = list(zip(second, ordered_headers(second, len(first)), strict=True))[5:]
            for envelope, headers in late:  # the client's buffer, replayed after reconnecting
                with pytest.raises(BadRequestError) as refused:
                    await js.publish(
                        envelope.subject(stream.prefix), encode(envelope), headers=headers
                    )
                assert refused.value.err_code == WRONG_LAST_MSG_ID
        finally:
            await nc.close()
        assert len(await stream_messages(stream)) == len(first)  # nothing landed after a gap

        relay = build_relay(nats_system, batch=7)  # tracked nothing yet: retries from 0
        assert await relay.run_once() == len(events)
        await relay.close()
        assert_exactly_once(await stream_messages(stream), events)  # in order, each once

    asyncio.run(scenario())


def test_a_stream_that_lost_events_it_had_acked_gets_them_again(
    nats_system: System, stream: StreamSettings
) -> None:
    """The stream ends below the tracked position (JetStream lost acked messages in a crash,
    or was restored from an older copy): the relay publishes again from the stream's end."""
    make_events(nats_system, tenants=2, uses=4)
    events = committed(nats_system)

    async def scenario() -> None:
        relay = build_relay(nats_system, batch=7)
        assert await relay.run_once() == len(events)
        await relay.close()
        assert relay_position(nats_system) == events[-1].position
        await delete_stream(stream.name)  # the stream as it was after the first 10 events
        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            await ensure_stream(js, stream)
            kept = events[:10]
            for envelope, headers in zip(kept, ordered_headers(kept, 0), strict=True):
                await js.publish(envelope.subject(stream.prefix), encode(envelope), headers=headers)
        finally:
            await nc.close()

        again = build_relay(nats_system, batch=7)
        assert await again.run_once() == len(events) - len(kept)
        await again.close()
        assert_exactly_once(await stream_messages(stream), events)

    asyncio.run(scenario())


def test_nats_killed_mid_batch_again_and_again_leaves_every_event_once_in_order(
    pg_url: str, pg_schema: str, stream: StreamSettings, tmp_path: Path
) -> None:
    """The relay chaos scenario, three times in a row: a backlog piles up while NATS is down;
    NATS comes back, and is SIGKILLed again as soon as the relay's first batch of the
    backlog is acked (the next batches in flight). The stream ends with every event once,
    in order."""
    server = PrivateNats(tmp_path)
    server.start()
    system = open_system(pg_url, pg_schema, stream, nats_url=server.url)
    try:

        async def scenario() -> None:
            relay = build_relay(system, batch=100, max_backoff=0.2, ack_timeout=2.0)
            stop = asyncio.Event()
            task = asyncio.create_task(relay.run(stop))
            try:
                for round_ in range(3):
                    server.kill()
                    await asyncio.to_thread(make_quota_events, system, 300, f"backlog-{round_}")
                    publishing = _publishing(relay)
                    server.start()
                    await wait_until(publishing, 30, "the relay publishing the backlog", 0.001)
                    server.kill()  # mid-backlog: the next batches are in flight
                    await asyncio.sleep(0.2)
                    server.start()
                after = committed(system)

                async def caught_up() -> bool:
                    return await asyncio.to_thread(relay_position, system) == after[-1].position

                await wait_until(caught_up, 60, "the relay to catch up")
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)
            assert_exactly_once(await stream_messages(stream, server.url), after)

        asyncio.run(scenario())
    finally:
        system.close()
        server.stop()


def _publishing(relay: Relay) -> Callable[[], Awaitable[bool]]:
    """A check that turns true once the relay published more than when it was made."""
    start = relay.published

    async def check() -> bool:
        return relay.published > start

    return check
