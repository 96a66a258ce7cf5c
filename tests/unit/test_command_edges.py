"""Edge rules of commands: quotas follow the subscription, ids, times and currencies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.bootstrap import System
from tests.factories import embedded_system, ok

PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 1000, "currency": "USD"},
    "features": [{"key": "api", "kind": "metered", "limit": 100}],
}


@pytest.fixture
def system() -> Iterator[System]:
    built = embedded_system()
    yield built
    built.close()


def send(system: System, name: str, /, **fields: Any) -> dict[str, Any]:
    return system.dispatch(name, {"app_id": "acme", **fields})


def error(reply: dict[str, Any]) -> dict[str, Any]:
    assert not reply["ok"], reply
    return dict(reply["error"])


def consume(system: System, key: str) -> dict[str, Any]:
    return ok(send(system, "consume_quota", tenant_id="t1", feature_key="api", idempotency_key=key))


def test_quotas_stop_with_the_subscription_and_come_back_on_resume(system: System) -> None:
    ok(send(system, "define_plan", **PLAN))
    sub = ok(send(system, "start_subscription", tenant_id="t1", plan_key="pro"))
    sid = sub["subscription_id"]
    assert consume(system, "a")["allowed"]
    ok(send(system, "pause_subscription", subscription_id=sid))
    paused = consume(system, "b")
    assert (paused["allowed"], paused["reason"]) == (False, "subscription_paused")
    ok(send(system, "resume_subscription", subscription_id=sid))
    assert consume(system, "c")["allowed"]
    ok(send(system, "cancel_subscription", subscription_id=sid))
    canceled = consume(system, "d")
    assert (canceled["allowed"], canceled["reason"]) == (False, "subscription_canceled")
    ok(send(system, "start_subscription", tenant_id="t1", plan_key="pro"))
    again = consume(system, "e")
    assert again["allowed"] and again["used"] == 3  # same window: earlier usage still counts


def test_change_plan_to_a_pinned_version_still_checks_archive_and_custom_plans(
    system: System,
) -> None:
    ok(send(system, "define_plan", **PLAN))
    ok(send(system, "define_plan", **{**PLAN, "plan_key": "old"}))
    ok(send(system, "define_plan", **{**PLAN, "plan_key": "vip"}, custom_for_tenant="t2"))
    ok(send(system, "archive_plan", plan_key="old"))
    sid = ok(send(system, "start_subscription", tenant_id="t1", plan_key="pro"))["subscription_id"]
    archived = send(system, "change_plan", subscription_id=sid, plan_key="old", plan_version=1)
    assert error(archived)["code"] == "plan_archived"
    custom = send(system, "change_plan", subscription_id=sid, plan_key="vip", plan_version=1)
    assert error(custom)["code"] == "not_found"


def test_a_taken_subscription_id_is_refused_at_once(system: System) -> None:
    ok(send(system, "define_plan", **PLAN))
    sid = ok(send(system, "start_subscription", tenant_id="t1", plan_key="pro"))["subscription_id"]
    reply = send(system, "start_subscription", tenant_id="t2", plan_key="pro", subscription_id=sid)
    assert error(reply)["code"] == "already_exists"
    assert error(reply)["details"][0]["field"] == "subscription_id"


def test_times_without_timezone_and_bad_currencies_name_their_field(system: System) -> None:
    coupon = send(
        system,
        "create_coupon",
        code="spring",
        percent_off=10,
        duration="once",
        valid_from="2026-01-01T00:00:00",
    )
    failure = error(coupon)
    assert failure["code"] == "validation_error"
    assert failure["details"][0]["field"] == "valid_from"
    invoice = error(send(system, "draft_invoice", tenant_id="t1", currency="usd", lines=[]))
    assert invoice["code"] == "validation_error"
    assert invoice["details"][0]["field"] == "currency"


def test_a_retry_from_another_actor_is_still_a_duplicate(system: System) -> None:
    first = send(system, "define_plan", **PLAN, command_id="c-1", actor="alice")
    retry = send(system, "define_plan", **PLAN, command_id="c-1", actor="bob")
    assert retry["duplicate"] and retry["result"] == first["result"]
    reused = send(system, "define_plan", **{**PLAN, "name": "Other"}, command_id="c-1")
    assert error(reused)["code"] == "command_id_reused"


def test_a_feature_grant_keeps_a_suspended_quota_counting(system: System) -> None:
    ok(send(system, "define_plan", **PLAN))
    sid = ok(send(system, "start_subscription", tenant_id="t1", plan_key="pro"))["subscription_id"]
    ok(send(system, "pause_subscription", subscription_id=sid))
    assert not consume(system, "a")["allowed"]
    ok(send(system, "grant_feature", tenant_id="t1", feature_key="api", reason="support case 7"))
    assert consume(system, "b")["allowed"]
    ok(send(system, "revoke_feature", tenant_id="t1", feature_key="api", reason="case closed"))
    assert consume(system, "c")["reason"] == "subscription_paused"


def test_prices_are_capped_so_annual_sums_fit_64_bits(system: System) -> None:
    huge = {**PLAN, "base_price": {"amount": 10**16, "currency": "USD"}}
    failure = error(send(system, "define_plan", **huge))
    assert failure["code"] == "validation_error"
    assert failure["details"][0]["field"] == "base_price"


def test_app_ids_are_single_subject_tokens(system: System) -> None:
    reply = system.dispatch("define_plan", {**PLAN, "app_id": "acme.eu"})
    assert error(reply)["details"][0]["field"] == "app_id"


def test_commit_listeners_hear_every_commit(system: System) -> None:
    heard: list[int] = []
    system.bus.on_commit.append(lambda: heard.append(1))
    ok(send(system, "define_plan", **PLAN))
    error(send(system, "define_plan", **PLAN))  # refused: nothing committed
    system.bus.handle_many([])
    assert heard == [1]
