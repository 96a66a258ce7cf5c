"""The NATS command and query bus against a real NATS server and real PostgreSQL, driven by a
plain nats-py client: reply shapes, duplicates, validation, group commit under contention on one
quota, queries, isolation between apps, R2 (every command delivered three times), a store
outage, and a graceful stop.

Each test uses a subject prefix of its own (`t<hex>.cmd.<app_id>.<name>`), so tests running at
the same time against the same NATS server never answer each other's requests."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import nats
import orjson
import pytest
from nats.aio.client import Client as NatsClient

from adapters.bootstrap import System, bootstrap
from adapters.nats.command_bus import CommandBusServer, serve_command_bus
from adapters.settings import Settings
from domain.clock import SettableClock
from domain.quota import quota_id
from tests.conftest import T0
from tests.integration.nats_support import NATS_URL, free_port, require_nats

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.timeout(180)]

PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 1000, "currency": "USD"},
    "features": [{"key": "api", "kind": "metered", "limit": 20}],
}


def open_system(url: str, schema: str) -> System:
    return bootstrap(
        Settings(database_url=url), SettableClock(T0), schema=schema, deliver_in_process=False
    )


@pytest.fixture
def system(pg_url: str, pg_schema: str) -> Iterator[System]:
    require_nats()
    built = open_system(pg_url, pg_schema)
    try:
        yield built
    finally:
        built.close()


class BusClient:
    """A plain nats-py client of the bus, on one test's subject prefix."""

    def __init__(self, nc: NatsClient, prefix: str) -> None:
        self.nc, self.prefix = nc, prefix

    async def raw(self, subject: str, data: bytes, timeout: float = 10) -> dict[str, Any]:
        reply = await self.nc.request(f"{self.prefix}.{subject}", data, timeout=timeout)
        decoded: dict[str, Any] = orjson.loads(reply.data)
        return decoded

    async def cmd(self, app: str, name: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return await self.raw(f"cmd.{app}.{name}", orjson.dumps(body), **kw)

    async def query(self, app: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.raw(f"query.{app}.{name}", orjson.dumps(body))


@contextlib.asynccontextmanager
async def running_bus(
    *systems: System, **options: Any
) -> AsyncIterator[tuple[BusClient, list[CommandBusServer]]]:
    """One bus replica per system (sharing a queue group), and a client."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    servers = [CommandBusServer(s, NATS_URL, prefix=prefix, **options) for s in systems]
    for server in servers:
        await server.start()
    nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=1)
    try:
        yield BusClient(nc, prefix), servers
    finally:
        await nc.close()
        for server in servers:
            await server.stop()


def ok_result(reply: dict[str, Any]) -> Any:
    assert reply["ok"] is True, reply
    assert set(reply) <= {"ok", "result", "duplicate", "position"}, reply
    return reply["result"]


def error_of(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["ok"] is False, reply
    assert set(reply) == {"ok", "error"}, reply
    error: dict[str, Any] = reply["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    return error


def fields_named(error: dict[str, Any]) -> set[str]:
    return {d.get("field") for d in error["details"]}


def event_count(system: System) -> int:
    return system.ledger.recorder.max_notification_id() or 0


# --- the surface ----------------------------------------------------------------------------


def test_commands_answer_in_the_surface_shape(system: System) -> None:
    async def scenario() -> None:
        async with running_bus(system) as (bus, _):
            plan = ok_result(await bus.cmd("acme", "define_plan", PLAN))
            assert plan["plan_key"] == "pro" and plan["version"] == 1
            started = ok_result(
                await bus.cmd("acme", "start_subscription", {"tenant_id": "t1", "plan_key": "pro"})
            )
            assert started["status"] == "active" and started["tenant_id"] == "t1"
            used = ok_result(
                await bus.cmd(
                    "acme",
                    "consume_quota",
                    {"tenant_id": "t1", "feature_key": "api", "idempotency_key": "k1"},
                )
            )
            assert used["allowed"] is True and used["used"] == 1 and used["remaining"] == 19
            # the body's app_id may repeat the subject's
            again = await bus.cmd(
                "acme",
                "consume_quota",
                {
                    "app_id": "acme",
                    "tenant_id": "t1",
                    "feature_key": "api",
                    "idempotency_key": "k2",
                },
            )
            assert ok_result(again)["used"] == 2
            assert "duplicate" not in again

    asyncio.run(scenario())
    assert system.ledger.get(quota_id("acme", "t1", "api")).state.used == 2


def test_the_same_command_id_twice_runs_once_and_answers_duplicate(system: System) -> None:
    async def scenario() -> None:
        async with running_bus(system) as (bus, _):
            ok_result(await bus.cmd("acme", "define_plan", PLAN))
            body = {"tenant_id": "t1", "plan_key": "pro", "command_id": "start-t1"}
            first = await bus.cmd("acme", "start_subscription", body)
            events = event_count(system)
            second = await bus.cmd("acme", "start_subscription", body)
            assert "duplicate" not in first
            replay = {"ok": True, "result": first["result"], "duplicate": True}
            assert second == {**replay, "position": second["position"]}
            assert second["position"] >= first["position"] > 0  # read your writes
            assert event_count(system) == events  # nothing recorded the second time
            # the same command_id for a different command is refused, naming command_id
            other = {**body, "tenant_id": "t2"}
            error = error_of(await bus.cmd("acme", "start_subscription", other))
            assert error["code"] == "command_id_reused"
            assert "command_id" in fields_named(error)

    asyncio.run(scenario())


def test_bad_requests_are_answered_at_once_naming_the_field(system: System) -> None:
    async def scenario() -> None:
        async with running_bus(system) as (bus, servers):
            missing = error_of(await bus.cmd("acme", "start_subscription", {"plan_key": "pro"}))
            assert missing["code"] == "validation_error"
            assert "tenant_id" in fields_named(missing) and "tenant_id" in missing["message"]

            bad_value = error_of(
                await bus.cmd(
                    "acme",
                    "consume_quota",
                    {"tenant_id": "t1", "feature_key": "api", "idempotency_key": "k", "amount": 0},
                )
            )
            assert bad_value["code"] == "validation_error"
            assert fields_named(bad_value) == {"amount"}

            extra = error_of(await bus.cmd("acme", "define_plan", {**PLAN, "colour": "blue"}))
            assert extra["code"] == "validation_error" and "colour" in fields_named(extra)

            other_app = error_of(
                await bus.cmd(
                    "acme",
                    "start_subscription",
                    {"app_id": "globex", "tenant_id": "t1", "plan_key": "pro"},
                )
            )
            assert other_app["code"] == "validation_error"
            assert fields_named(other_app) == {"app_id"} and "app_id" in other_app["message"]

            not_json = error_of(await bus.raw("cmd.acme.start_subscription", b"{not json"))
            assert not_json["code"] == "invalid_json"

            not_object = error_of(await bus.raw("cmd.acme.start_subscription", b"[1, 2]"))
            assert not_object["code"] == "validation_error"
            assert fields_named(not_object) == {"body"}

            unknown = error_of(await bus.cmd("acme", "launch_rocket", {}))
            assert unknown["code"] == "unknown_command"

            bad_app = error_of(await bus.cmd("ACME", "define_plan", PLAN))
            assert bad_app["code"] == "validation_error" and "app_id" in fields_named(bad_app)
            assert servers[0].batched_commands == 0  # none of them reached the store

    asyncio.run(scenario())
    assert event_count(system) == 0

    def refused(command: str, outcome: str) -> float:
        return system.metrics.value(
            "tally_commands_total", {"command": command, "outcome": outcome}
        )

    assert refused("start_subscription", "validation_error") == 3  # counted as HTTP counts
    assert refused("start_subscription", "invalid_json") == 1
    assert refused("consume_quota", "validation_error") == 1
    assert refused("launch_rocket", "unknown_command") == 1


def test_an_invalid_transition_answers_its_code(system: System) -> None:
    async def scenario() -> None:
        async with running_bus(system) as (bus, _):
            ok_result(await bus.cmd("acme", "define_plan", PLAN))
            sub = ok_result(
                await bus.cmd("acme", "start_subscription", {"tenant_id": "t1", "plan_key": "pro"})
            )
            cancel = {"subscription_id": sub["subscription_id"]}
            assert ok_result(await bus.cmd("acme", "cancel_subscription", cancel))["status"] == (
                "canceled"
            )
            error = error_of(await bus.cmd("acme", "cancel_subscription", cancel))
            assert error["code"] == "invalid_transition"
            again = error_of(
                await bus.cmd("acme", "define_plan", PLAN)  # the plan exists already
            )
            assert again["code"] == "already_exists" and "plan_key" in fields_named(again)

    asyncio.run(scenario())


def test_another_apps_subscription_answers_not_found(system: System) -> None:
    async def scenario() -> None:
        async with running_bus(system) as (bus, _):
            ok_result(await bus.cmd("acme", "define_plan", PLAN))
            sub = ok_result(
                await bus.cmd("acme", "start_subscription", {"tenant_id": "t1", "plan_key": "pro"})
            )
            ours = {"subscription_id": sub["subscription_id"]}
            for name in ("cancel_subscription", "pause_subscription"):
                error = error_of(await bus.cmd("globex", name, ours))
                assert error["code"] == "not_found"
                assert "subscription_id" in fields_named(error)
                assert "acme" not in orjson.dumps(error).decode()
            # globex's own plan of the same key is not acme's either
            error = error_of(
                await bus.cmd(
                    "globex", "start_subscription", {"tenant_id": "t1", "plan_key": "pro"}
                )
            )
            assert error["code"] == "not_found" and "plan_key" in fields_named(error)

    asyncio.run(scenario())
    subscription = system.ledger.get(uuid.UUID(str(_only_subscription(system))))
    assert subscription.state.status == "active"


def _only_subscription(system: System) -> str:
    from domain.subscription import TenantSlot, tenant_slot_id

    slot = system.ledger.get(tenant_slot_id("acme", "t1"))
    assert isinstance(slot, TenantSlot)
    return str(slot.state.subscription_id)


# --- group commit ----------------------------------------------------------------------------


def test_200_concurrent_consumes_on_a_hard_quota_of_50_allow_exactly_50(system: System) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with running_bus(system) as (bus, servers):
            configured = await bus.cmd(
                "acme",
                "configure_quota",
                {"tenant_id": "t1", "feature_key": "api", "limit": 50, "enforcement": "hard"},
            )
            assert ok_result(configured)["limit"] == 50
            replies = await asyncio.gather(
                *(
                    bus.cmd(
                        "acme",
                        "consume_quota",
                        {"tenant_id": "t1", "feature_key": "api", "idempotency_key": f"k{i}"},
                    )
                    for i in range(200)
                )
            )
            # group commit: far fewer transactions than commands
            assert servers[0].batches < 150, servers[0].batches
            return replies

    replies = asyncio.run(scenario())
    results = [ok_result(r) for r in replies]  # no errors at all
    assert sum(r["allowed"] for r in results) == 50
    refused = [r for r in results if not r["allowed"]]
    assert len(refused) == 150
    assert {r["reason"] for r in refused} == {"hard_limit_exceeded"}
    assert sorted(r["used"] for r in results if r["allowed"]) == list(range(1, 51))
    assert system.ledger.get(quota_id("acme", "t1", "api")).state.used == 50


# --- queries ---------------------------------------------------------------------------------


def test_queries_over_the_bus(system: System) -> None:
    async def scenario() -> None:
        async with running_bus(system) as (bus, _):
            ok_result(await bus.cmd("acme", "define_plan", PLAN))
            ok_result(
                await bus.cmd("acme", "start_subscription", {"tenant_id": "t1", "plan_key": "pro"})
            )
            for i in range(3):
                ok_result(
                    await bus.cmd(
                        "acme",
                        "consume_quota",
                        {"tenant_id": "t1", "feature_key": "api", "idempotency_key": f"k{i}"},
                    )
                )
            await asyncio.to_thread(system.sync)
            check = {"tenant_id": "t1", "feature_key": "api"}
            answer = ok_result(await bus.query("acme", "entitlement", check))
            assert answer["allowed"] is True and answer["used"] == 3
            assert ok_result(await bus.query("globex", "entitlement", check))["allowed"] is False
            current = ok_result(
                await bus.query("acme", "usage_current_period", {"tenant_id": "t1"})
            )
            assert [(row["feature"], row["quantity"]) for row in current] == [("api", 3)]
            # another app sees nothing of acme's
            assert (
                ok_result(await bus.query("globex", "usage_current_period", {"tenant_id": "t1"}))
                == []
            )

            unknown_param = error_of(
                await bus.query("acme", "usage_current_period", {"tenant_id": "t1", "colour": 1})
            )
            assert unknown_param["code"] == "validation_error"
            assert fields_named(unknown_param) == {"colour"}
            missing = error_of(await bus.query("acme", "usage_current_period", {}))
            assert missing["code"] == "validation_error" and fields_named(missing) == {"tenant_id"}
            other_app = error_of(
                await bus.query("acme", "usage_current_period", {"tenant_id": "t1", "app_id": "x"})
            )
            assert other_app["code"] == "validation_error" and fields_named(other_app) == {"app_id"}
            assert error_of(await bus.query("acme", "no_such_query", {}))["code"] == (
                "unknown_query"
            )
            assert error_of(await bus.raw("query.acme.usage", b"nope"))["code"] == "invalid_json"

    asyncio.run(scenario())


# --- R2: every command delivered three times ----------------------------------------------------


def test_r2_every_command_delivered_three_times_totals_exact(
    system: System, pg_url: str, pg_schema: str
) -> None:
    """Two replicas (one queue group, each with its own event store connection) and every
    command sent three times with the same command_id, in random order and at random moments:
    each command runs once, its other deliveries answer duplicate with the first result, and
    the totals are exact."""
    replica = open_system(pg_url, pg_schema)
    rng = random.Random(2)
    tenants = [f"t{n}" for n in range(8)]
    consumes_per_tenant = 30  # the plan allows 20 per tenant

    async def deliver_three_times(
        bus: BusClient, commands: Sequence[tuple[str, dict[str, Any]]]
    ) -> dict[str, list[dict[str, Any]]]:
        deliveries = [(name, body) for name, body in commands for _ in range(3)]
        rng.shuffle(deliveries)

        async def send(name: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            await asyncio.sleep(rng.uniform(0, 0.05))
            return body["command_id"], await bus.cmd("acme", name, body)

        replies: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for command_id, reply in await asyncio.gather(*(send(n, b) for n, b in deliveries)):
            replies[command_id].append(reply)
        return replies

    def check_once_each(replies: dict[str, list[dict[str, Any]]]) -> None:
        for command_id, three in replies.items():
            assert len(three) == 3, command_id
            originals = [r for r in three if not r.get("duplicate")]
            assert len(originals) == 1, (command_id, three)
            for reply in three:
                assert reply["ok"] is True, reply
                assert reply["result"] == originals[0]["result"], (command_id, three)

    async def scenario() -> list[int]:
        # a generous store timeout: this checks exactly-once under redelivery, not the
        # answer while the store is slow (a loaded CI machine can take seconds per batch)
        async with running_bus(system, replica, store_timeout=60.0) as (bus, servers):
            check_once_each(
                await deliver_three_times(bus, [("define_plan", {**PLAN, "command_id": "plan"})])
            )
            starts = [
                ("start_subscription", {"tenant_id": t, "plan_key": "pro", "command_id": f"s-{t}"})
                for t in tenants
            ]
            check_once_each(await deliver_three_times(bus, starts))
            consumes = [
                (
                    "consume_quota",
                    {
                        "tenant_id": t,
                        "feature_key": "api",
                        "idempotency_key": f"u-{t}-{i}",
                        "command_id": f"c-{t}-{i}",
                    },
                )
                for t in tenants
                for i in range(consumes_per_tenant)
            ]
            replies = await deliver_three_times(bus, consumes)
            check_once_each(replies)
            allowed = Counter(
                body["tenant_id"]
                for _, body in consumes
                if replies[body["command_id"]][0]["result"]["allowed"]
            )
            assert allowed == dict.fromkeys(tenants, 20)
            return [server.batched_commands for server in servers]

    try:
        per_replica = asyncio.run(scenario())
    finally:
        replica.close()
    assert all(n > 0 for n in per_replica), per_replica  # the queue group shared the load
    for tenant in tenants:
        quota = system.ledger.get(quota_id("acme", tenant, "api"))
        assert quota.state.used == 20
        kinds = Counter(
            e.topic.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
            for e in system.ledger.recorder.select_events(quota.id)
        )
        # each delivered command recorded once: 20 consumed, 10 refused
        assert kinds["UsageRecorded"] == 20 and kinds["QuotaExceeded"] == 10, kinds


# --- outages and stopping ------------------------------------------------------------------------


class TcpProxy:
    """A TCP forwarder to PostgreSQL that the test can cut (all connections reset, new ones
    refused) and restore, standing in for the database going away."""

    def __init__(self, target_port: int) -> None:
        self.port, self.target = free_port(), ("127.0.0.1", target_port)
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def test_a_store_outage_answers_unavailable_quickly_and_recovers(
    pg_url: str, pg_schema: str
) -> None:
    require_nats()
    from urllib.parse import urlparse

    parsed = urlparse(pg_url)
    proxy = TcpProxy(parsed.port or 5432)
    proxy.start()
    proxied = parsed._replace(netloc=f"{parsed.username or 'postgres'}@127.0.0.1:{proxy.port}")
    system = open_system(proxied.geturl(), pg_schema)

    async def scenario() -> None:
        async with running_bus(system, store_timeout=1.0) as (bus, _):
            ok_result(await bus.cmd("acme", "define_plan", PLAN))
            ok_result(
                await bus.cmd("acme", "start_subscription", {"tenant_id": "t1", "plan_key": "pro"})
            )
            proxy.cut()
            body = {"tenant_id": "t1", "feature_key": "api", "idempotency_key": "k-outage"}
            started = time.monotonic()
            down = error_of(
                await bus.cmd("acme", "consume_quota", {**body, "command_id": "during"}, timeout=5)
            )
            assert down["code"] == "unavailable"
            assert time.monotonic() - started < 3
            # while the store is away, more commands are answered at once
            started = time.monotonic()
            replies = await asyncio.gather(
                *(
                    bus.cmd(
                        "acme",
                        "consume_quota",
                        {**body, "idempotency_key": f"k{i}"},
                        timeout=5,
                    )
                    for i in range(5)
                )
            )
            assert {error_of(r)["code"] for r in replies} == {"unavailable"}
            assert time.monotonic() - started < 3
            proxy.start()  # the database is back
            deadline = time.monotonic() + 90
            while True:
                reply = await bus.cmd(
                    "acme", "consume_quota", {**body, "command_id": "during"}, timeout=10
                )
                if reply["ok"]:
                    break
                assert error_of(reply)["code"] == "unavailable"
                assert time.monotonic() < deadline, "the bus did not recover"
                await asyncio.sleep(0.5)
            # the command answered "unavailable" ran at most once (retried by its command_id)
            assert ok_result(reply)["used"] == 1

    try:
        asyncio.run(scenario())
    finally:
        system.close()
        proxy.cut()


def test_a_graceful_stop_answers_every_command_it_received(system: System) -> None:
    real = system.bus.handle_many

    def slow_handle_many(commands: Sequence[Any]) -> Any:
        time.sleep(0.05)  # a slow store: most commands are still queued when stop() comes
        return real(commands)

    system.bus.handle_many = slow_handle_many  # type: ignore[method-assign]
    prefix = f"t{uuid.uuid4().hex[:12]}"

    async def scenario() -> tuple[list[dict[str, Any]], int]:
        server = CommandBusServer(system, NATS_URL, prefix=prefix, max_batch=10)
        await server.start()
        nc = await nats.connect(NATS_URL)
        bus = BusClient(nc, prefix)
        try:
            ok_result(
                await bus.cmd("acme", "configure_quota", {"tenant_id": "t1", "feature_key": "api"})
            )
            sending = [
                asyncio.create_task(
                    bus.cmd(
                        "acme",
                        "consume_quota",
                        {"tenant_id": "t1", "feature_key": "api", "idempotency_key": f"k{i}"},
                    )
                )
                for i in range(100)
            ]
            await nc.flush()
            await asyncio.sleep(0.1)  # received by the server, mostly still queued
            queued = server._queue.qsize()
            await server.stop()
            return list(await asyncio.gather(*sending)), queued
        finally:
            await nc.close()

    replies, queued = asyncio.run(scenario())
    assert queued > 10  # stop() came while many commands were waiting
    assert all(ok_result(r)["allowed"] for r in replies)
    assert system.ledger.get(quota_id("acme", "t1", "api")).state.used == 100


def test_a_failing_batch_is_run_one_by_one(system: System) -> None:
    """An unexpected error in the group commit does not fail the batch's other commands."""
    calls = []

    def broken_handle_many(commands: Sequence[Any]) -> Any:
        calls.append(len(commands))
        raise RuntimeError("a bug in the group commit")

    system.bus.handle_many = broken_handle_many  # type: ignore[method-assign]

    async def scenario() -> list[dict[str, Any]]:
        async with running_bus(system) as (bus, _):
            ok_result(await bus.cmd("acme", "define_plan", PLAN))
            return list(
                await asyncio.gather(
                    *(
                        bus.cmd(
                            "acme", "start_subscription", {"tenant_id": f"t{i}", "plan_key": "pro"}
                        )
                        for i in range(10)
                    )
                )
            )

    replies = asyncio.run(scenario())
    assert calls  # the batch path was tried
    assert all(ok_result(r)["status"] == "active" for r in replies)


def test_serve_command_bus_runs_until_the_stop_event(system: System) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"

    async def scenario() -> dict[str, Any]:
        stop = asyncio.Event()
        ready = asyncio.Event()
        serving = asyncio.create_task(
            serve_command_bus(system, NATS_URL, stop, ready=lambda _: ready.set(), prefix=prefix)
        )
        await asyncio.wait_for(ready.wait(), 10)
        nc = await nats.connect(NATS_URL)
        try:
            reply = await BusClient(nc, prefix).cmd("acme", "define_plan", PLAN)
        finally:
            await nc.close()
        stop.set()
        await asyncio.wait_for(serving, 10)
        return reply

    assert ok_result(asyncio.run(scenario()))["plan_key"] == "pro"
