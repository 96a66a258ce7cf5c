"""The entitlements read model through the embedded system (SQLite): commands, then
`system.sync()`, then `system.query("entitlement", ...)`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.bootstrap import System
from adapters.eventstore.envelopes import iter_envelopes
from adapters.readmodels.replay import replay
from adapters.readmodels.sql_store import ViewStore
from domain.clock import SettableClock
from domain.errors import InvalidValue
from projections.entitlements.projector import TABLE, EntitlementsProjector
from tests.factories import embedded_system, ok
from tests.fake_entitlement_cache import FakeEntitlementCache

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ANSWER_KEYS = {
    "allowed",
    "feature",
    "limit",
    "used",
    "remaining",
    "soft_limit",
    "reason",
    "source",
    "valid_until",
}
BASIC: list[dict[str, Any]] = [
    {"key": "sso", "kind": "boolean"},
    {"key": "api", "kind": "metered", "limit": 3, "enforcement": "hard"},
    {"key": "exports", "kind": "metered", "limit": 10, "enforcement": "soft"},
    {"key": "storage", "kind": "metered", "period": "absolute"},
    {"key": "seats", "kind": "seats", "limit": 5},
]
TEAM: list[dict[str, Any]] = [
    {"key": "sso", "kind": "boolean"},
    {"key": "api", "kind": "metered", "limit": 10, "enforcement": "hard"},
    {"key": "reports", "kind": "boolean"},
]


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def system(clock: SettableClock) -> Iterator[System]:
    built = embedded_system(clock)
    ok(built.dispatch("define_plan", plan("basic", BASIC)))
    ok(built.dispatch("define_plan", plan("team", TEAM)))
    ok(built.dispatch("define_plan", plan("trial", [{"key": "sso", "kind": "boolean"}], 14)))
    yield built
    built.close()


def plan(key: str, features: list[dict[str, Any]], trial_days: int = 0) -> dict[str, Any]:
    return {
        "app_id": "acme",
        "plan_key": key,
        "name": key.title(),
        "base_price": {"amount": 1000, "currency": "USD"},
        "trial_days": trial_days,
        "features": features,
    }


def do(system: System, command: str, **fields: Any) -> dict[str, Any]:
    return ok(system.dispatch(command, {"app_id": "acme", **fields}))


def start(system: System, plan_key: str = "basic", tenant: str = "t1") -> str:
    return str(
        do(system, "start_subscription", tenant_id=tenant, plan_key=plan_key)["subscription_id"]
    )


def consume(system: System, feature: str, amount: int, key: str) -> dict[str, Any]:
    return do(
        system,
        "consume_quota",
        tenant_id="t1",
        feature_key=feature,
        amount=amount,
        idempotency_key=key,
    )


def check(system: System, feature: str, tenant: str = "t1") -> dict[str, Any]:
    system.sync()
    answer: dict[str, Any] = system.query(
        "entitlement", app_id="acme", tenant_id=tenant, feature_key=feature
    )
    assert set(answer) >= ANSWER_KEYS
    assert answer["feature"] == feature
    return answer


def entitlement_rows(system: System) -> list[dict[str, Any]]:
    return system.views.query(f"SELECT * FROM {{{TABLE}}} ORDER BY tenant_id, feature_key")


# --- plan features ---


def test_plan_features_boolean_metered_seats_and_unknown(system: System) -> None:
    start(system)
    assert check(system, "sso") == {
        "allowed": True,
        "feature": "sso",
        "limit": None,
        "used": None,
        "remaining": None,
        "percent_used": None,
        "soft_limit": None,
        "reason": None,
        "source": "plan",
        "valid_until": None,
        "enforcement": None,
    }
    api = check(system, "api")
    assert (api["allowed"], api["limit"], api["used"], api["remaining"]) == (True, 3, 0, 3)
    assert api["enforcement"] == "hard" and api["soft_limit"] is None
    exports = check(system, "exports")
    assert exports["enforcement"] == "soft" and exports["soft_limit"] == 8
    storage = check(system, "storage")
    assert storage["allowed"] and storage["limit"] is None and storage["remaining"] is None
    seats = check(system, "seats")
    assert seats["allowed"] and seats["limit"] == 5
    unknown = check(system, "nope")
    assert unknown["allowed"] is False and unknown["reason"] == "not_in_plan"
    assert unknown["source"] is None
    other_tenant = check(system, "sso", tenant="t2")
    assert other_tenant["reason"] == "not_in_plan"


def test_metered_usage_and_the_hard_limit(system: System, clock: SettableClock) -> None:
    start(system)
    consume(system, "api", 2, "a")
    api = check(system, "api")
    assert (api["allowed"], api["used"], api["remaining"]) == (True, 2, 1)
    assert api["percent_used"] == 66.67  # 2 of 3, to two decimals
    consume(system, "api", 1, "b")
    api = check(system, "api")
    assert api["allowed"] is False and api["reason"] == "hard_limit_reached"
    assert (api["used"], api["limit"], api["remaining"], api["source"]) == (3, 3, 0, "plan")
    refused = consume(system, "api", 1, "c")
    assert refused["allowed"] is False
    assert check(system, "api")["used"] == 3

    # an allowance (quota grant) raises the limit until it expires by the clock
    do(
        system,
        "grant_allowance",
        tenant_id="t1",
        feature_key="api",
        amount=2,
        reason="support",
        expires_at=(T0 + timedelta(days=2)).isoformat(),
    )
    api = check(system, "api")
    assert (api["allowed"], api["limit"], api["remaining"]) == (True, 5, 2)
    clock.set(T0 + timedelta(days=2))
    api = check(system, "api")
    assert (api["allowed"], api["limit"], api["reason"]) == (False, 3, "hard_limit_reached")

    # the window ends by the clock: usage starts over, before any reset event
    clock.set(datetime(2026, 2, 1, tzinfo=UTC))
    api = check(system, "api")
    assert (api["allowed"], api["used"], api["remaining"]) == (True, 0, 3)
    consume(system, "api", 1, "d")  # the consume resets the window, then counts
    assert check(system, "api")["used"] == 1


def test_soft_overage_is_still_allowed(system: System) -> None:
    start(system)
    consume(system, "exports", 9, "a")
    exports = check(system, "exports")
    assert (exports["allowed"], exports["used"], exports["soft_limit"]) == (True, 9, 8)
    consume(system, "exports", 5, "b")
    exports = check(system, "exports")
    assert exports["allowed"] and exports["reason"] is None
    assert (exports["used"], exports["limit"], exports["remaining"]) == (14, 10, 0)


# --- the subscription's status ---


def test_pause_resume_past_due_cancel(system: System) -> None:
    sub = start(system)
    do(system, "pause_subscription", subscription_id=sub)
    for feature in ("sso", "api", "seats"):
        answer = check(system, feature)
        assert answer["allowed"] is False and answer["reason"] == "subscription_paused"
        assert answer["source"] == "plan"
    do(system, "resume_subscription", subscription_id=sub)
    assert check(system, "sso")["allowed"]
    do(system, "mark_subscription_past_due", subscription_id=sub, reason="card declined")
    assert check(system, "sso")["allowed"]
    do(system, "recover_subscription_payment", subscription_id=sub)
    do(system, "cancel_subscription", subscription_id=sub)
    answer = check(system, "api")
    assert answer["allowed"] is False and answer["reason"] == "subscription_canceled"

    # a new subscription for the tenant brings its features back
    start(system, "team")
    assert check(system, "reports")["allowed"]
    assert check(system, "seats")["reason"] == "not_in_plan"


def test_trial_expiry_and_scheduled_cancel(system: System, clock: SettableClock) -> None:
    sub = start(system, "trial")
    assert check(system, "sso")["allowed"]
    do(system, "end_trial", subscription_id=sub)
    assert check(system, "sso")["allowed"]
    do(system, "cancel_subscription", subscription_id=sub, at_period_end=True)
    sso = check(system, "sso")
    assert sso["allowed"] and sso["valid_until"] is not None
    period_end = datetime.fromisoformat(sso["valid_until"])
    clock.set(period_end)  # the cancel takes effect by the clock, before any event
    sso = check(system, "sso")
    assert sso["allowed"] is False and sso["reason"] == "subscription_canceled"


def test_undo_cancel_and_expire(system: System) -> None:
    sub = start(system)
    do(system, "cancel_subscription", subscription_id=sub, at_period_end=True)
    assert check(system, "sso")["valid_until"] is not None
    do(system, "undo_scheduled_cancel", subscription_id=sub)
    assert check(system, "sso")["valid_until"] is None
    do(system, "expire_subscription", subscription_id=sub)
    assert check(system, "sso")["reason"] == "subscription_expired"


# --- plan changes ---


def test_plan_change_adds_removes_and_relimits_features(system: System) -> None:
    sub = start(system)
    consume(system, "api", 3, "a")
    assert check(system, "api")["reason"] == "hard_limit_reached"
    do(system, "change_plan", subscription_id=sub, plan_key="team")
    api = check(system, "api")
    assert (api["allowed"], api["limit"], api["used"], api["remaining"]) == (True, 10, 3, 7)
    assert check(system, "reports")["allowed"]
    for gone in ("seats", "exports", "storage"):
        answer = check(system, gone)
        assert answer["allowed"] is False and answer["reason"] == "not_in_plan"
        assert answer["source"] is None
    # and back: the features return with their usage
    do(system, "change_plan", subscription_id=sub, plan_key="basic")
    assert check(system, "exports")["allowed"]
    assert check(system, "reports")["reason"] == "not_in_plan"


def test_a_scheduled_plan_change_applies_at_renewal(system: System, clock: SettableClock) -> None:
    sub = start(system)
    do(system, "change_plan", subscription_id=sub, plan_key="team", timing="period_end")
    assert check(system, "reports")["reason"] == "not_in_plan"
    clock.set(datetime(2026, 2, 1, tzinfo=UTC))
    do(system, "renew_subscription", subscription_id=sub)
    assert check(system, "reports")["allowed"]
    assert check(system, "seats")["reason"] == "not_in_plan"


# --- manual grants ---


def test_grants_allow_features_off_the_plan_until_they_expire(
    system: System, clock: SettableClock
) -> None:
    start(system)
    until = T0 + timedelta(days=7)
    do(
        system,
        "grant_feature",
        tenant_id="t1",
        feature_key="beta",
        reason="pilot",
        expires_at=until.isoformat(),
    )
    beta = check(system, "beta")
    assert beta["allowed"] and beta["source"] == "grant" and beta["reason"] is None
    assert datetime.fromisoformat(beta["valid_until"]) == until
    clock.set(until - timedelta(seconds=1))
    assert check(system, "beta")["allowed"]
    clock.set(until)
    beta = check(system, "beta")
    assert beta["allowed"] is False and beta["reason"] == "grant_expired"
    assert beta["source"] == "grant"


def test_grants_override_not_in_plan_and_the_subscription_status(system: System) -> None:
    sub = start(system)
    do(system, "grant_feature", tenant_id="t1", feature_key="reports", reason="demo", limit=4)
    reports = check(system, "reports")
    assert reports["allowed"] and reports["source"] == "grant" and reports["limit"] == 4
    assert reports["valid_until"] is None
    do(system, "grant_feature", tenant_id="t1", feature_key="sso", reason="keep sso")
    do(system, "pause_subscription", subscription_id=sub)
    assert check(system, "sso")["allowed"] and check(system, "sso")["source"] == "grant"
    assert check(system, "seats")["reason"] == "subscription_paused"


def test_a_grant_without_a_limit_does_not_lift_a_hard_quota(system: System) -> None:
    start(system)
    consume(system, "api", 3, "a")
    do(system, "grant_feature", tenant_id="t1", feature_key="api", reason="vip")
    api = check(system, "api")
    assert api["allowed"] is False and api["reason"] == "hard_limit_reached"
    assert (api["limit"], api["source"]) == (3, "grant")
    do(system, "grant_feature", tenant_id="t1", feature_key="api", reason="vip", limit=100)
    api = check(system, "api")  # a grant's limit governs the check (test_grant_limit.py)
    assert api["allowed"] and (api["limit"], api["remaining"]) == (100, 97)


def test_revoke_restores_the_plan_answer(system: System) -> None:
    sub = start(system)
    do(system, "grant_feature", tenant_id="t1", feature_key="sso", reason="x")
    do(system, "grant_feature", tenant_id="t1", feature_key="beta", reason="x")
    do(system, "pause_subscription", subscription_id=sub)
    assert check(system, "sso")["allowed"]
    do(system, "revoke_feature", tenant_id="t1", feature_key="sso", reason="done")
    assert check(system, "sso")["reason"] == "subscription_paused"
    do(system, "resume_subscription", subscription_id=sub)
    sso = check(system, "sso")
    assert sso["allowed"] and sso["source"] == "plan"
    do(system, "revoke_feature", tenant_id="t1", feature_key="beta", reason="done")
    beta = check(system, "beta")
    assert beta["allowed"] is False and beta["reason"] == "not_in_plan"


def test_a_grant_without_a_subscription(system: System) -> None:
    do(system, "grant_feature", tenant_id="t9", feature_key="beta", reason="early access")
    beta = check(system, "beta", tenant="t9")
    assert beta["allowed"] and beta["source"] == "grant"
    start(system, tenant="t9")
    assert check(system, "beta", tenant="t9")["allowed"]
    assert check(system, "sso", tenant="t9")["allowed"]


# --- bulk and list ---


def test_bulk_and_list(system: System) -> None:
    start(system)
    do(system, "grant_feature", tenant_id="t1", feature_key="beta", reason="x")
    system.sync()
    answers = system.query(
        "entitlements_bulk",
        app_id="acme",
        tenant_id="t1",
        feature_keys=["api", "nope", "beta", "api"],
    )
    assert [a["feature"] for a in answers] == ["api", "nope", "beta", "api"]
    assert [a["allowed"] for a in answers] == [True, False, True, True]
    assert answers[1]["reason"] == "not_in_plan"
    listed = system.query("entitlements", app_id="acme", tenant_id="t1")
    assert [a["feature"] for a in listed] == ["api", "beta", "exports", "seats", "sso", "storage"]
    assert all(set(a) >= ANSWER_KEYS for a in listed)
    assert system.query("entitlements", app_id="acme", tenant_id="nobody") == []
    assert system.query("entitlements", app_id="other", tenant_id="t1") == []


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("entitlement", {"app_id": "acme", "tenant_id": "t1", "feature_key": ""}, "feature_key"),
        ("entitlement", {"app_id": "", "tenant_id": "t1", "feature_key": "x"}, "app_id"),
        ("entitlements_bulk", {"app_id": "acme", "tenant_id": "t1", "feature_keys": []}, None),
        ("entitlements_bulk", {"app_id": "acme", "tenant_id": "t1", "feature_keys": "x"}, None),
        ("entitlements_bulk", {"app_id": "acme", "tenant_id": "t1", "feature_keys": [1]}, None),
        ("entitlements", {"app_id": "acme", "tenant_id": None}, "tenant_id"),
    ],
)
def test_bad_query_input_names_the_field(
    system: System, name: str, params: dict[str, Any], field: str | None
) -> None:
    with pytest.raises(InvalidValue) as error:
        system.query(name, **params)
    assert error.value.field == (field or error.value.field)
    assert error.value.field is not None


# --- the read model itself ---


def test_rows_hold_the_answer_as_of_the_last_event(system: System) -> None:
    start(system)
    consume(system, "api", 3, "a")
    system.sync()
    rows = {r["feature_key"]: r for r in entitlement_rows(system)}
    api = rows["api"]
    assert not api["allowed"] and api["reason"] == "hard_limit_reached"
    assert (api["effective_limit"], api["used"], api["remaining"]) == (3, 3, 0)
    assert api["source"] == "plan" and api["subscription_status"] == "active"
    assert api["kind"] == "metered" and api["enforcement"] == "hard"
    assert api["updated_position"] > 0
    assert rows["exports"]["soft_limit"] == 8


def test_a_rebuild_from_scratch_equals_the_live_read_model(
    system: System, clock: SettableClock
) -> None:
    sub = start(system)
    start(system, "trial", tenant="t2")
    consume(system, "api", 2, "a")
    do(system, "grant_feature", tenant_id="t1", feature_key="beta", reason="x")
    do(system, "change_plan", subscription_id=sub, plan_key="team")
    clock.advance(timedelta(days=1))
    do(system, "pause_subscription", subscription_id=sub)
    do(system, "revoke_feature", tenant_id="t1", feature_key="beta", reason="y")
    system.sync()
    live = entitlement_rows(system)

    rebuilt = ViewStore("sqlite", ":memory:")
    projector = EntitlementsProjector()
    rebuilt.ensure(projector)
    for batch in iter_envelopes(system.ledger.recorder, 0, 3):
        rebuilt.apply(projector, batch)
    assert rebuilt.query(f"SELECT * FROM {{{TABLE}}} ORDER BY tenant_id, feature_key") == live
    rebuilt.close()


# --- the hot cache (an in-memory fake here; Redis in tests/integration) ---


@pytest.fixture
def cache(system: System) -> FakeEntitlementCache:
    fake = FakeEntitlementCache()
    system.cache = fake
    projector = next(p for p in system.runner.projectors if p.NAME == "entitlements")
    assert isinstance(projector, EntitlementsProjector)
    projector.cache = fake
    return fake


def test_answers_come_from_the_cache_after_the_first_read(
    system: System, cache: FakeEntitlementCache
) -> None:
    start(system)
    check(system, "api")
    assert (cache.calls["miss"], cache.calls["put_many"]) == (1, 1)
    row = cache.tenants[("acme", "t1")]["api"]
    cache.tenants[("acme", "t1")]["api"] = {**row, "used": 2}  # only the cache says so
    assert check(system, "api")["used"] == 2
    assert cache.calls["hit"] == 1
    check(system, "nope")
    check(system, "nope")
    assert cache.calls["hit"] == 2  # unknown features are cached too


def test_events_invalidate_the_cache(system: System, cache: FakeEntitlementCache) -> None:
    sub = start(system)
    assert check(system, "api")["used"] == 0
    assert check(system, "beta")["reason"] == "not_in_plan"
    consume(system, "api", 1, "a")
    assert check(system, "api")["used"] == 1
    do(system, "grant_feature", tenant_id="t1", feature_key="beta", reason="x")
    assert check(system, "beta")["allowed"]
    do(system, "pause_subscription", subscription_id=sub)
    assert check(system, "sso")["reason"] == "subscription_paused"
    assert cache.calls["invalidate"] >= 3


def test_a_broken_cache_falls_back_to_the_read_model(
    system: System, cache: FakeEntitlementCache
) -> None:
    sub = start(system)
    check(system, "sso")
    cache.broken = True
    do(system, "pause_subscription", subscription_id=sub)
    assert check(system, "sso")["reason"] == "subscription_paused"  # sync did not raise
    answers = system.query(
        "entitlements_bulk", app_id="acme", tenant_id="t1", feature_keys=["sso", "api"]
    )
    assert [a["allowed"] for a in answers] == [False, False]


def test_a_fill_racing_an_event_never_writes_the_old_row(
    system: System, cache: FakeEntitlementCache
) -> None:
    start(system)
    system.sync()
    assert cache.get("acme", "t1", "api") is None  # a reader misses...
    old = system.views.query(f"SELECT * FROM {{{TABLE}}} WHERE feature_key = 'api'")
    consume(system, "api", 3, "a")
    system.sync()  # ...an event commits and invalidates...
    cache.put_many(old)  # ...and the reader's fill of the old row is dropped
    answer = check(system, "api")
    assert answer["used"] == 3 and answer["reason"] == "hard_limit_reached"


def test_a_replay_drops_the_whole_hot_copy(system: System, cache: FakeEntitlementCache) -> None:
    start(system)
    consume(system, "api", 1, "a")
    assert check(system, "api")["used"] == 1
    projector = next(p for p in system.runner.projectors if p.NAME == "entitlements")
    replay(system.views, system.ledger.recorder, projector)
    assert cache.calls["invalidate_all"] == 1 and cache.tenants == {}
    assert check(system, "api")["used"] == 1
    cache.broken = True
    replay(system.views, system.ledger.recorder, projector)  # a failing cache: logged only
    assert check(system, "api")["used"] == 1
