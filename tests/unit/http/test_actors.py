"""Actors over HTTP: the recorded actor is the API key (its id and label), never a body's;
`on_behalf_of` is recorded beside it and needs the write scope; a billing run keeps its own
actor."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from adapters.bootstrap import System
from domain.api_key import parse_key
from tests.factories import T0
from tests.unit.http.support import Api, assert_error

PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 1000, "currency": "USD"},
    "features": [{"key": "api", "kind": "metered", "limit": 100}],
}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def actor_of(api: Api, scope: str = "admin") -> str:
    return f"api-key:{parse_key(api.keys[scope])[0]}"


def labelled_key(system: System, label: str, scope: str = "admin") -> str:
    reply = system.dispatch("create_api_key", {"app_id": "acme", "scope": scope, "label": label})
    assert reply["ok"], reply
    return str(reply["result"]["api_key"])


def history(api: Api, aggregate_id: str) -> list[dict[str, Any]]:
    events = ok(api.call("GET", f"/v1/events?aggregate_id={aggregate_id}", "read"))["events"]
    assert events, "the command recorded no events"
    return list(events)


def audit(api: Api, aggregate_id: str) -> set[tuple[str, str | None]]:
    return {(e["actor"], e["on_behalf_of"]) for e in history(api, aggregate_id)}


def plans_of(api: Api) -> list[Any]:
    return list(ok(api.call("GET", "/v1/plans", "read"))["plans"])


# --- a body's actor is refused ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/plans", PLAN),
        ("/v1/subscriptions", {"tenant_id": "t1", "plan_key": "pro"}),
        ("/v1/meters", {"key": "calls", "event_type": "api_request", "aggregation": "count"}),
        ("/v1/tenants/t1/credits", {"amount": {"amount": 5, "currency": "USD"}, "reason": "x"}),
    ],
)
def test_a_body_actor_is_refused_on_typed_routes(acme: Api, path: str, body: Any) -> None:
    ok(acme.call("POST", "/v1/plans", json={**PLAN, "plan_key": "base"}), 201)
    before = ok(acme.call("GET", "/v1/events?limit=1000", "read"))["events"]
    response = acme.call("POST", path, json={**body, "actor": "someone-else"})
    assert_error(response, 422, "validation_error", "actor")
    assert response.json()["error"]["details"][0]["rule"] == "extra_forbidden"
    assert ok(acme.call("GET", "/v1/events?limit=1000", "read"))["events"] == before


def test_a_body_actor_is_refused_on_the_generic_command_route(acme: Api) -> None:
    for actor in ("someone-else", f"api-key:{parse_key(acme.keys['write'])[0]}", "system"):
        response = acme.call("POST", "/v1/commands/define_plan", json={**PLAN, "actor": actor})
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["ok"] is False and body["error"]["code"] == "validation_error"
        assert body["error"]["details"][0] == {
            "field": "actor",
            "rule": "extra_forbidden",
            "message": body["error"]["details"][0]["message"],
        }
    assert plans_of(acme) == []


# --- the key is the actor --------------------------------------------------------------------


def test_events_carry_the_keys_actor_on_typed_and_generic_routes(acme: Api) -> None:
    plan = ok(acme.call("POST", "/v1/plans", json=PLAN), 201)
    assert audit(acme, plan["plan_id"]) == {(actor_of(acme), None)}
    reply = ok(
        acme.call(
            "POST",
            "/v1/commands/start_subscription",
            "write",
            json={"tenant_id": "t1", "plan_key": "pro"},
        )
    )
    assert audit(acme, reply["result"]["subscription_id"]) == {(actor_of(acme, "write"), None)}


def test_a_labelled_key_records_its_id_and_label(acme: Api, system: System) -> None:
    key = labelled_key(system, "billing service")
    headers = {"Authorization": f"Bearer {key}"}
    plan = ok(acme.client.post("/v1/plans", json=PLAN, headers=headers), 201)
    expected = f"api-key:{parse_key(key)[0]} (billing service)"
    assert audit(acme, plan["plan_id"]) == {(expected, None)}


def test_a_long_label_is_cut_so_the_actor_still_fits(acme: Api, system: System) -> None:
    key = labelled_key(system, "l" * 200)
    headers = {"Authorization": f"Bearer {key}"}
    plan = ok(acme.client.post("/v1/plans", json=PLAN, headers=headers), 201)
    (actor,) = {e["actor"] for e in history(acme, plan["plan_id"])}
    assert len(actor) == 200
    assert actor.startswith(f"api-key:{parse_key(key)[0]} (lll") and actor.endswith("l)")


# --- on_behalf_of ------------------------------------------------------------------------------


def test_on_behalf_of_is_recorded_beside_the_keys_actor(acme: Api) -> None:
    ok(acme.call("POST", "/v1/plans", json=PLAN), 201)
    body = {"tenant_id": "t1", "plan_key": "pro", "on_behalf_of": "user-42"}
    sub = ok(acme.call("POST", "/v1/subscriptions", "write", json=body), 201)
    assert audit(acme, sub["subscription_id"]) == {(actor_of(acme, "write"), "user-42")}
    generic = {"subscription_id": sub["subscription_id"], "on_behalf_of": "user-7"}
    ok(acme.call("POST", "/v1/commands/pause_subscription", "write", json=generic))
    events = history(acme, sub["subscription_id"])
    assert (events[-1]["type"], events[-1]["actor"], events[-1]["on_behalf_of"]) == (
        "SubscriptionPaused",
        actor_of(acme, "write"),
        "user-7",
    )


def test_on_behalf_of_is_refused_for_a_read_key(acme: Api) -> None:
    ok(acme.call("POST", "/v1/plans", json=PLAN), 201)
    body = {"tenant_id": "t1", "plan_key": "pro", "on_behalf_of": "user-42"}
    generic = acme.call("POST", "/v1/commands/start_subscription", "read", json=body)
    assert generic.status_code == 403, generic.text
    error = generic.json()["error"]
    assert error["code"] == "forbidden"
    assert error["details"] == [{"field": "on_behalf_of", "required_scope": "write"}]
    typed = acme.call("POST", "/v1/subscriptions", "read", json=body)
    assert_error(typed, 403, "forbidden")
    assert ok(acme.call("GET", "/v1/subscriptions?tenant_id=t1", "read"))["subscriptions"] == []


def test_a_retry_on_behalf_of_someone_else_is_still_a_duplicate(acme: Api) -> None:
    ok(acme.call("POST", "/v1/plans", json=PLAN), 201)
    body = {"tenant_id": "t1", "plan_key": "pro", "command_id": "start-1"}
    first = acme.call("POST", "/v1/subscriptions", json={**body, "on_behalf_of": "user-1"})
    again = acme.call("POST", "/v1/subscriptions", json={**body, "on_behalf_of": "user-2"})
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert audit(acme, first.json()["subscription_id"]) == {(actor_of(acme), "user-1")}


# --- internal actors stay --------------------------------------------------------------------


def test_a_billing_run_records_its_own_actor(acme: Api) -> None:
    ok(acme.call("POST", "/v1/plans", json=PLAN), 201)
    body = {"tenant_id": "t1", "plan_key": "pro"}
    sub = ok(acme.call("POST", "/v1/subscriptions", json=body), 201)
    until = (T0 + timedelta(days=40)).isoformat()
    ok(acme.call("POST", "/v1/billing-runs", json={"until": until}))
    events = history(acme, sub["subscription_id"])
    assert events[0]["actor"] == actor_of(acme)
    renewals = [e for e in events if e["type"] == "SubscriptionRenewed"]
    assert renewals and {(e["actor"], e["on_behalf_of"]) for e in renewals} == {
        ("billing-run", None)
    }
