"""`GET /v1/plans/compare` over HTTP: versions and plans, the route never taken for a plan
key, and refusals naming the parameter."""

from __future__ import annotations

from tests.unit.http.support import Api, assert_error
from tests.unit.test_plan_compare import V1, api_feature, usd

PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": usd(4900),
    "features": V1,
    "price_overrides": {"DE": usd(4500)},
}


def define(api: Api) -> None:
    assert api.call("POST", "/v1/plans", json=PLAN).status_code == 201
    revision = {k: v for k, v in PLAN.items() if k != "plan_key"} | {"base_price": usd(5900)}
    assert api.call("POST", "/v1/plans/pro/revisions", json=revision).status_code == 201
    big = {**PLAN, "plan_key": "big", "name": "Big", "features": [api_feature(limit=10000)]}
    assert api.call("POST", "/v1/plans", json=big).status_code == 201


def test_compare_versions_and_plans_over_http(acme: Api) -> None:
    define(acme)
    versions = acme.call("GET", "/v1/plans/compare?a=pro@1&b=pro@2", scope="read")
    assert versions.status_code == 200, versions.text
    body = versions.json()
    assert (body["a"]["version"], body["b"]["version"]) == (1, 2)
    assert body["base_price"]["difference"] == usd(1000)
    assert body["zones"][0]["zone"] == "DE" and body["zones"][0]["difference"] == usd(0)
    latest = acme.call("GET", "/v1/plans/compare?a=pro@1&b=pro", scope="read").json()
    assert latest["b"]["version"] == 2 and latest == body
    plans = acme.call("GET", "/v1/plans/compare?a=pro&b=big", scope="read").json()
    assert (plans["removed"], plans["changed"]) == (["sso"], ["api"])
    assert [(c["field"], c["a"], c["b"]) for c in plans["features"][1]["changes"]] == [
        ("limit", 1000, 10000)
    ]
    assert plans["base_price"]["difference"] == usd(-1000)  # pro@2 at 5900, big at 4900


def test_compare_is_not_taken_for_a_plan_key_and_the_plan_routes_still_work(acme: Api) -> None:
    define(acme)
    missing = acme.call("GET", "/v1/plans/compare?a=pro", scope="read")
    assert_error(missing, 422, "validation_error", "b")  # not plan "compare"
    assert acme.call("GET", "/v1/plans/pro", scope="read").json()["latest_version"] == 2
    assert len(acme.call("GET", "/v1/plans", scope="read").json()["plans"]) == 2


def test_compare_refuses_unknown_plans_versions_and_bad_refs(acme: Api, globex: Api) -> None:
    define(acme)
    assert_error(acme.call("GET", "/v1/plans/compare?a=pro@3&b=pro"), 404, "not_found", "a")
    assert_error(acme.call("GET", "/v1/plans/compare?a=pro&b=nope"), 404, "not_found", "b")
    assert_error(acme.call("GET", "/v1/plans/compare?a=pro@x&b=pro"), 422, "invalid_value", "a")
    assert_error(acme.call("GET", "/v1/plans/compare?a=Pro&b=pro"), 422, "invalid_value", "a")
    assert_error(acme.call("GET", "/v1/plans/compare?a=pro@0&b=pro"), 422, "invalid_value", "a")
    assert_error(globex.call("GET", "/v1/plans/compare?a=pro&b=pro"), 404, "not_found", "a")
    assert acme.client.get("/v1/plans/compare?a=pro&b=pro").status_code == 401
