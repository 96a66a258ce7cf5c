"""Manual feature grants (support overrides): the TenantGrants aggregate and its commands."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.bootstrap import System
from domain.aggregates import ALL_AGGREGATES
from domain.base import Snapshot
from domain.clock import SettableClock
from domain.entitlement_grant import (
    FeatureGranted,
    FeatureGrantRevoked,
    TenantGrants,
    tenant_grants_id,
)
from domain.errors import InvalidValue, NotFound
from tests.factories import T0, cause, embedded_system


def opened(**options: Any) -> TenantGrants:
    return TenantGrants.open("acme", "t1", "beta", "pilot customer", cause(), **options)


def replay(grants: TenantGrants) -> TenantGrants:
    aggregate: Any = None
    for event in grants.collect_events():
        aggregate = event.mutate(aggregate)
    assert isinstance(aggregate, TenantGrants)
    return aggregate


def test_the_first_grant_creates_the_tenants_grants_with_a_stable_id() -> None:
    grants = opened(expires_at=T0 + timedelta(days=7), limit=5)
    assert grants.id == tenant_grants_id("acme", "t1") and grants.version == 1
    assert TenantGrants in ALL_AGGREGATES
    [event] = grants.pending_events
    assert isinstance(event, FeatureGranted)
    assert (event.feature_key, event.reason, event.limit) == ("beta", "pilot customer", 5)
    assert event.actor == "tester" and event.tenant_id == "t1" and event.command_id is None
    grant = grants.grant_for("beta")
    assert grant is not None and grant.actor == "tester" and grant.granted_at == T0
    assert grant.expires_at == T0 + timedelta(days=7)


def test_later_grants_add_or_replace_and_every_event_carries_the_actor() -> None:
    grants = opened()
    grants.grant("sso", "enterprise trial", cause(T0, actor="bob"), expires_at=T0 + timedelta(1))
    grants.grant("beta", "extended", cause(T0 + timedelta(hours=1), actor="carol"))
    events = grants.pending_events
    assert [type(e) for e in events] == [FeatureGranted] * 3
    assert [e.actor for e in events] == ["tester", "bob", "carol"]
    assert grants.version == 3
    beta = grants.grant_for("beta")
    assert beta is not None and beta.reason == "extended" and beta.actor == "carol"
    assert set(grants.active_grants(T0 + timedelta(days=2))) == {"beta"}
    rebuilt = replay(grants)
    assert rebuilt.state == grants.state and rebuilt.version == 3


def test_revoke_takes_the_grant_back_and_unknown_grants_are_not_found() -> None:
    grants = opened()
    grants.revoke("beta", " abuse ", cause(actor="dave"))
    event = grants.pending_events[-1]
    assert isinstance(event, FeatureGrantRevoked)
    assert (event.feature_key, event.reason, event.actor) == ("beta", "abuse", "dave")
    assert grants.grant_for("beta") is None
    with pytest.raises(NotFound) as error:
        grants.revoke("beta", "again", cause())
    assert error.value.field == "feature_key" and "beta" in error.value.message
    assert replay(grants).state.grants == {}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"reason": "  "}, "reason"),
        ({"feature_key": "Not A Key"}, "feature_key"),
        ({"expires_at": T0}, "expires_at"),
        ({"expires_at": T0 - timedelta(seconds=1)}, "expires_at"),
        ({"expires_at": datetime(2026, 2, 1)}, "expires_at"),  # naive
        ({"limit": -1}, "limit"),
        ({"limit": True}, "limit"),
    ],
)
def test_bad_grants_are_refused_naming_the_field(options: dict[str, Any], field: str) -> None:
    arguments: dict[str, Any] = {"feature_key": "beta", "reason": "why", **options}
    with pytest.raises(InvalidValue) as error:
        TenantGrants.open(
            "acme",
            "t1",
            arguments.pop("feature_key"),
            arguments.pop("reason"),
            cause(),
            **arguments,
        )
    assert error.value.field == field


def test_a_revoke_needs_a_reason() -> None:
    grants = opened()
    with pytest.raises(InvalidValue) as error:
        grants.revoke("beta", "", cause())
    assert error.value.field == "reason"


def test_state_survives_snapshots() -> None:
    grants = opened(expires_at=T0 + timedelta(days=3), limit=7)
    grants.grant("sso", "trial", cause())
    grants.collect_events()
    restored = Snapshot.take(grants).mutate(None)
    assert isinstance(restored, TenantGrants)
    assert restored.state == grants.state and restored.version == 2


# --- through the command bus on the embedded store ---


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def system(clock: SettableClock) -> Iterator[System]:
    built = embedded_system(clock)
    yield built
    built.close()


def grant(system: System, feature: str = "beta", **fields: Any) -> dict[str, Any]:
    body = {"app_id": "acme", "tenant_id": "t1", "feature_key": feature, "reason": "pilot"}
    return system.dispatch("grant_feature", {**body, **fields})


def revoke(system: System, feature: str = "beta", **fields: Any) -> dict[str, Any]:
    body = {"app_id": "acme", "tenant_id": "t1", "feature_key": feature, "reason": "done"}
    return system.dispatch("revoke_feature", {**body, **fields})


def test_grant_and_revoke_through_the_bus(system: System) -> None:
    reply = grant(system, actor="alice@support", expires_at="2026-01-08T00:00:00Z", limit=3)
    assert reply["ok"], reply
    result = reply["result"]
    assert result["granted"] and result["active"] and result["version"] == 1
    assert result["grant"]["actor"] == "alice@support"
    assert result["grant"]["expires_at"] == "2026-01-08T00:00:00Z"
    assert result["grant"]["limit"] == 3
    assert grant(system, "sso")["result"]["version"] == 2
    grants = system.aggregate(tenant_grants_id("acme", "t1"))
    assert set(grants.state.grants) == {"beta", "sso"}

    reply = revoke(system, actor="bob")
    assert reply["ok"] and reply["result"]["granted"] is False, reply
    events = list(system.ledger.events.get(tenant_grants_id("acme", "t1")))
    assert isinstance(events[-1], FeatureGrantRevoked) and events[-1].actor == "bob"


def test_a_command_id_runs_a_grant_once(system: System) -> None:
    first = grant(system, command_id="grant-1")
    again = grant(system, command_id="grant-1")
    assert again["duplicate"] and again["result"] == first["result"]
    assert system.aggregate(tenant_grants_id("acme", "t1")).version == 1


def test_unknown_grants_and_bad_input_get_named_errors(system: System) -> None:
    reply = revoke(system)
    assert reply["error"]["code"] == "not_found"
    assert reply["error"]["details"] == [{"field": "feature_key"}]
    grant(system, "sso")
    reply = revoke(system, "beta")
    assert reply["error"]["code"] == "not_found"
    assert reply["error"]["details"] == [{"field": "feature_key"}]
    assert "beta" in reply["error"]["message"]

    reply = grant(system, reason="")
    assert reply["error"]["code"] == "validation_error"
    assert reply["error"]["details"][0]["field"] == "reason"
    reply = grant(system, expires_at="2026-02-01T00:00:00")
    assert reply["error"]["details"][0]["field"] == "expires_at"
    reply = grant(system, expires_at="2025-12-31T00:00:00Z")
    assert reply["error"]["code"] == "invalid_value"
    assert reply["error"]["details"] == [{"field": "expires_at"}]
    reply = grant(system, limit=-1)
    assert reply["error"]["details"][0]["field"] == "limit"
    reply = grant(system, "Bad Key")
    assert reply["error"]["details"][0]["field"] == "feature_key"
    reply = system.dispatch("revoke_feature", {"app_id": "acme", "tenant_id": "t1"})
    assert reply["error"]["code"] == "validation_error"


def test_another_apps_grants_are_not_found(system: System) -> None:
    grant(system)
    reply = revoke(system, app_id="other")
    assert reply["error"]["code"] == "not_found"
    assert system.aggregate(tenant_grants_id("other", "t1")) is None


def test_clock_moves_expiry(system: System, clock: SettableClock) -> None:
    grant(system, expires_at=(T0 + timedelta(days=1)).isoformat())
    clock.set(datetime(2026, 1, 3, tzinfo=UTC))
    reply = grant(system, "sso")
    assert reply["ok"]
    grants = system.aggregate(tenant_grants_id("acme", "t1"))
    assert set(grants.active_grants(clock.now())) == {"sso"}
    reply = revoke(system, "beta")  # an expired grant can still be revoked (cleanup)
    assert reply["ok"], reply
