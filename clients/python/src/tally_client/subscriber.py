"""The subscriber kit: Tally's event stream into a handler, each event's effect exactly once.

    store = PostgresStore("postgresql://…/notifier")

    def on_event(event: Event, tx: psycopg.Connection) -> None:
        tx.execute("INSERT INTO notifications ...", (...))  # the effect, in the same tx

    subscription = await subscribe(
        "nats://127.0.0.1:4222", "acme", on_event,
        name="notifier", types=["InvoiceFinalized"], store=store,
    )
    await subscription.wait()  # until stop() (or a signal handler calling it)

How it holds
- A durable JetStream pull consumer named `name` (filter `tally.events.<app_id>.>`, or the one
  type's subject) keeps the progress across restarts. Events of other types are acknowledged
  without calling the handler.
- Exactly-once effects: for each event the store opens a transaction, claims the event id (a
  redelivery finds it claimed and is skipped), the handler runs with that transaction, and the
  claim and the effect commit together (stores.py). The message is acknowledged after that.
- One runner per name: the store's lock. A second process waits and takes over when the first
  dies. At start the runner puts the consumer back at its ack floor when a dead predecessor
  left messages unacknowledged, so nothing waits for `ack_wait` after a crash.
- In order: messages are handled one at a time in stream order. A failing handler is retried
  in place with capped exponential backoff (the message is kept with `in_progress`), so no
  later event overtakes it; after `max_attempts` failures the event goes to the dead-letter
  subject (`tally.dead.<app_id>.<name>`: the original body and headers plus `Tally-Error`,
  `Tally-Subscriber`, `Tally-Attempts`) and the subscriber moves on.
- Events are upcast to the newest schema_version this client knows (events.py).
- `lag` is the number of matching events not yet handled (JetStream's pending count), updated
  after every fetch at most once a second; pass `lag_gauge` (anything with `set(value)`, e.g.
  a prometheus_client Gauge) to export it.
- `replay_from(position)` rewinds the consumer to the first event at or after a log position;
  the store still dedupes, so only events without a committed effect run again.

A sync handler runs on a worker thread; an async one runs on the event loop (its tx is the
same connection: keep database calls short, or use a sync handler).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ReplayPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from tally_client.events import Event, parse_event
from tally_client.stores import MemoryStore, Store

log = logging.getLogger("tally_client.subscriber")

Handler = Callable[[Event, Any], Any | Awaitable[Any]]
Start = Literal["all", "new"] | int


class HandlerFailed(Exception):
    """The handler raised (not the store): counts towards max_attempts."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


class Gauge(Protocol):
    def set(self, value: float) -> None: ...


@dataclass
class SubscriberOptions:
    """How a subscription reads the stream and what it does with failures."""

    name: str
    types: frozenset[str] = frozenset()
    stream: str = "TALLY_EVENTS"
    subject_prefix: str = "tally.events"
    start: Start = "all"
    batch: int = 32
    ack_wait: float = 30.0
    max_attempts: int = 5
    backoff: float = 0.1
    max_backoff: float = 5.0
    dead_letter_subject: str | None = None
    idle_fetch_seconds: float = 1.0
    lock_poll_seconds: float = 0.5
    lag_interval: float = 1.0
    connect_options: dict[str, Any] = field(default_factory=dict)

    def filter_subject(self, app_id: str) -> str:
        if len(self.types) == 1:
            return f"{self.subject_prefix}.{app_id}.*.{next(iter(self.types))}"
        return f"{self.subject_prefix}.{app_id}.>"


@dataclass
class SubscriberStats:
    """Counts since start, for logs and health checks."""

    handled: int = 0
    duplicates: int = 0
    skipped: int = 0
    failures: int = 0
    dead_lettered: int = 0
    last_position: int = 0


