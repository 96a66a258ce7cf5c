"""TallyBus against a real `tally worker command-bus` (beside a `tally serve` that feeds the
read models): commands with a command_id kept across retries, a retry after a lost reply
answered with the first result, queries, typed refusals."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeout
from tally_client import InvalidInput, NotFound, Reply, RetryPolicy, TallyBus

from tests.clients.conftest import CommandBus
from tests.e2e.conftest import NATS_URL, Server, eventually

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

APP = "bus"  # this module's app on the session's server

PLAN: dict[str, Any] = {
    "plan_key": "basic",
    "name": "Basic",
    "base_price": {"amount": 900, "currency": "USD"},
    "features": [{"key": "seats", "kind": "metered", "limit": 10}],
}


class LosesFirstReply:
    """A NATS connection whose first reply is lost after the server ran the command (the
    request went through; the caller saw a timeout)."""

    def __init__(self, connection: Any) -> None:
        self.connection, self.bodies = connection, []  # type: ignore[var-annotated]
        self.is_closed = False

    async def request(self, subject: str, data: bytes, timeout: float) -> Any:
        self.bodies.append(json.loads(data))
        reply = await self.connection.request(subject, data, timeout=timeout)
        if len(self.bodies) == 1:
            raise NatsTimeout
        return reply


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def bus_for(live: Server, command_bus: CommandBus, **options: Any) -> TallyBus:
    return TallyBus(NATS_URL, live.app_id(APP), prefix=command_bus.prefix, **options)


def test_commands_and_queries(live: Server, command_bus: CommandBus) -> None:
    async def scenario() -> tuple[Reply, Any]:
        async with bus_for(live, command_bus) as bus:
            await bus.send("define_plan", PLAN)
            started = await bus.send("start_subscription", tenant_id="b-1", plan_key="basic")
            await bus.send(
                "consume_quota",
                {"tenant_id": "b-1", "feature_key": "seats", "amount": 3, "idempotency_key": "s1"},
            )
            return started, None

    started, _ = run(scenario())
    assert started["tenant_id"] == "b-1" and started.position is not None
    assert not started.replayed

    async def entitlement() -> Reply:
        async with bus_for(live, command_bus) as bus:
            answer = await bus.query("entitlement", tenant_id="b-1", feature_key="seats")
            assert isinstance(answer, Reply)
            return answer

    def three_used() -> None:
        assert run(entitlement())["used"] == 3

    eventually(three_used)


def test_a_retry_after_a_lost_reply_gets_the_first_result(
    live: Server, command_bus: CommandBus
) -> None:
    async def scenario() -> tuple[LosesFirstReply, Reply]:
        connection = await nats.connect(NATS_URL)
        flaky = LosesFirstReply(connection)
        try:
            bus = TallyBus(
                NATS_URL,
                live.app_id(APP),
                prefix=command_bus.prefix,
                connection=flaky,  # type: ignore[arg-type]
                retry=RetryPolicy(attempts=3, backoff=0.05),
            )
            await bus.send("define_plan", {**PLAN, "plan_key": "lost"})  # its reply is lost
            flaky.bodies = []  # and so is the next one's
            return flaky, await bus.send("start_subscription", tenant_id="b-2", plan_key="lost")
        finally:
            await connection.close()

    flaky, started = run(scenario())
    ids = {body["command_id"] for body in flaky.bodies}
    assert len(flaky.bodies) == 2 and len(ids) == 1  # the retry kept the command_id
    assert started.replayed and started["tenant_id"] == "b-2"  # the first run's result


def test_the_same_command_id_runs_once(live: Server, command_bus: CommandBus) -> None:
    async def scenario() -> tuple[Reply, Reply]:
        async with bus_for(live, command_bus) as bus:
            await bus.send("define_plan", {**PLAN, "plan_key": "once"})
            command_id = f"start-{uuid.uuid4().hex}"
            body = {"tenant_id": "b-3", "plan_key": "once"}
            first = await bus.send("start_subscription", body, command_id=command_id)
            again = await bus.send("start_subscription", body, command_id=command_id)
            return first, again

    first, again = run(scenario())
    assert not first.replayed and again.replayed and dict(again) == dict(first)
    assert again.position is not None and first.position is not None


def test_refusals_are_typed(live: Server, command_bus: CommandBus) -> None:
    async def scenario() -> None:
        async with bus_for(live, command_bus) as bus:
            with pytest.raises(NotFound) as unknown:
                await bus.send("fly_to_the_moon", {})
            assert unknown.value.code == "unknown_command"
            with pytest.raises(InvalidInput) as invalid:
                await bus.send("consume_quota", {"tenant_id": "b-1"})
            assert invalid.value.code == "validation_error"
            assert invalid.value.field in {"feature_key", "idempotency_key"}
            with pytest.raises(NotFound) as no_query:
                await bus.query("no_such_query")
            assert no_query.value.code == "unknown_query"

    run(scenario())


def test_app_id_is_required() -> None:
    with pytest.raises(ValueError, match="app_id"):
        TallyBus(NATS_URL)
