"""Typed usage events end to end over HTTP: meters from the catalog feed the tenants'
features; a typed event counts once whatever number of meters it feeds; grouped meters
keep rows per group; the invoice prices what the meters counted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from adapters.bootstrap import System
from domain.clock import SettableClock
from tests.factories import T0
from tests.unit.http.support import Api, assert_error

METERS = [
    {
        "key": "ok-requests",
        "event_type": "api_request",
        "aggregation": "count",
        "filter": {"status": 200},
        "group_by": ["endpoint"],
    },
    {
        "key": "peak-storage",
        "event_type": "storage",
        "aggregation": "max",
        "value_property": "bytes",
    },
    {
        "key": "active-users",
        "event_type": "login",
        "aggregation": "unique_count",
        "value_property": "user_id",
    },
    {
        "key": "slow-ms",
        "event_type": "api_request",
        "aggregation": "sum",
        "value_property": "duration_ms",
    },
]
PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 1000, "currency": "USD"},
    "features": [
        {
            "key": "calls",
            "kind": "metered",
            "meter": "ok-requests",
            "limit": 2,
            "enforcement": "soft",
            "overage": {"model": "per_unit", "unit_price": {"amount": 10, "currency": "USD"}},
        },
        {"key": "storage", "kind": "metered", "meter": "peak-storage", "enforcement": "soft"},
        {"key": "users", "kind": "metered", "meter": "active-users", "enforcement": "soft"},
        {"key": "latency", "kind": "metered", "meter": "slow-ms", "enforcement": "soft"},
    ],
}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def request(key: str, endpoint: str, status: int, ms: int) -> dict[str, Any]:
    properties = {"endpoint": endpoint, "method": "GET", "status": status, "duration_ms": ms}
    return {
        "idempotency_key": key,
        "tenant_id": "t1",
        "event_type": "api_request",
        "properties": properties,
    }


def setup(acme: Api) -> None:
    for meter in METERS:
        ok(acme.call("POST", "/v1/meters", json=meter), 201)
    ok(acme.call("POST", "/v1/plans", json=PLAN), 201)
    ok(acme.call("POST", "/v1/subscriptions", json={"tenant_id": "t1", "plan_key": "pro"}), 201)


def quota_used(acme: Api, feature: str) -> int:
    return int(ok(acme.call("GET", f"/v1/tenants/t1/entitlements/{feature}"))["used"])


def test_typed_events_feed_the_features_whose_meters_match(acme: Api, system: System) -> None:
    setup(acme)
    events = [
        request("r1", "/a", 200, 30),
        request("r2", "/b", 200, 50),
        request("r3", "/a", 500, 70),  # filtered out of ok-requests, still in slow-ms
        request("r1", "/a", 200, 30),  # a duplicate: counted once, in every meter
        {
            "idempotency_key": "s1",
            "tenant_id": "t1",
            "event_type": "storage",
            "properties": {"bytes": 700},
        },
        {
            "idempotency_key": "s2",
            "tenant_id": "t1",
            "event_type": "storage",
            "properties": {"bytes": 300},
        },
        {
            "idempotency_key": "u1",
            "tenant_id": "t1",
            "event_type": "login",
            "properties": {"user_id": "ann"},
        },
        {
            "idempotency_key": "u2",
            "tenant_id": "t1",
            "event_type": "login",
            "properties": {"user_id": "bob"},
        },
        {
            "idempotency_key": "u3",
            "tenant_id": "t1",
            "event_type": "login",
            "properties": {"user_id": "ann"},
        },
    ]
    answer = ok(acme.call("POST", "/v1/usage", scope="write", json={"events": events}))
    assert (answer["accepted"], answer["duplicates"], answer["failed"]) == (8, 1, 0)
    assert len(answer["results"][0]["features"]) == 2  # r1 fed calls and latency
    system.sync()
    assert quota_used(acme, "calls") == 2
    assert quota_used(acme, "latency") == 150
    assert quota_used(acme, "storage") == 700
    assert quota_used(acme, "users") == 2
    grouped = ok(
        acme.call("GET", "/v1/tenants/t1/usage?feature=calls&granularity=month&groups=true")
    )
    assert [(r["group"], r["quantity"]) for r in grouped["usage"]] == [
        ({"endpoint": "/a"}, 1),
        ({"endpoint": "/b"}, 1),
    ]
    by_meter = ok(acme.call("GET", "/v1/tenants/t1/usage?meter=slow-ms&granularity=month"))
    assert [(r["feature"], r["quantity"]) for r in by_meter["usage"]] == [("latency", 150)]
    nothing = ok(acme.call("GET", "/v1/tenants/t1/usage?meter=unknown-meter"))
    assert nothing["usage"] == []
    csv = acme.call(
        "GET", "/v1/tenants/t1/usage?feature=calls&granularity=month&groups=true&format=csv"
    )
    assert csv.text.splitlines()[0].endswith(",group")


def test_bad_typed_events_refuse_the_batch_naming_the_field(acme: Api, system: System) -> None:
    setup(acme)
    bad_status = request("x", "/a", 200, 1)
    bad_status["properties"]["status"] = "200"
    response = acme.call(
        "POST",
        "/v1/usage",
        scope="write",
        json={"events": [request("ok", "/a", 200, 1), bad_status]},
    )
    assert_error(response, 422, "invalid_value", "events.1.properties.status")
    unknown = {
        "idempotency_key": "y",
        "tenant_id": "t1",
        "event_type": "teleport",
        "properties": {},
    }
    assert_error(
        acme.call("POST", "/v1/usage", scope="write", json={"events": [unknown]}),
        422,
        "invalid_value",
        "events.0.event_type",
    )
    system.sync()
    assert quota_used(acme, "calls") == 0  # nothing of a refused batch was written


def test_the_invoice_prices_what_the_meters_counted(
    acme: Api, system: System, clock: SettableClock
) -> None:
    setup(acme)
    events = [request(f"r{i}", "/a", 200, 10) for i in range(5)]
    ok(acme.call("POST", "/v1/usage", scope="write", json={"events": events}))
    clock.set(T0 + timedelta(days=31))
    ok(acme.call("POST", "/v1/billing-runs", json={"until": clock.now().isoformat()}))
    invoices = ok(acme.call("GET", "/v1/invoices?tenant_id=t1"))["invoices"]
    renewal = max(invoices, key=lambda invoice: invoice["number_text"] or "")
    lines = {line["kind"]: line for line in renewal["lines"] if line["kind"] == "usage"}
    usage = lines["usage"]
    assert usage["usage"]["quantity"] == 5 and usage["amount"]["amount"] == 30  # 3 over x 10