class Subscription:
    """One running subscriber (see the module doc); `subscribe()` makes and starts one."""

    def __init__(
        self,
        nats_url: str,
        app_id: str,
        handler: Handler,
        options: SubscriberOptions,
        store: Store | None = None,
        lag_gauge: Gauge | None = None,
    ) -> None:
        self.nats_url, self.app_id, self.handler = nats_url, app_id, handler
        self.options, self.store = options, store or MemoryStore()
        self.lag_gauge = lag_gauge
        self.lag: int | None = None
        self.stats = SubscriberStats()
        self.dead_letter_subject = options.dead_letter_subject or (
            f"tally.dead.{app_id}.{options.name}"
        )
        self._stop = asyncio.Event()
        self._active = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._pull: Any = None
        self._replay: tuple[int, asyncio.Future[int]] | None = None
        self._lag_at = 0.0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"tally-sub-{options.name}")
        self._is_async = inspect.iscoroutinefunction(handler)

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> Subscription:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"tally-sub-{self.options.name}")
        return self

    async def active(self, timeout: float | None = None) -> None:
        """Wait until this runner holds the lock and its consumer is ready."""
        await asyncio.wait_for(self._active.wait(), timeout)

    async def wait(self) -> None:
        """Until stopped (re-raises what ended the subscription, if anything did)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        """Stop after the event in hand: it is committed and acknowledged, or left to be
        delivered again."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def replay_from(self, position: int) -> int:
        """Rewind to the first event at or after log `position`; returns the stream
        sequence it starts from. Effects already committed are not repeated (the store)."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._replay = (position, future)
        return await future

    async def _run(self) -> None:
        """Sessions until stopped: a failure (NATS or the store gone) starts a new one."""
        delay = self.options.backoff
        try:
            while not self._stop.is_set():
                try:
                    await self._session()
                except Exception as error:
                    log.warning("subscriber %s failed, restarting: %r", self.options.name, error)
                    await self._pause(delay)
                    delay = min(self.options.max_backoff, delay * 2)
                finally:
                    await self._close()
        finally:
            self._thread.shutdown(wait=False)

    async def _session(self) -> None:
        await self._connect()
        await self._call(self.store.setup, self.options.name)
        if not await self._hold_lock():
            return
        await self._wait_for_stream()
        await self._bind(await self._prepare_consumer())
        self._active.set()
        while not self._stop.is_set():
            await self._step()

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless stopped first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _step(self) -> None:
        if self._replay is not None:
            await self._rewind()
        if not await self._call(self.store.still_locked):
            raise RuntimeError(f"subscriber {self.options.name}: lost the store's lock")
        try:
            messages = await self._pull.fetch(
                self.options.batch, timeout=self.options.idle_fetch_seconds
            )
        except (TimeoutError, nats.errors.TimeoutError):
            messages = []
        for message in messages:
            if self._stop.is_set():
                break  # not acknowledged: delivered again to the next runner
            await self._handle(message)
        await self._update_lag(force=not messages)

    async def _close(self) -> None:
        self._active.clear()
        with contextlib.suppress(Exception):
            await self._call(self.store.unlock)
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=2)  # the acks sent so far
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = self._js = self._pull = None

    # --- connection, lock and consumer ------------------------------------------------

    async def _connect(self) -> None:
        options = {"name": f"tally-sub-{self.options.name}", "max_reconnect_attempts": -1}
        options.update(self.options.connect_options)
        self._nc = await nats.connect(self.nats_url, **options)
        self._js = self._nc.jetstream()

    async def _hold_lock(self) -> bool:
        """Wait as a standby until the store's lock is ours; False when stopped first."""
        while not await self._call(self.store.try_lock, self.options.name):
            await self._pause(self.options.lock_poll_seconds)
            if self._stop.is_set():
                return False
        return True

    async def _wait_for_stream(self) -> None:
        """Tally's relay creates the stream; a subscriber started first waits for it."""
        while not self._stop.is_set():
            try:
                await self._jetstream().stream_info(self.options.stream)
                return
            except NotFoundError:
                await self._pause(self.options.lock_poll_seconds)

    def _config(self, deliver: DeliverPolicy, start_seq: int | None = None) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.options.name,
            description=f"tally-client subscriber {self.options.name}",
            deliver_policy=deliver,
            opt_start_seq=start_seq,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.options.ack_wait,
            max_deliver=-1,  # failures are retried here, then dead-lettered, never dropped
            filter_subject=self.options.filter_subject(self.app_id),
            replay_policy=ReplayPolicy.INSTANT,
            max_ack_pending=self.options.batch * 4,
        )

    async def _prepare_consumer(self) -> ConsumerConfig:
        """The durable consumer: created at `start`, kept as it is, or put back at its ack
        floor when a dead runner left messages unacknowledged (or the filter changed)."""
        js = self._jetstream()
        try:
            info = await js.consumer_info(self.options.stream, self.options.name)
        except NotFoundError:
            return await self._create(*await self._start_policy())
        wanted = self.options.filter_subject(self.app_id)
        if not info.num_ack_pending and info.config.filter_subject == wanted:
            kept: ConsumerConfig = info.config
            return kept
        floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
        log.info("consumer %s back to its ack floor %s", self.options.name, floor)
        await js.delete_consumer(self.options.stream, self.options.name)
        return await self._create(DeliverPolicy.BY_START_SEQUENCE, floor + 1)

    async def _start_policy(self) -> tuple[DeliverPolicy, int | None]:
        start = self.options.start
        if start == "new":
            return DeliverPolicy.NEW, None
        if isinstance(start, int) and start > 0:
            return DeliverPolicy.BY_START_SEQUENCE, await self._sequence_at(start)
        return DeliverPolicy.ALL, None

    async def _create(self, deliver: DeliverPolicy, start_seq: int | None) -> ConsumerConfig:
        created = await self._jetstream().add_consumer(
            self.options.stream, config=self._config(deliver, start_seq)
        )
        config: ConsumerConfig = created.config
        return config

    async def _bind(self, config: ConsumerConfig) -> None:
        if self._pull is not None:
            with contextlib.suppress(Exception):
                await self._pull.unsubscribe()
        self._pull = await self._jetstream().pull_subscribe_bind(
            durable=self.options.name, stream=self.options.stream
        )

    async def _rewind(self) -> None:
        assert self._replay is not None
        position, future = self._replay
        self._replay = None
        try:
            sequence = await self._sequence_at(position)
            js = self._jetstream()
            with contextlib.suppress(NotFoundError):
                await js.delete_consumer(self.options.stream, self.options.name)
            await self._bind(await self._create(DeliverPolicy.BY_START_SEQUENCE, sequence))
        except Exception as error:
            future.set_exception(error)
            return
        future.set_result(sequence)

    async def _sequence_at(self, position: int) -> int:
        """The first stream sequence whose event is at or after `position` (binary search on
        Tally-Position: the relay publishes in position order)."""
        js = self._jetstream()
        state = (await js.stream_info(self.options.stream)).state
        low, high = state.first_seq, state.last_seq + 1
        while low < high:
            middle = (low + high) // 2
            found = await self._position_at(middle)
            if found is None or found[1] >= position:
                high = middle if found is None else min(middle, found[0])
            else:
                low = found[0] + 1
        return low

    async def _position_at(self, sequence: int) -> tuple[int, int] | None:
        """(sequence, position) of the first message at or after `sequence`, or None."""
        try:
            raw = await self._jetstream().get_msg(self.options.stream, sequence, next=True)
        except NotFoundError:
            return None
        headers = raw.headers or {}
        return int(raw.seq or sequence), int(headers.get("Tally-Position", "0"))

    def _jetstream(self) -> JetStreamContext:
        assert self._js is not None, "not connected"
        return self._js

    # --- one message ------------------------------------------------------------------

    async def _handle(self, message: Msg) -> None:
        try:
            event = parse_event(message.data)
        except (ValidationError, ValueError, LookupError) as error:
            await self._dead_letter(message, error, attempts=0)  # a poison message
            return
        if self.options.types and event.type not in self.options.types:
            self.stats.skipped += 1
            await message.ack()
            return
        if await self._apply_with_retries(message, event):
            self.stats.last_position = max(self.stats.last_position, event.position)
            await message.ack()

    async def _apply_with_retries(self, message: Msg, event: Event) -> bool:
        """Apply until done (True), dead-lettered (False: acknowledged there) or stopped
        (False: left unacknowledged). Handler failures count towards max_attempts; store
        failures (its database away) are retried for as long as it takes."""
        delay, attempts = self.options.backoff, 0
        while not self._stop.is_set():
            try:
                applied = await self._apply(event)
            except HandlerFailed as failed:
                attempts += 1
                self.stats.failures += 1
                log.warning("handler failed on %s (%s/%s): %r", event.id, attempts,
                            self.options.max_attempts, failed.error)  # fmt: skip
                if attempts >= self.options.max_attempts:
                    await self._dead_letter(message, failed.error, attempts=attempts)
                    return False
            except Exception as error:
                log.warning("store failed on %s, retrying: %r", event.id, error)
            else:
                self._count(applied)
                return True
            await self._hold(message, delay)
            delay = min(self.options.max_backoff, delay * 2)
        return False

    def _count(self, applied: bool) -> None:
        if applied:
            self.stats.handled += 1
        else:
            self.stats.duplicates += 1

    async def _hold(self, message: Msg, delay: float) -> None:
        """Back off before the next attempt, keeping the message ours."""
        with contextlib.suppress(Exception):
            await message.in_progress()
        await self._pause(delay)

    async def _apply(self, event: Event) -> bool:
        """Claim and handle the event in one transaction; False for a duplicate."""
        store, name = self.store, self.options.name
        tx = await self._call(store.begin)
        try:
            if not await self._call(store.claim, tx, name, event):
                await self._call(store.rollback, tx)
                return False
            await self._run_handler(event, tx)
            await self._call(store.commit, tx)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._call(store.rollback, tx)
            raise
        return True

    async def _run_handler(self, event: Event, tx: Any) -> None:
        try:
            if self._is_async:
                await self.handler(event, tx)
            else:
                await self._call(self.handler, event, tx)
        except Exception as error:
            raise HandlerFailed(error) from error

    async def _dead_letter(self, message: Msg, error: BaseException, attempts: int) -> None:
        headers = dict(message.headers or {})
        headers |= {
            "Tally-Error": repr(error)[:1000],
            "Tally-Subscriber": self.options.name,
            "Tally-Attempts": str(attempts),
        }
        await self._publish_dead_letter(message.data, headers)
        self.stats.dead_lettered += 1
        log.error("event dead-lettered to %s: %r", self.dead_letter_subject, error)
        await message.ack()

    async def _publish_dead_letter(self, data: bytes, headers: dict[str, str]) -> None:
        """Into a stream when one captures the subject (acknowledged), else a plain NATS
        message (for whoever listens: keep a stream on `tally.dead.>` to keep them)."""
        subject, js = self.dead_letter_subject, self._jetstream()
        try:
            await js.find_stream_name_by_subject(subject)
        except NotFoundError:
            assert self._nc is not None
            await self._nc.publish(subject, data, headers=headers)
            await self._nc.flush()
            return
        await js.publish(subject, data, headers=headers)

    # --- lag ----------------------------------------------------------------------------

    async def _update_lag(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._lag_at < self.options.lag_interval:
            return
        self._lag_at = now
        try:
            info = await self._pull.consumer_info()
        except Exception:
            return
        self.lag = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        if self.lag_gauge is not None:
            self.lag_gauge.set(self.lag)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Store calls (and sync handlers) on the subscription's own worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, fn, *args)


async def subscribe(
    nats_url: str,
    app_id: str,
    handler: Handler,
    *,
    name: str,
    types: Iterable[str] = (),
    store: Store | None = None,
    lag_gauge: Gauge | None = None,
    **options: Any,
) -> Subscription:
    """Start a subscription (see the module doc); `options` are SubscriberOptions fields
    (`stream`, `subject_prefix`, `start`, `batch`, `ack_wait`, `max_attempts`, ...)."""
    settings = SubscriberOptions(name=name, types=frozenset(types), **options)
    subscription = Subscription(nats_url, app_id, handler, settings, store, lag_gauge)
    return await subscription.start()
