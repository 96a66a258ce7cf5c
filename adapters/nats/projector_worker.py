"""A projector fed from JetStream: a durable pull consumer `proj-<NAME>` whose batches are
written with ViewStore.apply (view rows and tracking position in one transaction), then
acknowledged.

Guarantees
- Redelivery never double-counts: ViewStore.apply skips positions already applied.
- Nothing is skipped: a batch that fails is nak'd (with a growing delay) and retried, and this
  worker applies stream messages strictly in stream-sequence order. JetStream would otherwise
  hand out *newer* messages while a nak'd or crashed batch waits for redelivery, and applying
  those first would move the tracking position past events not yet applied. So the worker
  knows the next stream sequence it needs (`expected`); anything after a gap is nak'd and comes
  back later. At start it resets the durable consumer to its ack floor when a previous worker
  left messages unacknowledged (a crash), so recovery does not wait for ack_wait.
- One worker per projector at a time (advisory/file lock, as for the relay); a second one waits
  and takes over.

Why nats-py and not faststream here: faststream 0.7.8 can declare a durable batched pull
subscriber with manual ack (PullSub(batch=True), AckPolicy.MANUAL), and this worker was first
written that way, but its pull loop (`BatchPullStreamSubscriber._consume_pull`) only catches
`nats.errors.TimeoutError`, while nats-py 2.16's `fetch` raises the builtin
`asyncio.TimeoutError` when its deadline runs out mid-fetch. The consume task then dies and is
restarted by faststream's supervisor ("Task-N raised an exception, retrying..." with that
traceback, seen in the integration tests with a 20 ms batch window), and the messages of the
partly collected batch are dropped without ack or nak: JetStream redelivers them only after
ack_wait, and a projector that must stay in order stalls that long. Its batch also waits until
full or until the window ends, where nats-py's fetch returns what is available at once. So the
consumer is driven with nats-py directly: `pull_subscribe_bind` + `fetch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy, ReplayPolicy
from nats.js.errors import APIError, NotFoundError

from adapters.nats.connection import connect_unless_stopped
from adapters.nats.relay import Backoff
from adapters.nats.singleton import InstanceLock, sleep_unless, wait_for_lock
from adapters.nats.stream import StreamSettings, ensure_stream
from adapters.observability.tracing import batch_span, traceparent_of
from adapters.readmodels.sql_store import ViewStore
from projections.base import Projector
from projections.envelope import EventEnvelope

log = structlog.get_logger(__name__)


def consumer_name(projector: Projector) -> str:
    return f"proj-{projector.NAME}"


class ProjectorWorker:
    """Feeds one projector from the stream until stopped."""

    def __init__(
        self,
        *,
        views: ViewStore,
        projector: Projector,
        lock: InstanceLock,
        nats_url: str,
        stream: StreamSettings,
        batch: int = 500,
        wait_seconds: float = 0.005,
        idle_fetch_seconds: float = 1.0,
        ack_wait: float = 30.0,
        max_backoff: float = 5.0,
        lock_poll_seconds: float = 0.5,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        self.views, self.projector, self.lock = views, projector, lock
        self.nats_url, self.stream = nats_url, stream
        self.batch, self.wait_seconds, self.ack_wait = batch, wait_seconds, ack_wait
        self.lock_poll_seconds, self.idle_fetch_seconds = lock_poll_seconds, idle_fetch_seconds
        self.durable = consumer_name(projector)
        self.retry = Backoff(initial=0.1, cap=max_backoff)
        self.restart = Backoff(initial=0.2, cap=max_backoff)
        self.connect_options = connect_options or {}
        self.applied = 0  # events acked after a successful apply since start
        self.failures = 0  # batches that failed and were nak'd
        self.expected = 0  # next stream sequence to apply
        self._js: JetStreamContext | None = None
        self._stop = asyncio.Event()
        self._gap_checked = 0.0
        self._holdback = 0.0  # current retry delay while a failed event waits
        self._gap_since: float | None = None
        self._refusals = 0  # fetches refused in a row

    def stop(self) -> None:
        """Graceful stop: the batch in flight is applied and acked first."""
        self._stop.set()

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self, stop_event: asyncio.Event | None = None) -> None:
        stop = stop_event or self._stop
        if stop is not self._stop:
            self._stop = stop
        log.info("projector_worker_starting", projector=self.projector.NAME)
        try:
            while not stop.is_set():
                try:
                    if not await wait_for_lock(self.lock, stop, self.lock_poll_seconds):
                        break
                    await asyncio.to_thread(self.views.ensure, self.projector)
                    await self._serve(stop)
                    self.restart.reset()
                except Exception as error:
                    delay = self.restart.next()
                    log.warning(
                        "projector_worker_restarting",
                        projector=self.projector.NAME,
                        error=repr(error),
                        retry_in=round(delay, 3),
                    )
                    await sleep_unless(stop, delay)
        finally:
            await asyncio.to_thread(self.lock.release)
            log.info(
                "projector_worker_stopped", projector=self.projector.NAME, applied=self.applied
            )

    def _connect_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "connect_timeout": 2,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
        }
        options.update(self.connect_options)
        return options

    async def _serve(self, stop: asyncio.Event) -> None:
        """Set the consumer up, then fetch and apply batches until stopped or the lock is
        lost. The batch in flight is always finished (applied and acked, or nak'd)."""
        nc = await connect_unless_stopped(
            self.nats_url, stop, name=f"tally-{self.durable}", **self._connect_options()
        )
        try:
            js = self._js = nc.jetstream()
            await ensure_stream(js, self.stream)
            self.expected = await self._prepare_consumer(js)
            log.info(
                "projector_worker_active",
                projector=self.projector.NAME,
                consumer=self.durable,
                next_stream_seq=self.expected,
            )
            subscription = await js.pull_subscribe_bind(
                durable=self.durable, stream=self.stream.name
            )
            lock_checked = time.monotonic()
            while not stop.is_set():
                if time.monotonic() - lock_checked >= self.lock_poll_seconds:
                    if not await asyncio.to_thread(self.lock.still_held):
                        log.warning("projector_worker_lock_lost", projector=self.projector.NAME)
                        return
                    lock_checked = time.monotonic()
                messages = await self._fetch(subscription, stop)
                if messages:
                    await self.handle_batch(messages)
        finally:
            self._js = None
            with contextlib.suppress(Exception):
                await nc.close()

    async def _fetch(self, subscription: Any, stop: asyncio.Event) -> list[Msg]:
        """Wait (up to idle_fetch_seconds) for one message, then take whatever else is
        there already, waiting at most wait_seconds for more: a lone event is applied at once
        and a burst is applied as one batch."""
        started = time.monotonic()
        try:
            messages: list[Msg] = await subscription.fetch(1, timeout=self.idle_fetch_seconds)
        except TimeoutError:  # nats-py raises its own TimeoutError and the builtin one
            if time.monotonic() - started >= self.idle_fetch_seconds / 2:
                self._refusals = 0
                return []  # idle
            # refused at once (too many unacknowledged, consumer deleted...): do not spin
            await self._refused(stop, "fetch refused")
            return []
        except APIError as error:
            await self._refused(stop, repr(error))
            return []
        self._refusals = 0
        if self.batch > 1:
            # anything delivered after the wait stays in the subscription for the next fetch
            with contextlib.suppress(TimeoutError, APIError):
                messages += await subscription.fetch(self.batch - 1, timeout=self.wait_seconds)
        return messages

    async def _refused(self, stop: asyncio.Event, why: str) -> None:
        """Back off a little; after ~2 s of refusals start over (re-creating the consumer)."""
        self._refusals += 1
        if self._refusals >= 40:
            self._refusals = 0
            raise RuntimeError(f"JetStream keeps refusing fetches ({why}); starting over")
        await sleep_unless(stop, 0.05)

    # --- the consumer -------------------------------------------------------------------

    def _consumer_config(
        self, deliver: DeliverPolicy = DeliverPolicy.ALL, start_seq: int | None = None
    ) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            description=f"Tally projector {self.projector.NAME}",
            deliver_policy=deliver,
            opt_start_seq=start_seq,
            ack_policy=JsAckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=-1,  # a failing event is retried, never given up on
            filter_subject=f"{self.stream.prefix}.>",
            replay_policy=ReplayPolicy.INSTANT,
            max_ack_pending=self.batch * 2,
        )

    async def _prepare_consumer(self, js: JetStreamContext) -> int:
        """Create the durable consumer, or reset it to its ack floor when a previous worker
        left messages unacknowledged; returns the next stream sequence to apply.

        A consumer with nothing pending delivers `delivered.stream_seq + 1` next (for a new
        one that is its start sequence minus one, plus one); everything up to its ack floor
        was applied before it was acked, so restarting just after the floor is safe."""
        stream = await js.stream_info(self.stream.name)
        first_seq = stream.state.first_seq
        try:
            info = await js.consumer_info(self.stream.name, self.durable)
        except NotFoundError:
            info = None
        config = self._consumer_config()
        if info is not None:
            wrong_filter = info.config.filter_subject != f"{self.stream.prefix}.>"
            if not (info.num_ack_pending or wrong_filter):
                delivered = info.delivered.stream_seq if info.delivered is not None else 0
                return max(delivered + 1, first_seq)
            floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
            start = max(floor + 1, first_seq)
            log.info(
                "projector_consumer_reset_to_ack_floor",
                consumer=self.durable,
                ack_floor=floor,
                ack_pending=info.num_ack_pending,
            )
            await js.delete_consumer(self.stream.name, self.durable)
            config = self._consumer_config(DeliverPolicy.BY_START_SEQUENCE, start)
        created = await js.add_consumer(self.stream.name, config=config)
        delivered = created.delivered.stream_seq if created.delivered is not None else 0
        return max(delivered + 1, first_seq)

    # --- one batch ----------------------------------------------------------------------

    async def handle_batch(self, messages: Sequence[Msg]) -> None:
        """Apply the in-order part of a fetched batch, ack it; nak what must wait.

        Copies of one stream message (a redelivery fetched with the original) share the fate
        of the copy that is applied: acked after the commit, or nak'd with it."""
        copies: dict[int, list[Msg]] = {}
        for message in messages:
            copies.setdefault(message.metadata.sequence.stream, []).append(message)
        ready: list[int] = []
        stale: list[int] = []
        later: list[int] = []
        expected = self.expected
        for seq in sorted(copies):
            if seq < self.expected:
                stale.append(seq)  # applied and acked before: a late duplicate delivery
            elif seq == expected:
                ready.append(seq)
                expected += 1
            else:
                later.append(seq)
        if not ready and later and await self._skip_expired(later[0]):
            return await self.handle_batch(messages)
        if ready:
            ok = await self._apply([copies[seq][0] for seq in ready])
            if ok < len(ready):
                if ok:
                    self.retry.reset()  # progress: back off only on the same event failing
                self._holdback = self.retry.next()
                self.failures += 1
                for seq in ready[ok:]:
                    for message in copies[seq]:
                        await message.nak(delay=self._holdback)
                ready = ready[:ok]
            else:
                self.retry.reset()
                self._holdback = 0.0
            if ready:
                self.expected = ready[-1] + 1
                self.applied += len(ready)
        for seq in [*ready, *stale]:
            for message in copies[seq]:
                await message.ack()
        for seq in later:
            # an earlier message is waiting for redelivery: this one must not go first
            for message in copies[seq]:
                await message.nak(delay=max(self._holdback, 0.1) + 0.05)
        self._watch_gap(stuck=bool(later) and not ready)

    def _watch_gap(self, *, stuck: bool) -> None:
        """Self-healing: if only later messages keep coming while no failure is being retried
        (so the one expected is not pending here), restart, which resets the consumer to its
        ack floor. Not expected to happen; guards against a wrong `expected`."""
        if not stuck or self._holdback:
            self._gap_since = None
            return
        now = time.monotonic()
        if self._gap_since is None:
            self._gap_since = now
        elif now - self._gap_since > max(2 * self.ack_wait, 10.0):
            self._gap_since = None
            raise RuntimeError(
                f"stream sequence {self.expected} never arrived; resetting the consumer"
            )

    async def _apply(self, messages: Sequence[Msg]) -> int:
        """Apply the messages (in order) in one transaction; when that fails, apply them one
        by one to make progress up to the failing event. Returns how many are applied. A
        span continues the trace of the first message's command (its traceparent header)."""
        parents = [traceparent_of(getattr(m, "headers", None)) for m in messages]
        attributes = {"tally.projector": self.projector.NAME}
        with batch_span("projector.batch", parents, attributes | {"tally.events": len(messages)}):
            return await self._apply_in_order(messages)

    async def _apply_in_order(self, messages: Sequence[Msg]) -> int:
        """How many messages (a prefix) are applied: those of event types the projector
        handles are decoded and applied, the others only move its position (read from the
        message's headers and subject, never decoded: most of a projector's stream is not
        its own)."""
        envelopes, owners, through, stop, unreadable = self._read(messages)
        by_position = sorted(envelopes, key=lambda e: e.position)
        if by_position != envelopes:
            # the relay publishes in position order, so this should not happen; applied in
            # position order anyway (ViewStore.apply skips what is at or below its position)
            log.warning(
                "projector_stream_out_of_position_order",
                projector=self.projector.NAME,
                positions=[e.position for e in envelopes],
            )
            done = await self._apply_envelopes(by_position, through)
            # partial progress cannot be mapped back to a stream-order prefix: ack nothing
            return stop if done == len(envelopes) and unreadable is None else 0
        done = await self._apply_envelopes(envelopes, through) if stop else 0
        if done < len(envelopes):
            return owners[done]  # the messages before the one that failed
        if unreadable is not None:
            log.error(
                "projection_event_unreadable_will_retry",
                projector=self.projector.NAME,
                stream_seq=messages[stop].metadata.sequence.stream,
                subject=messages[stop].subject,
                error=repr(unreadable),
            )
        return stop

    def _read(
        self, messages: Sequence[Msg]
    ) -> tuple[list[EventEnvelope], list[int], int, int, Exception | None]:
        """(the envelopes to apply, the index of each one's message, the position the read
        prefix reaches, how many messages were read, the error that stopped the reading)."""
        envelopes: list[EventEnvelope] = []
        owners: list[int] = []
        through = 0
        for index, message in enumerate(messages):
            skipped = self._not_handled(message)
            if skipped is not None:
                through = max(through, skipped)
                continue
            try:
                envelope = EventEnvelope.model_validate_json(message.data)
            except ValueError as error:
                return envelopes, owners, through, index, error
            envelopes.append(envelope)
            owners.append(index)
            through = max(through, envelope.position)
        return envelopes, owners, through, len(messages), None

    def _not_handled(self, message: Msg) -> int | None:
        """The position of a message whose event type (the subject's last token) this
        projector does not handle; None when it must be decoded (handled, or headers
        missing)."""
        event_type = str(getattr(message, "subject", "")).rsplit(".", 1)[-1]
        if event_type in self.projector.HANDLES:
            return None
        position = (getattr(message, "headers", None) or {}).get("Tally-Position", "")
        return int(position) if position.isdigit() else None

    async def _apply_envelopes(self, envelopes: Sequence[EventEnvelope], through: int = 0) -> int:
        try:
            await asyncio.to_thread(self.views.apply, self.projector, envelopes, through)
            return len(envelopes)
        except Exception as error:
            first_error: Exception = error
        done = 0
        if len(envelopes) > 1:
            for envelope in envelopes:
                try:
                    await asyncio.to_thread(self.views.apply, self.projector, [envelope])
                except Exception as error:
                    first_error = error
                    break
                done += 1
            if done == len(envelopes):  # the failure did not come back one by one
                await asyncio.to_thread(self.views.apply, self.projector, [], through)
                log.warning(
                    "projection_batch_failed_then_applied_one_by_one",
                    projector=self.projector.NAME,
                    error=repr(first_error),
                )
                return done
        if not envelopes:  # only a position to record, and that failed
            log.error(
                "projection_position_failed_will_retry",
                projector=self.projector.NAME,
                position=through,
                error=repr(first_error),
            )
            return 0
        failing = envelopes[done]
        log.error(
            "projection_failed_will_retry",
            projector=self.projector.NAME,
            position=failing.position,
            event_id=str(failing.id),
            event_type=failing.type,
            applied_before_failure=done,
            retry_in=round(self.retry.upcoming, 3),
            error=repr(first_error),
            exc_info=first_error,
        )
        return done

    async def _skip_expired(self, first_later: int) -> bool:
        """When the next sequence is no longer in the stream (aged out, purged), continue
        from the stream's first message instead of waiting forever. Checked at most 1/s."""
        now = time.monotonic()
        if self._js is None or now - self._gap_checked < 1.0:
            return False
        self._gap_checked = now
        try:
            info = await self._js.stream_info(self.stream.name)
        except Exception:
            return False
        first_seq = info.state.first_seq
        if first_seq > self.expected:
            log.error(
                "projector_events_expired_from_stream",
                projector=self.projector.NAME,
                missing_from=self.expected,
                missing_to=first_seq - 1,
                hint="rebuild with `tally replay`",
            )
            self.expected = first_seq
            return first_seq <= first_later
        return False
