"""A manual grant's `limit` on a metered feature governs the usage ingest and consume_quota
as it governs the check (issue 13 leftover): it replaces the plan's limit, the quota's
allowance grants still add to it, a grant without a limit keeps the plan's, and revoking it
brings the plan's back. The ingest's answers, its refusals and the check agree."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.bootstrap import System
from commands.usage.record_usage import UsageEventIn
from domain.quota import QuotaExceeded, quota_id
from tests.factories import embedded_system, ok

API = {"key": "api", "kind": "metered", "limit": 100, "enforcement": "hard"}


@pytest.fixture
def system() -> Iterator[System]:
    built = embedded_system()
    do(
        built,
        "define_plan",
        plan_key="basic",
        name="Basic",
        base_price={"amount": 1000, "currency": "USD"},
        features=[API],
    )
    do(built, "start_subscription", tenant_id="t1", plan_key="basic")
    yield built
    built.close()


def do(system: System, command: str, **fields: Any) -> dict[str, Any]:
    return ok(system.dispatch(command, {"app_id": "acme", **fields}))


def grant(system: System, limit: int | None) -> None:
    do(system, "grant_feature", tenant_id="t1", feature_key="api", reason="support", limit=limit)


def consume(system: System, amount: int, key: str) -> dict[str, Any]:
    return do(
        system,
        "consume_quota",
        tenant_id="t1",
        feature_key="api",
        amount=amount,
        idempotency_key=key,
    )


def ingest(system: System, *quantities: int, prefix: str = "e") -> dict[str, Any]:
    events = [
        UsageEventIn(f"{prefix}{i}", "t1", "api", quantity) for i, quantity in enumerate(quantities)
    ]
    return system.usage.record("acme", events)


def check(system: System) -> dict[str, Any]:
    system.sync()
    answer: dict[str, Any] = system.query(
        "entitlement", app_id="acme", tenant_id="t1", feature_key="api"
    )
    return answer


def exceeded(system: System) -> int:
    quota = quota_id("acme", "t1", "api")
    return sum(isinstance(e, QuotaExceeded) for e in system.ledger.events.get(quota))


def test_consume_quota_counts_up_to_a_higher_grant_limit(system: System) -> None:
    grant(system, 1000)
    outcome = consume(system, 600, "a")
    assert (outcome["allowed"], outcome["limit"], outcome["remaining"]) == (True, 1000, 400)
    refused = consume(system, 401, "b")
    assert (refused["allowed"], refused["reason"]) == (False, "hard_limit_exceeded")
    assert check(system)["used"] == 600


def test_consume_quota_is_refused_at_a_lower_grant_limit(system: System) -> None:
    grant(system, 10)
    assert consume(system, 10, "a")["allowed"]
    refused = consume(system, 1, "b")
    assert (refused["allowed"], refused["limit"], refused["remaining"]) == (False, 10, 0)
    answer = check(system)
    assert (answer["allowed"], answer["reason"], answer["limit"]) == (
        False,
        "hard_limit_reached",
        10,
    )


def test_the_ingest_counts_a_batch_up_to_a_higher_grant_limit(system: System) -> None:
    grant(system, 1000)
    answer = ingest(system, *[100] * 9)
    assert (answer["accepted"], answer["refused"]) == (9, 0)
    assert answer["results"][-1]["limit"] == 1000 and answer["results"][-1]["used"] == 900
    assert check(system)["remaining"] == 100


def test_the_ingest_refuses_past_a_lower_grant_limit_once_per_key(system: System) -> None:
    grant(system, 10)
    answer = ingest(system, *[1] * 15)
    assert (answer["accepted"], answer["refused"]) == (10, 5)
    refused = [r for r in answer["results"] if r["status"] == "refused"]
    assert {r["reason"] for r in refused} == {"hard_limit_exceeded"}
    assert {r["limit"] for r in answer["results"]} == {10}
    again = ingest(system, *[1] * 15)  # the same keys: counted ones are duplicates
    assert (again["duplicates"], again["refused"]) == (10, 5)
    assert exceeded(system) == 5  # at most one QuotaExceeded per refused key
    assert check(system)["used"] == 10


def test_allowances_add_to_the_grant_limit_in_the_ingest(system: System) -> None:
    grant(system, 10)
    do(system, "grant_allowance", tenant_id="t1", feature_key="api", amount=5, reason="promo")
    answer = ingest(system, 15, 1)
    assert [r["status"] for r in answer["results"]] == ["accepted", "refused"]
    assert answer["results"][0]["limit"] == 15 == check(system)["limit"]


def test_a_grant_without_a_limit_keeps_the_plan_limit_in_the_ingest(system: System) -> None:
    grant(system, None)
    answer = ingest(system, 100, 1)
    assert [r["status"] for r in answer["results"]] == ["accepted", "refused"]
    assert answer["results"][0]["limit"] == 100


def test_revoking_the_grant_brings_the_plan_limit_back_to_the_ingest(system: System) -> None:
    grant(system, 1000)
    assert ingest(system, 90)["accepted"] == 1
    do(system, "revoke_feature", tenant_id="t1", feature_key="api", reason="done")
    answer = ingest(system, 20, 10, prefix="after")
    assert [r["status"] for r in answer["results"]] == ["refused", "accepted"]
    assert answer["results"][1]["limit"] == 100 == check(system)["limit"]
