"""Observability on the real stack (PostgreSQL and NATS JetStream): the correlation id of an
HTTP request reaches the recorded event and its NATS message (body and header), the trace
goes on from the request through the relay to the JetStream projector (the message's
traceparent header), and the relay's figures show on /metrics."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adapters.bootstrap import System
from adapters.http.app import create_app
from adapters.nats.stream import StreamSettings
from adapters.nats.workers import build_projector_worker, build_relay
from tests.integration.nats_support import (  # noqa: F401  (fixtures)
    CountingProjector,
    nats_system_fixture,
    stream_fixture,
    stream_messages,
    wait_until,
)
from tests.tracing_support import named, spans_fixture  # noqa: F401  (fixture)
from tests.unit.http.support import Api

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.timeout(120)]

PLAN = {"plan_key": "pro", "name": "Pro", "base_price": {"amount": 900, "currency": "USD"}}


@pytest.fixture
def api(nats_system: System) -> Api:
    """API keys made before tracing starts (their events carry no trace context)."""
    return Api(TestClient(create_app(nats_system)), nats_system, "acme")


def metric(api: Api, line_start: str) -> float:
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {line_start} on /metrics")


def test_correlation_and_trace_go_from_the_request_over_nats_to_the_projector(
    nats_system: System, stream: StreamSettings, api: Api, spans: InMemorySpanExporter
) -> None:
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = {"X-Request-Id": "order-7781", "traceparent": caller}
    assert api.call("POST", "/v1/plans", json=PLAN, headers=headers).status_code == 201
    head = nats_system.ledger.recorder.max_notification_id() or 0
    assert metric(api, "tally_relay_lag_events") == head  # nothing published yet
    projector = CountingProjector()

    async def scenario() -> None:
        relay = build_relay(nats_system)
        worker = build_projector_worker(nats_system, projector.NAME, projector=projector)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(worker.run(stop))]
        try:

            async def projected() -> bool:
                position = await asyncio.to_thread(nats_system.views.position, projector.NAME)
                return position == head

            await wait_until(projected, 20, "the projector to apply every event")
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 20)

    asyncio.run(scenario())
    messages = asyncio.run(stream_messages(stream))
    plan = next(m for m in messages if m.subject.endswith(".plan.PlanDefined"))
    body = orjson.loads(plan.data or b"")
    assert body["correlation_id"] == "order-7781" and "trace_parent" not in body
    assert plan.headers is not None and plan.headers["Tally-Correlation-Id"] == "order-7781"
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert plan.headers["traceparent"].split("-")[1] == trace_id  # the caller's trace
    ours = [s for s in spans.get_finished_spans() if s.context.trace_id == int(trace_id, 16)]
    names = {s.name for s in ours}
    assert {"POST /v1/plans", "command define_plan", "eventstore.save"} <= names
    assert {"relay.publish", "projector.batch"} <= names
    (batch,) = [s for s in ours if s.name == "projector.batch"]
    assert batch.attributes is not None and batch.attributes["tally.projector"] == "test_counts"
    assert batch.parent is not None
    assert f"{batch.parent.span_id:016x}" == plan.headers["traceparent"].split("-")[2]
    assert metric(api, "tally_relay_lag_events") == 0
    assert metric(api, "tally_relay_published_total") == head


def test_a_command_over_the_nats_bus_takes_its_correlation_id_from_x_request_id(
    nats_system: System,
) -> None:
    import uuid

    import nats

    from adapters.eventstore.envelopes import iter_envelopes
    from adapters.nats.command_bus import CommandBusServer
    from tests.integration.nats_support import NATS_URL

    prefix = f"t{uuid.uuid4().hex[:12]}"

    async def scenario() -> list[dict[str, object]]:
        server = CommandBusServer(nats_system, NATS_URL, prefix=prefix)
        await server.start()
        nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=1)
        try:
            replies = []
            for key, headers in (
                ("pro", {"X-Request-Id": "bus-req-1"}),
                ("team", None),
                ("solo", {"X-Request-Id": "not a token!"}),
            ):
                body = orjson.dumps(PLAN | {"plan_key": key, "command_id": f"cmd-{key}"})
                reply = await nc.request(
                    f"{prefix}.cmd.acme.define_plan", body, 10, headers=headers
                )
                replies.append(orjson.loads(reply.data))
            return replies
        finally:
            await nc.close()
            await server.stop()

    assert all(reply["ok"] for reply in asyncio.run(scenario()))
    events = [e for batch in iter_envelopes(nats_system.ledger.recorder) for e in batch]
    by_key = {
        e.data["terms"]["plan_key"]: e.correlation_id for e in events if e.type == "PlanDefined"
    }
    assert by_key == {"pro": "bus-req-1", "team": "cmd-team", "solo": "cmd-solo"}


def test_a_command_over_the_nats_bus_continues_the_senders_trace(
    nats_system: System, spans: InMemorySpanExporter
) -> None:
    import uuid

    import nats

    from adapters.nats.command_bus import CommandBusServer
    from tests.integration.nats_support import NATS_URL

    prefix = f"t{uuid.uuid4().hex[:12]}"
    trace_id = uuid.uuid4().hex
    sender = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"

    async def scenario() -> dict[str, object]:
        server = CommandBusServer(nats_system, NATS_URL, prefix=prefix)
        await server.start()
        nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=1)
        try:
            body = orjson.dumps(PLAN | {"plan_key": "traced", "command_id": "cmd-traced"})
            reply = await nc.request(
                f"{prefix}.cmd.acme.define_plan", body, 10, headers={"traceparent": sender}
            )
            return dict(orjson.loads(reply.data))
        finally:
            await nc.close()
            await server.stop()

    assert asyncio.run(scenario())["ok"] is True
    [batch] = named(spans, "nats.command_batch")
    assert format(batch.context.trace_id, "032x") == trace_id  # the sender's trace goes on
    children = [s for s in spans.get_finished_spans() if s.parent is not None]
    assert any(s.parent.span_id == batch.context.span_id for s in children)  # commands under it
