"""The actor rule on the NATS command bus, against a real NATS server and PostgreSQL: the bus
has no API keys, so its actor is `nats:<app_id>` unless the body names one, a body actor can
never claim an API key's identity (`api-key:…`, `key:…`), and `on_behalf_of` is recorded beside
the actor in the events and their published envelopes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest

from adapters.bootstrap import System
from adapters.eventstore.envelopes import iter_envelopes
from domain.base import DomainEvent
from projections.envelope import EventEnvelope
from tests.integration.nats_support import require_nats
from tests.integration.test_nats_command_bus import (
    PLAN,
    error_of,
    event_count,
    ok_result,
    open_system,
    running_bus,
)

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.timeout(120)]


@pytest.fixture
def system(pg_url: str, pg_schema: str) -> Iterator[System]:
    require_nats()
    built = open_system(pg_url, pg_schema)
    try:
        yield built
    finally:
        built.close()


def envelopes_of(system: System, aggregate_id: str) -> list[EventEnvelope]:
    every = [e for batch in iter_envelopes(system.ledger.recorder) for e in batch]
    return [e for e in every if str(e.aggregate_id) == aggregate_id]


def audit(system: System, aggregate_id: str) -> set[tuple[str | None, str | None]]:
    envelopes = envelopes_of(system, aggregate_id)
    assert envelopes, "nothing recorded"
    return {(e.actor, e.on_behalf_of) for e in envelopes}


def send(system: System, name: str, body: dict[str, Any]) -> dict[str, Any]:
    async def scenario() -> dict[str, Any]:
        async with running_bus(system) as (bus, _):
            return await bus.cmd("acme", name, body)

    return asyncio.run(scenario())


def test_without_an_actor_the_bus_records_nats_and_the_app(system: System) -> None:
    plan = ok_result(send(system, "define_plan", PLAN))
    assert audit(system, plan["plan_id"]) == {("nats:acme", None)}


def test_a_named_actor_and_on_behalf_of_are_recorded_side_by_side(system: System) -> None:
    body = {**PLAN, "actor": "crm-sync", "on_behalf_of": "user-42"}
    plan = ok_result(send(system, "define_plan", body))
    assert audit(system, plan["plan_id"]) == {("crm-sync", "user-42")}
    stored = [
        e for e in system.ledger.events.get(UUID(plan["plan_id"])) if isinstance(e, DomainEvent)
    ]
    assert [(e.actor, e.on_behalf_of) for e in stored] == [("crm-sync", "user-42")]


@pytest.mark.parametrize(
    "actor", ["api-key:3f9c0a1b2c3d4e5f", "key:3f9c0a1b2c3d4e5f", "  API-KEY:3f9c0a1b2c3d4e5f"]
)
def test_a_body_actor_cannot_claim_an_api_key(system: System, actor: str) -> None:
    before = event_count(system)
    error = error_of(send(system, "define_plan", {**PLAN, "actor": actor}))
    assert error["code"] == "validation_error"
    assert [(d["field"], d["rule"]) for d in error["details"]] == [("actor", "reserved_actor")]
    assert event_count(system) == before
