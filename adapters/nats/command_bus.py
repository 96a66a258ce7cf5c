"""The command and query bus over NATS (faststream): request/reply on
`tally.cmd.<app_id>.<command_name>` and `tally.query.<app_id>.<query_name>` (SURFACE.md).

The JSON body is the command's fields (or the query's parameters); the app_id comes from the
subject (a body app_id that differs is a validation error naming app_id). The bus has no API
keys: the actor is `nats:<app_id>` unless the body names one, and a body actor can never
claim an API key's identity (`api-key:…`, `key:…`: a validation error naming actor). Each
reply is what `CommandBus.dispatch` answers for one command: `{"ok": true, "result": ...}` (+
`"duplicate": true` for a repeated command_id) or `{"ok": false, "error": {"code", "message",
"details"}}`.

Group commit
- Requests arrive on one queue-group subscription per kind (`tally.cmd.*.*`,
  `tally.query.*.*`), so replicas share the load. The message handler never waits: it parses and
  validates the body on the event loop (a bad request is answered at once and never joins a
  batch) and puts the command on an asyncio queue.
- One batcher task takes what is waiting (up to `max_batch` commands, lingering at most
  `linger` seconds for more) and runs `CommandBus.handle_many` on a worker thread: many
  commands, one transaction, each outcome as if run alone. The replies go out only after that
  transaction committed. One batch is in flight at a time per process: the event store
  serializes writers anyway, and while a batch commits the next one fills up.
- `max_batch` (128) stays far below the size at which one save can hang: the eventsourcing
  recorder inserts a batch as one pipelined INSERT with a single array parameter, and with
  psycopg 3.3.9 here that call never returns once the array reaches ~5 MB (8,000 events of
  600 bytes; 3.6 MB passed). 128 commands write a few hundred KB.
- A store outage (eventsourcing OperationalError/InterfaceError, or no answer within
  `store_timeout`) answers `unavailable` quickly. While a timed-out batch still holds the worker
  thread, new commands are answered `unavailable` at once instead of queueing behind it; the
  outcome of the timed-out batch itself is unknown, so clients retry with the same command_id.
- `stop()` is graceful: the subscriptions are drained (nothing new is taken, everything already
  received is queued), the batcher finishes the queue, and every command is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
import structlog
from eventsourcing.persistence import InterfaceError, OperationalError
from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from pydantic import BaseModel

from adapters.json_depth import nests_deeper_than
from adapters.nats.connection import servers
from adapters.observability import tracing
from adapters.observability.correlation import correlated, request_id_in
from commands import edge
from commands.base import Command
from commands.edge import Refused
from domain.errors import DomainError
from projections.queries import QUERIES

if TYPE_CHECKING:
    from faststream.nats.subscriber.usecases.basic import LogicSubscriber

    from adapters.bootstrap import System

log = structlog.get_logger(__name__)

DEFAULT_PREFIX = "tally"
QUEUE_GROUP = "tally-command-bus"
KEY_ACTOR_PREFIXES = ("api-key:", "key:")  # the HTTP API's actors: only a verified key has them

#: errors that mean "the store is not there" (not "the request is wrong")
STORE_DOWN: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


# --- replies --------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def encode(reply: dict[str, Any]) -> bytes:
    return orjson.dumps(reply, default=_json_default)


def error_reply(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return edge.refused(edge.error(code, message, details))


def unavailable(message: str, **detail: Any) -> dict[str, Any]:
    return error_reply("unavailable", message, [detail] if detail else [])


INTERNAL_ERROR = error_reply("internal_error", "internal error; the server log has the details")
OVERLOADED = encode(
    unavailable("the command bus is overloaded (too many commands waiting); retry later")
)


# --- requests -------------------------------------------------------------------------------


def parse_subject(subject: str) -> tuple[str, str]:
    """(app_id, name) from `<prefix>.<kind>.<app_id>.<name>` (prefix may contain dots)."""
    parts = subject.rsplit(".", 2)
    if len(parts) != 3:
        raise Refused(edge.error("invalid_subject", f"cannot route subject {subject!r}"))
    return parts[1], parts[2]


def parse_body(data: bytes, name: str, max_depth: int) -> dict[str, Any]:
    """The JSON object of a request body (empty body = {}), nested at most `max_depth` deep
    (checked before parsing)."""
    if not data.strip():
        return {}
    if nests_deeper_than(data, max_depth):
        raise Refused(
            edge.error(
                "invalid_body",
                f"the JSON is nested too deeply (more than {max_depth} levels)",
                [{"field": "body", "rule": "max_depth", "limit": max_depth}],
            )
        )
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise Refused(
            edge.error(
                "invalid_json",
                f"the body is not valid JSON: {error}",
                [{"field": "body", "rule": "json_invalid", "message": str(error)}],
            )
        ) from None
    if not isinstance(body, dict):
        message = "the body must be a JSON object of fields"
        raise Refused(edge.field_error(name, "body", "dict_type", message))
    return body


def with_subject_app(body: dict[str, Any], app_id: str, name: str) -> dict[str, Any]:
    """The body with the subject's app_id; a different app_id in the body is refused."""
    given = body.get("app_id")
    if given is not None and given != app_id:
        message = f"app_id {given!r} in the body differs from {app_id!r} in the subject"
        raise Refused(edge.field_error(name, "app_id", "subject_mismatch", message))
    return {**body, "app_id": app_id}


