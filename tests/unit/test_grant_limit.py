"""A manual grant's `limit` on a metered feature of the plan governs the entitlement check
(issue 13, R6): the grant's limit replaces the plan's, the quota's allowance grants still add
to it, and revoking the grant brings the plan's limit back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.bootstrap import System
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


def consume(system: System, amount: int, key: str) -> dict[str, Any]:
    return do(
        system,
        "consume_quota",
        tenant_id="t1",
        feature_key="api",
        amount=amount,
        idempotency_key=key,
    )


def grant(system: System, limit: int | None) -> None:
    do(system, "grant_feature", tenant_id="t1", feature_key="api", reason="support", limit=limit)


def check(system: System) -> dict[str, Any]:
    system.sync()
    answer: dict[str, Any] = system.query(
        "entitlement", app_id="acme", tenant_id="t1", feature_key="api"
    )
    return answer


def test_a_higher_grant_limit_is_the_limit_checked(system: System) -> None:
    consume(system, 40, "a")
    grant(system, 1000)
    answer = check(system)
    assert (answer["allowed"], answer["source"]) == (True, "grant")
    assert (answer["limit"], answer["used"], answer["remaining"]) == (1000, 40, 960)
    assert answer["percent_used"] == 4.0


def test_a_lower_grant_limit_is_reached_before_the_plan_limit(system: System) -> None:
    grant(system, 10)
    consume(system, 10, "a")
    answer = check(system)
    assert (answer["allowed"], answer["reason"]) == (False, "hard_limit_reached")
    assert (answer["limit"], answer["remaining"], answer["source"]) == (10, 0, "grant")


def test_allowances_add_to_the_grant_limit(system: System) -> None:
    grant(system, 1000)
    do(system, "grant_allowance", tenant_id="t1", feature_key="api", amount=5, reason="promo")
    assert check(system)["limit"] == 1005


def test_a_grant_without_a_limit_keeps_the_plan_limit(system: System) -> None:
    consume(system, 100, "a")
    grant(system, None)
    answer = check(system)
    assert (answer["allowed"], answer["reason"], answer["limit"]) == (
        False,
        "hard_limit_reached",
        100,
    )


def test_revoking_the_grant_brings_the_plan_limit_back(system: System) -> None:
    grant(system, 1000)
    do(system, "revoke_feature", tenant_id="t1", feature_key="api", reason="done")
    answer = check(system)
    assert (answer["limit"], answer["source"]) == (100, "plan")
