"""Read your writes on the server, with projectors that move only when the test says so
(`deliver_in_process=False`: read models catch up on `system.sync()`): a read given a
write's position waits for it, and past the bound answers 503 read_model_behind (which the
client retries, honouring Retry-After)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tally_client import RetryPolicy, Tally, Unavailable

from adapters.bootstrap import System, bootstrap
from adapters.http.app import create_app
from adapters.http.consistency import POSITION_HEADER, WAIT_SECONDS
from adapters.settings import Settings

PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 4900, "currency": "USD"},
    "features": [{"key": "api-calls", "kind": "metered", "limit": 100}],
}


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'events.db'}")
    built = bootstrap(settings, deliver_in_process=False)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def tally(system: System) -> Iterator[Tally]:
    key = system.dispatch("create_api_key", {"app_id": "acme", "scope": "admin"})
    headers = {"Authorization": f"Bearer {key['result']['api_key']}"}
    http = TestClient(create_app(system), headers=headers)
    with Tally(http=http, retry=RetryPolicy(attempts=1)) as client:
        yield client


def used_one(tally: Tally) -> int:
    tally.define_plan(PLAN)
    tally.start_subscription(tenant_id="t-1", plan_key="pro")
    reply = tally.command(
        "consume_quota", tenant_id="t-1", feature_key="api-calls", amount=1, idempotency_key="k1"
    )
    position = reply.position
    assert isinstance(position, int)
    return position


def test_a_read_waits_for_the_position_it_was_given(system: System, tally: Tally) -> None:
    position = used_one(tally)
    later = threading.Timer(0.3, system.sync)  # the projectors catch up a little later
    later.start()
    started = time.monotonic()
    seen = tally.get_entitlement("t-1", "api-calls", min_position=position)
    assert 0.25 < time.monotonic() - started < WAIT_SECONDS
    assert seen["used"] == 1 and seen.position is not None and seen.position >= position


def test_without_a_position_the_read_answers_at_once_from_behind(
    system: System, tally: Tally
) -> None:
    used_one(tally)
    seen = tally.get_entitlement("t-1", "api-calls")
    assert not seen.get("used") and seen.position is None  # the read model had not moved


def test_past_the_bound_the_read_is_refused_with_retry_after(system: System, tally: Tally) -> None:
    position = used_one(tally)
    started = time.monotonic()
    with pytest.raises(Unavailable) as behind:
        tally.get_entitlement("t-1", "api-calls", min_position=position)
    assert time.monotonic() - started >= WAIT_SECONDS
    error = behind.value
    assert error.code == "read_model_behind" and error.status == 503 and error.retry_after == 1
    assert error.field == "min_position" and error.details[0]["min_position"] == position


def test_the_client_retries_a_read_that_was_behind(system: System, tally: Tally) -> None:
    position = used_one(tally)
    tally.retry = RetryPolicy(attempts=3)
    threading.Timer(WAIT_SECONDS + 0.2, system.sync).start()  # after the first refusal
    seen = tally.get_entitlement("t-1", "api-calls", min_position=position)
    assert seen["used"] == 1


def test_writes_carry_the_position_of_their_last_event(system: System, tally: Tally) -> None:
    plan = tally.define_plan(PLAN)
    head = system.ledger.recorder.max_notification_id()
    assert isinstance(head, int) and plan.position == head
    started = tally.start_subscription(tenant_id="t-2", plan_key="pro")
    assert started.position == system.ledger.recorder.max_notification_id()
    assert (started.position or 0) > head
    usage = tally.record_usage(idempotency_key="u-1", tenant_id="t-2", feature_key="api-calls")
    assert usage.position == system.ledger.recorder.max_notification_id()
    reads = tally.list_plans()
    assert reads.position is None  # a read without min_position says nothing of positions
    assert POSITION_HEADER == "Tally-Position"