def with_bus_actor(body: dict[str, Any], app_id: str, name: str) -> dict[str, Any]:
    """The body with its actor, `nats:<app_id>` by default; an API key's actor is refused."""
    actor = body.get("actor")
    if actor is None:
        return {**body, "actor": f"nats:{app_id}"}
    if isinstance(actor, str) and actor.strip().lower().startswith(KEY_ACTOR_PREFIXES):
        message = "actors starting with api-key: or key: are API keys, recorded only over HTTP"
        raise Refused(edge.field_error(name, "actor", "reserved_actor", message))
    return body


def build_command(system: System, name: str, app_id: str, data: bytes) -> Command:
    """Parse and validate one command request; Refused carries the error of a bad one."""
    command_type = system.bus.command_type
    try:
        command_type(name)
    except DomainError as unknown:
        raise Refused(unknown.as_dict()) from None
    body = with_subject_app(parse_body(data, name, system.settings.max_json_depth), app_id, name)
    return edge.command_named(command_type, name, with_bus_actor(body, app_id, name))


def query_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The query's parameters, validated against the ones it declares (commands/edge.py):
    unknown or missing ones are a validation_error naming the parameter."""
    if name not in QUERIES:
        raise Refused(
            edge.error(
                "unknown_query",
                f"no query named {name!r}",
                [{"field": "query_name", "known": sorted(QUERIES)}],
            )
        )
    return edge.query_params(QUERIES[name], name, params)


# --- the server -----------------------------------------------------------------------------


class _Pending:
    __slots__ = ("command", "msg")

    def __init__(self, command: Command, msg: Msg) -> None:
        self.command, self.msg = command, msg


_STOP = object()


class CommandBusServer:
    """The NATS edge of the command bus and the queries (see the module docstring)."""

    def __init__(
        self,
        system: System,
        nats_url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        queue_group: str = QUEUE_GROUP,
        max_batch: int = 128,
        linger: float = 0.0005,
        store_timeout: float = 5.0,
        query_threads: int = 4,
        max_queue: int = 20_000,
        name: str = "tally-command-bus",
    ) -> None:
        self.system = system
        self.prefix = prefix
        self.max_batch = max_batch
        self.linger = linger
        self.store_timeout = store_timeout
        self.max_queue = max_queue
        self.broker = NatsBroker(
            servers(nats_url),
            apply_types=False,
            logger=None,
            name=name,
            max_reconnect_attempts=-1,
            graceful_timeout=store_timeout + 5,
        )
        self._queue: asyncio.Queue[_Pending | object] = asyncio.Queue()
        self._commands_thread = ThreadPoolExecutor(1, thread_name_prefix="bus-commands")
        self._query_threads = ThreadPoolExecutor(query_threads, thread_name_prefix="bus-queries")
        self._query_slots = asyncio.Semaphore(query_threads * 4)
        self._query_tasks: set[asyncio.Task[None]] = set()
        self._batcher: asyncio.Task[None] | None = None
        self._stuck: asyncio.Future[list[bytes]] | None = None
        self._subscribers: list[LogicSubscriber[Any]] = []
        self.batches = 0
        self.batched_commands = 0
        self.store_seconds = 0.0  # time the worker thread spent running batches

        async def raw(message: Any) -> Any:  # the handler gets faststream's message as is
            return message

        for kind, handler in (("cmd", self._on_command), ("query", self._on_query)):
            subscriber = self.broker.subscriber(
                f"{prefix}.{kind}.*.*", queue=queue_group, no_reply=True, decoder=raw
            )
            subscriber(handler)
            self._subscribers.append(subscriber)

    # --- lifecycle ---

    async def start(self) -> None:
        await self.broker.start()
        self._batcher = asyncio.create_task(self._batch_loop(), name="command-bus-batcher")
        log.info("command bus listening", prefix=self.prefix, max_batch=self.max_batch)

    async def stop(self) -> None:
        """Stop taking requests, answer every one already received, then disconnect."""
        for subscriber in self._subscribers:
            subscription = subscriber.subscription
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(subscription.drain(), self.store_timeout)  # type: ignore[attr-defined]
                subscriber.subscription = None  # drained: faststream must not unsubscribe again
        if self._batcher is not None:
            await self._queue.put(_STOP)
            await self._batcher
            self._batcher = None
        if self._query_tasks:
            await asyncio.wait(set(self._query_tasks), timeout=self.store_timeout + 1)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.broker.connection.flush(), 5)
        with contextlib.suppress(Exception):
            await self.broker.stop()
        self._commands_thread.shutdown(wait=False)
        self._query_threads.shutdown(wait=False)
        log.info("command bus stopped", batches=self.batches, commands=self.batched_commands)

    async def __aenter__(self) -> CommandBusServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- commands ---

    async def _on_command(self, message: Any) -> None:
        msg: Msg = message.raw_message
        name = "unknown"
        try:
            app_id, name = parse_subject(msg.subject)
            command = build_command(self.system, name, app_id, msg.data)
            command = correlated(command, request_id_in(msg.headers), sent=True)
        except Refused as bad:  # counted as HTTP counts a command refused at its edge
            self.system.metrics.command(name, bad.code)
            await self._respond(msg, encode(bad.reply()))
            return
        except Exception:
            log.exception("command request failed", subject=msg.subject)
            await self._respond(msg, encode(INTERNAL_ERROR))
            return
        if self._queue.qsize() >= self.max_queue:
            await self._respond(msg, OVERLOADED)
            return
        self._queue.put_nowait(_Pending(command, msg))

    async def _batch_loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            deadline = time.monotonic() + self.linger
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            try:
                await self._run_batch(batch)  # type: ignore[arg-type]
            except Exception:  # never let the batcher die: later commands would hang
                log.exception("command batch could not be answered")

    async def _run_batch(self, batch: Sequence[_Pending]) -> None:
        commands = [p.command for p in batch]
        replies: Sequence[bytes]
        if self._stuck is not None and not self._stuck.done():
            replies = [self._unavailable_while_stuck()] * len(batch)
        else:
            self._stuck = None
            loop = asyncio.get_running_loop()
            parents = [tracing.traceparent_of(p.msg.headers) for p in batch]
            running = loop.run_in_executor(self._commands_thread, self._execute, commands, parents)
            try:
                replies = await asyncio.wait_for(asyncio.shield(running), self.store_timeout)
            except TimeoutError:
                self._stuck = running
                running.add_done_callback(_consume_result)
                log.warning("event store did not answer in time", commands=len(batch))
                replies = [
                    encode(
                        unavailable(
                            f"the event store did not answer within {self.store_timeout:g}s; "
                            "the outcome is unknown: retry with the same command_id",
                            outcome="unknown",
                        )
                    )
                ] * len(batch)
            except STORE_DOWN as error:
                log.warning("event store unavailable", error=str(error))
                replies = [encode(unavailable(f"the event store is unavailable: {error}"))] * len(
                    batch
                )
            except Exception:
                log.exception("command batch failed")
                replies = [encode(INTERNAL_ERROR)] * len(batch)
        self.batches += 1
        self.batched_commands += len(batch)
        for pending, reply in zip(batch, replies, strict=True):
            await self._respond(pending.msg, reply)

    def _unavailable_while_stuck(self) -> bytes:
        return encode(
            unavailable(
                "the event store is not answering (an earlier batch is still waiting on it); "
                "retry later",
                outcome="not_run",
            )
        )

    def _execute(
        self, commands: Sequence[Command], parents: Sequence[str | None] = ()
    ) -> list[bytes]:
        """On the worker thread: the batch in one transaction; each reply after the commit.
        While tracing, one span for the batch continues the first sender's `traceparent`
        and links the others' (the commands' spans are its children)."""
        bus = self.system.bus
        started = time.perf_counter()
        try:
            with tracing.batch_span(
                "nats.command_batch", parents, {"tally.commands": len(commands)}
            ):
                outcomes = [edge.outcome_reply(o) for o in bus.handle_many(commands)]
        except STORE_DOWN:
            raise
        except Exception:
            # a bug in one handler must not fail the others: run them one by one
            log.exception("group commit failed; running the batch one by one")
            outcomes = [self._one(command) for command in commands]
        finally:
            self.store_seconds += time.perf_counter() - started
        # (the bus's on_commit listeners have woken in-process delivery and the relay)
        return [encode(reply) for reply in outcomes]

    def _one(self, command: Command) -> dict[str, Any]:
        try:
            return self.system.bus.handle(command).as_reply()
        except DomainError as error:
            return edge.refused(error)
        except STORE_DOWN as error:
            return unavailable(f"the event store is unavailable: {error}")
        except Exception:
            log.exception("command failed", command=command.NAME)
            return INTERNAL_ERROR

    # --- queries ---

    async def _on_query(self, message: Any) -> None:
        msg: Msg = message.raw_message
        task = asyncio.create_task(self._answer_query(msg))
        self._query_tasks.add(task)
        task.add_done_callback(self._query_tasks.discard)

    async def _answer_query(self, msg: Msg) -> None:
        async with self._query_slots:
            reply = await self._query_reply(msg)
        await self._respond(msg, reply)

    async def _query_reply(self, msg: Msg) -> bytes:
        try:
            app_id, name = parse_subject(msg.subject)
            depth = self.system.settings.max_json_depth
            body = with_subject_app(parse_body(msg.data, name, depth), app_id, name)
            params = query_params(name, body)
        except Refused as bad:
            return encode(bad.reply())
        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(self._query_threads, self._run_query, name, params)
        try:
            return await asyncio.wait_for(running, self.store_timeout)
        except TimeoutError:
            return encode(
                unavailable(f"the read models did not answer within {self.store_timeout:g}s")
            )
        except Exception:
            log.exception("query failed", query=name)
            return encode(INTERNAL_ERROR)

    def _run_query(self, name: str, params: dict[str, Any]) -> bytes:
        try:
            result = self.system.query(name, **params)
            return encode({"ok": True, "result": result})
        except DomainError as error:
            return encode(edge.refused(error))
        except STORE_DOWN as error:
            return encode(unavailable(f"the read models are unavailable: {error}"))

    # --- replies ---

    async def _respond(self, msg: Msg, data: bytes) -> None:
        if not msg.reply:
            return  # published without a reply subject: nobody is waiting
        try:
            await msg.respond(data)
        except Exception as error:  # the requester's connection is gone, or ours is
            log.warning("could not send a reply", subject=msg.subject, error=repr(error))


def _consume_result(future: asyncio.Future[Any]) -> None:
    """Retrieve a timed-out batch's late outcome (so asyncio does not warn) and log it."""
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        log.warning("a timed-out batch ended with an error", error=repr(error))
    else:
        log.info("a timed-out batch finished late; its commands may have committed")


async def serve_command_bus(
    system: System,
    nats_url: str,
    stop_event: asyncio.Event,
    *,
    ready: Callable[[CommandBusServer], None] | None = None,
    **options: Any,
) -> None:
    """Serve the command and query bus until `stop_event` is set, then stop gracefully.
    `options` go to CommandBusServer (prefix, max_batch, linger, store_timeout, ...)."""
    server = CommandBusServer(system, nats_url, **options)
    await server.start()
    try:
        if ready is not None:
            ready(server)
        await stop_event.wait()
    finally:
        await server.stop()
