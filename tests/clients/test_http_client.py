"""tally-client's HTTP clients against a real `tally serve`: typed calls, read your writes,
idempotent retries and typed errors (the retry rules themselves: test_retries.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from tally_client import (
    AsyncTally,
    Conflict,
    InvalidInput,
    NotFound,
    Reply,
    Tally,
    Unauthorized,
    models,
)

from tests.e2e.conftest import Server

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

APP = "acme"  # this module's app on the session's server

PLAN: dict[str, Any] = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 4900, "currency": "USD"},
    "features": [{"key": "api-calls", "kind": "metered", "limit": 100, "enforcement": "hard"}],
}


@pytest.fixture(scope="module")
def catalog(admin: Tally) -> Reply:
    return admin.define_plan(PLAN)


def test_a_typed_write_answers_its_result_and_position(admin: Tally, catalog: Reply) -> None:
    assert catalog.status_code == 201 and catalog["plan_key"] == "pro"
    assert isinstance(catalog.position, int) and catalog.position > 0
    body = models.StartSubscriptionBody(tenant_id="t-typed", plan_key="pro")
    started = admin.start_subscription(body)
    assert started["tenant_id"] == "t-typed" and started["status"] in {"active", "trialing"}
    assert started.position is not None and started.position > catalog.position
    fetched = admin.get_subscription(started["subscription_id"])
    assert fetched["subscription_id"] == started["subscription_id"]
    assert admin.last_position == started.position


def test_reads_after_writes_see_them_with_min_position(admin: Tally, catalog: Reply) -> None:
    admin.start_subscription(tenant_id="t-ryw", plan_key="pro")
    for n in range(1, 16):  # each read right after its write, through JetStream projectors
        usage = admin.record_usage(
            idempotency_key=f"ryw-{n}", tenant_id="t-ryw", feature_key="api-calls", quantity=1
        )
        assert usage.position is not None
        seen = admin.get_entitlement("t-ryw", "api-calls", min_position=usage.position)
        assert seen["used"] == n, (n, seen)
        assert seen.position is not None and seen.position >= usage.position


def test_read_your_writes_mode_passes_the_last_position(live: Server, catalog: Reply) -> None:
    with Tally(live.base_url, live.key(APP, "admin"), read_your_writes=True) as client:
        client.start_subscription(tenant_id="t-auto", plan_key="pro")
        for n in range(1, 6):
            client.record_usage(
                idempotency_key=f"auto-{n}", tenant_id="t-auto", feature_key="api-calls"
            )
            assert client.get_entitlement("t-auto", "api-calls")["used"] == n


def test_a_position_past_the_log_is_refused_at_once(admin: Tally) -> None:
    with pytest.raises(InvalidInput) as refused:
        admin.list_plans(min_position=10**12)
    assert refused.value.status == 422 and refused.value.field == "min_position"
    assert refused.value.rule == "beyond_head"


def test_a_retried_write_runs_once(admin: Tally, catalog: Reply) -> None:
    key = f"start-{uuid.uuid4().hex}"
    first = admin.start_subscription(tenant_id="t-retry", plan_key="pro", command_id=key)
    again = admin.start_subscription(tenant_id="t-retry", plan_key="pro", command_id=key)
    assert not first.replayed and again.replayed
    assert dict(again) == dict(first) and again.position is not None


def test_the_generic_command_keeps_one_command_id(admin: Tally, catalog: Reply) -> None:
    command_id = f"consume-{uuid.uuid4().hex}"
    body = {
        "tenant_id": "t-retry",
        "feature_key": "api-calls",
        "amount": 1,
        "idempotency_key": command_id,
        "command_id": command_id,
    }
    first = admin.command("consume_quota", body)
    again = admin.command("consume_quota", body)
    assert first["allowed"] is True and not first.replayed
    assert again.replayed and dict(again) == dict(first)
    assert again.position is not None and first.position is not None


def test_refusals_are_typed_exceptions(live: Server, admin: Tally, catalog: Reply) -> None:
    with pytest.raises(NotFound) as missing:
        admin.get_plan("no-such-plan")
    assert missing.value.code == "not_found" and missing.value.status == 404
    with pytest.raises(Conflict) as twice:
        admin.define_plan(PLAN)
    assert twice.value.code == "already_exists" and twice.value.field == "plan_key"
    with pytest.raises(NotFound) as unknown:
        admin.start_subscription(tenant_id="t-x", plan_key="no-such-plan")
    assert unknown.value.field == "plan_key"
    with pytest.raises(Unauthorized):
        Tally(live.base_url, "tk_not_a_key").list_plans()


def test_bad_input_is_refused_naming_the_field(admin: Tally) -> None:
    with pytest.raises(InvalidInput) as local:  # checked against the model before sending
        admin.start_subscription(tenant_id="bad tenant", plan_key="pro")
    assert local.value.code == "validation_error" and local.value.field == "tenant_id"
    assert local.value.status is None and local.value.rule == "string_pattern_mismatch"
    with pytest.raises(InvalidInput) as server:  # refused by the server's own rules
        admin.run_billing(until="2000-01-01T00:00:00Z")
    assert server.value.status == 422 and server.value.field == "until"


def test_the_async_client_does_the_same(live: Server, catalog: Reply) -> None:
    async def scenario() -> None:
        async with AsyncTally(live.base_url, live.key(APP, "write")) as client:
            started = await client.start_subscription(tenant_id="t-async", plan_key="pro")
            used = await client.record_usage(
                idempotency_key="async-1", tenant_id="t-async", feature_key="api-calls"
            )
            seen = await client.get_entitlement("t-async", "api-calls", min_position=used.position)
            assert started.status_code == 201 and seen["used"] == 1
            with pytest.raises(NotFound):
                await client.get_subscription(str(uuid.uuid4()))

    asyncio.run(scenario())


def test_binary_and_text_answers(admin: Tally) -> None:
    assert "tally" in admin.metrics().lower() or admin.metrics().startswith("#")
    assert admin.live()["status"] in {"ok", "live", "alive"}
    csv = admin.get_usage_csv("t-ryw", granularity="day")
    assert csv.splitlines()[0].startswith(("tenant", "feature", "app"))
    usage = admin.get_usage("t-ryw", granularity="day")
    assert usage["usage"][0]["quantity"] == 15 and usage["usage"][0]["feature"] == "api-calls"
