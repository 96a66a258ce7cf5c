"""The relay: tails the event store by global position and publishes every committed event to
JetStream (see docs/asyncapi.yaml), pipelined, then records how far it got.

Guarantees
- At least once, in position order: the position is stored only after JetStream acked every
  message of the batch, so a crash between publish and tracking republishes that batch; the
  stream's duplicate window (Nats-Msg-Id = event id) absorbs the overlap.
- In order even when a batch half landed: each message carries its precondition
  (`ordered_headers`): the batch's first lands only on the stream's last sequence as the
  relay knows it, each next one only right after the event before it. A copy that arrives
  late (the client replaying its buffer after a reconnect, when NATS was killed mid-batch)
  is refused by JetStream instead of landing after a gap; the retried batch fills it in order.
- Nothing acked is lost for good: at start and after any failure the relay reads the stream's
  last event; when it is below the tracked position (JetStream lost acked messages in a
  crash, or the stream was restored from a copy), the relay publishes again from there.
- Never skips: eventsourcing's PostgreSQL recorder serializes inserts with a table lock, so
  reading `position > last seen` never passes over an event that commits later. Gaps in
  positions (failed inserts) are normal.
- One publisher: the relay holds an advisory lock (PostgreSQL) or a file lock (SQLite) for as
  long as it publishes; others wait and take over when the holder's lock connection dies. The
  lock is checked before every batch.
- A NATS outage never stops commands (they only write PostgreSQL); the relay retries with
  capped exponential backoff and catches up from its stored position once NATS is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import structlog
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import Header, PubAck
from nats.js.errors import NotFoundError

from adapters.eventstore.envelopes import read_envelopes
from adapters.nats.connection import connect_unless_stopped
from adapters.nats.singleton import InstanceLock, sleep_unless, wait_for_lock
from adapters.nats.stream import StreamSettings, ensure_stream
from adapters.observability.tracing import batch_span
from adapters.readmodels.sql_store import ViewStore
from projections.base import Projector
from projections.envelope import EventEnvelope

log = structlog.get_logger(__name__)


class _Tracking(Projector):
    """No tables of its own: asks ViewStore.ensure for the tracking table only."""

    NAME = "relay"


class LockLost(RuntimeError):
    """Another relay may publish now; this one stops until it holds the lock again."""


class Backoff:
    """Capped exponential backoff: initial, 2x, 4x ... up to cap."""

    def __init__(self, initial: float = 0.05, cap: float = 5.0) -> None:
        self.initial, self.cap = initial, cap
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.initial

    @property
    def upcoming(self) -> float:
        """The delay the next call to next() returns."""
        return self._next


def ordered_headers(envelopes: Sequence[EventEnvelope], last_sequence: int) -> list[dict[str, str]]:
    """Each message's headers with its precondition: the first lands only when the stream's
    last sequence is still `last_sequence`, each next one only when the stream's last message
    is the event before it. JetStream checks duplicates first, so a republished event already
    in the stream is acked as a duplicate whatever its precondition."""
    stamped = []
    for index, envelope in enumerate(envelopes):
        headers = envelope.headers()
        if index == 0:
            headers[Header.EXPECTED_LAST_SEQUENCE.value] = str(last_sequence)
        else:
            headers[Header.EXPECTED_LAST_MSG_ID.value] = str(envelopes[index - 1].id)
        stamped.append(headers)
    return stamped


def encode(envelope: EventEnvelope) -> bytes:
    """The JSON body on the wire (SURFACE.md)."""
    return orjson.dumps(envelope.model_dump(mode="json"))


class Relay:
    """Event store -> JetStream. `run(stop)` until stopped; `run_once()` for tests/tools."""

    def __init__(
        self,
        *,
        recorder: Any,
        views: ViewStore,
        lock: InstanceLock,
        nats_url: str,
        stream: StreamSettings,
        batch: int = 1000,
        idle_seconds: float = 0.01,
        name: str = "relay",
        ack_timeout: float = 10.0,
        max_backoff: float = 5.0,
        lock_poll_seconds: float = 0.5,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        self.recorder, self.views, self.lock = recorder, views, lock
        self.nats_url, self.stream = nats_url, stream
        self.batch, self.idle_seconds, self.name = batch, idle_seconds, name
        self.ack_timeout, self.lock_poll_seconds = ack_timeout, lock_poll_seconds
        self.backoff = Backoff(cap=max_backoff)
        self.connect_options = connect_options or {}
        self.published = 0  # events acked by JetStream since start (duplicates included)
        self.on_published: list[Callable[[int], None]] = []  # each batch's count (/metrics)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._position: int | None = None  # cached stored position while we hold the lock
        self._stream_sequence: int | None = None  # the stream's last sequence, as last seen
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tables_ready = False
        self._stream_ready = False
        self._active = False  # holds the lock (as far as we know)
        # test hook: called after the acks, before the position is stored
        self.before_store: Callable[[Sequence[EventEnvelope]], None] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def stop(self) -> None:
        """Graceful stop: the batch in flight is finished and tracked first."""
        self._stop.set()

    def wake(self) -> None:
        """Something was committed: publish now instead of at the next poll (thread-safe,
        for a relay in the same process as the command bus)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop_event: asyncio.Event | None = None) -> None:
        """Publish until stopped: wait for the lock, then tail, publish, track, repeat."""
        stop = stop_event or self._stop
        if stop is not self._stop:
            self._stop = stop
        log.info("relay_starting", stream=self.stream.name, prefix=self.stream.prefix)
        self._loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                try:
                    if not await self._hold_lock(stop):
                        break
                    self._wake.clear()
                    count = await self._publish_batch()
                except Exception as error:
                    delay = self.backoff.next()
                    log.warning(
                        "relay_batch_failed_will_retry",
                        error=repr(error),
                        retry_in=round(delay, 3),
                    )
                    self._position = None  # re-read what is tracked
                    self._stream_ready = False  # e.g. the stream was deleted: recreate it
                    await self._drop_connection_if_closed()
                    await sleep_unless(stop, delay)
                    continue
                self.backoff.reset()
                if count < self.batch:
                    await self._idle(stop)
        finally:
            await self.close()
            log.info("relay_stopped", published=self.published)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Wait for the next poll, a commit in this process (wake), or the stop."""
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
        try:
            await asyncio.wait(waiters, timeout=self.idle_seconds, return_when="FIRST_COMPLETED")
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def run_once(self) -> int:
        """Publish everything committed now (taking the lock if free); returns how many
        events were published. Returns 0 without publishing when another relay holds it."""
        if not await asyncio.to_thread(self.lock.try_acquire):
            return 0
        await self._ensure_tables()
        await self._ensure_connected()
        total = 0
        while True:
            count = await self._publish_batch()
            total += count
            if count < self.batch:
                return total

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()
        self._position = None
        self._stream_sequence = None
        self._active = False
        await asyncio.to_thread(self.lock.release)

    # --- the lock -----------------------------------------------------------------------

    async def _hold_lock(self, stop: asyncio.Event) -> bool:
        """True while (or once) this relay holds the lock; False when stopped first."""
        if self._active:  # verified before every publish (_publish_batch)
            return True
        self._position = None
        if not await wait_for_lock(self.lock, stop, self.lock_poll_seconds):
            return False
        await self._ensure_tables()
        self._active = True
        log.info("relay_active", lock=self.lock.name)
        return True

    async def _ensure_tables(self) -> None:
        if not self._tables_ready:
            await asyncio.to_thread(self.views.ensure, _Tracking())
            self._tables_ready = True

    # --- NATS ---------------------------------------------------------------------------

    async def _ensure_connected(self) -> JetStreamContext:
        if self._nc is not None and self._nc.is_closed:
            self._nc, self._js = None, None
        if self._nc is None:
            options: dict[str, Any] = {
                "connect_timeout": 2,
                "allow_reconnect": True,
                "max_reconnect_attempts": -1,  # ride out outages; the backoff is ours
                "reconnect_time_wait": 0.5,
                "name": f"tally-{self.name}",
                "error_cb": self._on_error,
                "disconnected_cb": self._on_disconnected,
                "reconnected_cb": self._on_reconnected,
            }
            options.update(self.connect_options)
            nc = await connect_unless_stopped(self.nats_url, self._stop, **options)
            self._nc = nc
            self._js = nc.jetstream(publish_async_max_pending=max(self.batch, 1))
            self._stream_ready = False
        if not self._nc.is_connected:
            raise ConnectionError("NATS is disconnected (reconnecting)")
        assert self._js is not None
        if not self._stream_ready:  # at connect, and again after any failure
            await ensure_stream(self._js, self.stream)
            self._stream_ready = True
        return self._js

    async def _drop_connection_if_closed(self) -> None:
        if self._nc is not None and self._nc.is_closed:
            self._nc, self._js = None, None

    async def _on_error(self, error: Exception) -> None:
        log.warning("relay_nats_error", error=repr(error))

    async def _on_disconnected(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            log.warning("relay_nats_disconnected")

    async def _on_reconnected(self) -> None:
        log.info("relay_nats_reconnected")

    # --- one batch ----------------------------------------------------------------------

    async def _publish_batch(self) -> int:
        """Read up to `batch` events after the stored position, publish them pipelined,
        wait for every ack, then store the new position. Returns how many were published."""
        js = await self._ensure_connected()
        if self._position is None:
            self._position = await asyncio.to_thread(self.views.position, self.name)
        last_sequence = await self._last_sequence(js)  # may go back to what the stream lost
        after = self._position
        envelopes = await asyncio.to_thread(read_envelopes, self.recorder, after, self.batch)
        if not envelopes:
            return 0
        if not await asyncio.to_thread(self.lock.still_held):
            self._active = False
            raise LockLost(f"lost the {self.lock.name} lock; another relay may take over")
        attributes = {"messaging.batch.message_count": len(envelopes)}
        with batch_span("relay.publish", [e.trace_parent for e in envelopes], attributes):
            try:
                acks = await self._publish(js, envelopes, last_sequence)
            except BaseException:
                self._stream_sequence = None  # ask the stream where it is before the next try
                raise
            if self.before_store is not None:
                self.before_store(envelopes)
            last = envelopes[-1].position
            await asyncio.to_thread(self._store_position, last)
        self._position = last
        self._stream_sequence = max(self._stream_sequence or 0, *(ack.seq for ack in acks))
        self.published += len(envelopes)
        for listener in self.on_published:
            listener(len(envelopes))
        duplicates = sum(1 for ack in acks if ack.duplicate)
        log.debug(
            "relay_published",
            count=len(envelopes),
            position=last,
            duplicates=duplicates,
        )
        if duplicates:
            log.info("relay_republished_duplicates", duplicates=duplicates, position=last)
        return len(envelopes)

    async def _last_sequence(self, js: JetStreamContext) -> int:
        """The stream's last sequence: known after a batch, asked of JetStream otherwise (at
        start, and after any failure), when the relay also goes back to the stream's last
        event if that is below the tracked position."""
        if self._stream_sequence is None:
            info = await js.stream_info(self.stream.name)
            self._stream_sequence = int(info.state.last_seq)
            if info.state.messages:
                await self._back_to_the_stream(js, self._stream_sequence)
        return self._stream_sequence

    async def _back_to_the_stream(self, js: JetStreamContext, sequence: int) -> None:
        """When the stream's last event is below the tracked position, JetStream lost events
        it had acknowledged (a crash before they reached its disk) or the stream was restored
        from a copy: publish again from there, so the lost events are not a gap."""
        try:
            last = await js.get_msg(self.stream.name, sequence)
            position = int((last.headers or {}).get("Tally-Position", ""))
        except (NotFoundError, ValueError):  # deleted, or not one of ours: nothing to compare
            return
        if self._position is not None and position < self._position:
            log.warning(
                "relay_stream_behind_republishing", stream_position=position, tracked=self._position
            )
            self._position = position

    async def _publish(
        self, js: JetStreamContext, envelopes: Sequence[EventEnvelope], last_sequence: int
    ) -> list[PubAck]:
        """Pipelined: every message goes out on one connection (so in order) before any ack
        is awaited; then all acks are awaited together, bounded by ack_timeout. A message
        refused for its precondition (`ordered_headers`) fails the batch, which is retried."""
        futures: list[asyncio.Future[PubAck]] = []
        headers = ordered_headers(envelopes, last_sequence)
        try:
            for envelope, stamped in zip(envelopes, headers, strict=True):
                futures.append(
                    await js.publish_async(
                        envelope.subject(self.stream.prefix),
                        encode(envelope),
                        wait_stall=self.ack_timeout,
                        stream=self.stream.name,
                        headers=stamped,
                    )
                )
            _, pending = await asyncio.wait(futures, timeout=self.ack_timeout)
            if pending:
                raise TimeoutError(
                    f"{len(pending)} of {len(futures)} events not acknowledged by JetStream "
                    f"within {self.ack_timeout}s"
                )
            return [future.result() for future in futures]  # raises the first failure
        except BaseException:
            for future in futures:  # frees nats-py's pending slots; late acks are ignored
                future.cancel()
            raise

    def _store_position(self, position: int) -> None:
        with self.views.transaction() as conn:
            self.views.set_position(conn, self.name, position)
