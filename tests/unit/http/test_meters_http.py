"""The meter routes in process (FastAPI TestClient on the embedded SQLite system): define
(201, a duplicate 200, a redefinition 409), list in definition order, bad input naming the
field, scopes and app isolation; plans whose metered features name a meter key."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.http.support import Api, assert_error

REQUESTS = {
    "key": "api-calls",
    "event_type": "api_request",
    "aggregation": "count",
    "filter": {"method": "POST"},
    "group_by": ["endpoint"],
}
PEAK = {
    "key": "peak-storage",
    "event_type": "storage",
    "aggregation": "max",
    "value_property": "bytes",
}
USERS = {
    "key": "active-users",
    "event_type": "login",
    "aggregation": "unique_count",
    "value_property": "user_id",
}
PLAN: dict[str, Any] = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 4900, "currency": "USD"},
}


def define(api: Api, body: dict[str, Any], scope: str = "write") -> Any:
    return api.call("POST", "/v1/meters", scope, json=body)


def listed(api: Api) -> list[dict[str, Any]]:
    response = api.call("GET", "/v1/meters", "read")
    assert response.status_code == 200, response.text
    return list(response.json()["meters"])


def test_define_then_list_meters_in_definition_order(acme: Api) -> None:
    assert listed(acme) == []
    created = define(acme, REQUESTS)
    assert created.status_code == 201, created.text
    assert created.json() == {
        **REQUESTS,
        "value_property": None,
        "duplicate": False,
        "version": 1,
    }
    assert define(acme, PEAK).status_code == 201
    assert define(acme, USERS).json()["version"] == 3
    assert [m["key"] for m in listed(acme)] == ["api-calls", "peak-storage", "active-users"]
    assert listed(acme)[1] == {**PEAK, "filter": {}, "group_by": []}


def test_the_same_definition_again_answers_200_as_a_duplicate(acme: Api) -> None:
    assert define(acme, PEAK).status_code == 201
    again = define(acme, dict(PEAK))
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True and again.json()["version"] == 1
    assert len(listed(acme)) == 1


def test_another_definition_of_a_taken_key_is_409_naming_key(acme: Api) -> None:
    assert define(acme, PEAK).status_code == 201
    changed = define(acme, {**PEAK, "aggregation": "latest"})
    assert_error(changed, 409, "meter_redefined", "key")
    assert listed(acme) == [{**PEAK, "filter": {}, "group_by": []}]


def test_a_command_id_replay_answers_the_first_result(acme: Api) -> None:
    first = define(acme, {**PEAK, "command_id": "m-1"})
    replay = define(acme, {**PEAK, "command_id": "m-1"})
    assert first.status_code == 201 and replay.status_code == 200
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json() == first.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**PEAK, "key": "max"}, "key"),
        ({**PEAK, "key": "Peak Storage"}, "key"),
        ({**PEAK, "event_type": "Storage"}, "event_type"),
        ({**PEAK, "aggregation": "median"}, "aggregation"),
        ({k: v for k, v in PEAK.items() if k != "value_property"}, "value_property"),
        ({**PEAK, "value_property": "size"}, "value_property"),
        ({**REQUESTS, "value_property": "status"}, "value_property"),
        ({**REQUESTS, "filter": {"status": "200"}}, "filter.status"),
        ({**REQUESTS, "filter": {"region": "eu"}}, "filter.region"),
        ({**REQUESTS, "filter": {"status": 2.5}}, "filter.status"),
        ({**REQUESTS, "filter": {f"p{i}": i for i in range(11)}, "event_type": "x"}, "filter"),
        ({**REQUESTS, "group_by": ["endpoint", "endpoint"]}, "group_by"),
        ({**REQUESTS, "group_by": ["region"]}, "group_by.0"),
        ({**REQUESTS, "app_id": "acme"}, "app_id"),
        ({**REQUESTS, "unit": "requests"}, "unit"),
    ],
)
def test_bad_input_is_422_naming_the_field(acme: Api, body: dict[str, Any], field: str) -> None:
    assert_error(define(acme, body), 422, "validation_error", field)
    assert listed(acme) == []


def test_filter_values_are_kept_exactly(acme: Api) -> None:
    body = {**USERS, "key": "padded", "filter": {"region": " eu "}}
    assert define(acme, body).json()["filter"] == {"region": " eu "}


def test_scopes(acme: Api) -> None:
    assert_error(define(acme, PEAK, scope="read"), 403, "forbidden")
    assert define(acme, PEAK, scope="write").status_code == 201
    response = acme.client.get("/v1/meters")
    assert_error(response, 401, "unauthorized")


def test_each_app_has_its_own_meters(acme: Api, globex: Api) -> None:
    assert define(acme, PEAK).status_code == 201
    assert listed(globex) == []
    theirs = define(globex, {**PEAK, "aggregation": "latest"})  # same key, another app
    assert theirs.status_code == 201 and theirs.json()["duplicate"] is False
    assert listed(acme)[0]["aggregation"] == "max"
    assert listed(globex)[0]["aggregation"] == "latest"


def test_the_generic_command_route_and_the_audit_log(acme: Api) -> None:
    response = acme.call("POST", "/v1/commands/define_meter", "write", json=USERS)
    assert response.status_code == 200, response.text
    events = acme.call("GET", "/v1/events", "read").json()["events"]
    defined = [e for e in events if e["type"] == "MeterDefined"]
    assert len(defined) == 1 and defined[0]["aggregate_type"] == "meter_catalog"
    assert defined[0]["data"]["meter"]["key"] == "active-users"


def test_openapi_documents_the_meter_routes(acme: Api) -> None:
    paths = acme.client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/meters"]) == {"get", "post"}


# --- plans whose metered features name a meter ---


def feature(meter: str, key: str = "api") -> dict[str, Any]:
    return {"key": key, "kind": "metered", "limit": 1000, "meter": meter}


def test_a_plan_feature_naming_a_meter_key_takes_its_aggregation(acme: Api) -> None:
    assert define(acme, REQUESTS).status_code == 201
    assert define(acme, USERS).status_code == 201
    features = [feature("api-calls"), feature("active-users", "users"), feature("max", "peak")]
    created = acme.call("POST", "/v1/plans", json={**PLAN, "features": features})
    assert created.status_code == 201, created.text
    plan = acme.call("GET", "/v1/plans/pro", "read").json()
    shown = [(f["key"], f["meter"], f["meter_key"]) for f in plan["versions"][0]["features"]]
    assert shown == [
        ("api", "count", "api-calls"),
        ("users", "unique_count", "active-users"),
        ("peak", "max", None),
    ]


def test_a_plan_naming_an_unknown_meter_is_422_naming_the_feature(acme: Api) -> None:
    unknown = acme.call("POST", "/v1/plans", json={**PLAN, "features": [feature("api-calls")]})
    assert_error(unknown, 422, "invalid_value", "features.api.meter")
    assert acme.call("GET", "/v1/plans/pro", "read").status_code == 404


def test_a_revision_resolves_meters_too(acme: Api, globex: Api) -> None:
    assert acme.call("POST", "/v1/plans", json=PLAN).status_code == 201
    revision = {k: v for k, v in PLAN.items() if k != "plan_key"}
    path = "/v1/plans/pro/revisions"
    missing = acme.call("POST", path, json={**revision, "features": [feature("peak-storage")]})
    assert_error(missing, 422, "invalid_value", "features.api.meter")
    assert define(globex, PEAK).status_code == 201  # another app's meter does not count
    still = acme.call("POST", path, json={**revision, "features": [feature("peak-storage")]})
    assert_error(still, 422, "invalid_value", "features.api.meter")
    assert define(acme, PEAK).status_code == 201
    revised = acme.call("POST", path, json={**revision, "features": [feature("peak-storage")]})
    assert revised.status_code == 201, revised.text
    latest = acme.call("GET", "/v1/plans/pro", "read").json()["versions"][-1]
    assert (latest["features"][0]["meter"], latest["features"][0]["meter_key"]) == (
        "max",
        "peak-storage",
    )


def test_a_meter_name_that_is_not_a_key_is_422(acme: Api) -> None:
    bad = acme.call("POST", "/v1/plans", json={**PLAN, "features": [feature("Not A Key")]})
    assert_error(bad, 422, "validation_error", "features.0.meter")
