"""The HTTP API in process (FastAPI TestClient) on the embedded SQLite system: routes, the one
error shape, auth and scopes, isolation between apps, time travel, billing runs, metrics.

The end-to-end suite (tests/e2e) drives a real `tally serve` on PostgreSQL, NATS and Redis."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError
from fastapi.testclient import TestClient

from adapters.bootstrap import System, bootstrap
from adapters.http.app import create_app
from adapters.settings import Settings
from domain.api_key import api_key_id
from domain.clock import SettableClock, SystemClock
from projections import queries
from tests.factories import T0
from tests.unit.http.support import Api, assert_error

USD = "USD"
PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 9900, "currency": USD},
    "trial_days": 14,
    "features": [
        {"key": "sso", "kind": "boolean"},
        {"key": "api-calls", "kind": "metered", "limit": 100, "enforcement": "hard"},
    ],
}


def subscribe(api: Api, tenant: str = "t1", **extra: Any) -> dict[str, Any]:
    assert api.call("POST", "/v1/plans", json=PLAN).status_code in (201, 409)
    response = api.call(
        "POST", "/v1/subscriptions", json={"tenant_id": tenant, "plan_key": "pro", **extra}
    )
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def test_catalog(acme: Api) -> None:
    created = acme.call("POST", "/v1/plans", json=PLAN)
    assert created.status_code == 201 and created.json()["version"] == 1
    assert_error(acme.call("POST", "/v1/plans", json=PLAN), 409, "already_exists", "plan_key")
    revised = acme.call("POST", "/v1/plans/pro/revisions", json=PLAN)  # the key is in the path
    assert_error(revised, 422, "validation_error", "plan_key")
    body = {k: v for k, v in PLAN.items() if k != "plan_key"} | {"name": "Pro 2"}
    revised = acme.call("POST", "/v1/plans/pro/revisions", json=body)
    assert revised.status_code == 201 and revised.json()["version"] == 2
    plan = acme.call("GET", "/v1/plans/pro", scope="read").json()
    assert plan["latest_version"] == 2 and plan["name"] == "Pro 2" and len(plan["versions"]) == 2
    assert [p["plan_key"] for p in acme.call("GET", "/v1/plans", scope="read").json()["plans"]] == [
        "pro"
    ]
    assert acme.call("POST", "/v1/plans/pro/archive").json()["archived"] is True
    assert_error(acme.call("POST", "/v1/plans/pro/archive"), 409, "plan_archived")
    assert acme.call("GET", "/v1/plans?archived=false", scope="read").json()["plans"] == []
    assert_error(
        acme.call("GET", "/v1/plans/Not_A_Key", scope="read"), 422, "validation_error", "plan_key"
    )
    assert_error(acme.call("GET", "/v1/plans/nope", scope="read"), 404, "not_found")


def test_catalog_changes_need_admin(acme: Api) -> None:
    assert_error(acme.call("POST", "/v1/plans", scope="write", json=PLAN), 403, "forbidden")
    response = acme.client.get("/v1/plans")
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    bad = acme.client.get("/v1/plans", headers={"Authorization": "Bearer tk_ffffffffffffffff_x"})
    assert_error(bad, 401, "unauthorized")
    assert_error(
        acme.client.get("/v1/plans", headers={"Authorization": "Basic abc"}), 401, "unauthorized"
    )


def test_subscription_lifecycle_time_travel_and_duplicates(acme: Api, clock: SettableClock) -> None:
    first = subscribe(acme, command_id="start-1")
    sid = first["subscription_id"]
    replay = acme.call(
        "POST",
        "/v1/subscriptions",
        json={"tenant_id": "t1", "plan_key": "pro", "command_id": "start-1"},
    )
    assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first
    reused = acme.call(
        "POST",
        "/v1/subscriptions",
        json={"tenant_id": "t2", "plan_key": "pro", "command_id": "start-1"},
    )
    assert_error(reused, 409, "command_id_reused", "command_id")
    assert_error(
        acme.call("POST", "/v1/subscriptions", json={"tenant_id": "t1", "plan_key": "pro"}),
        409,
        "subscription_already_active",
        "tenant_id",
    )
    assert first["status"] == "trialing"

    run = acme.call(
        "POST", "/v1/billing-runs", json={"until": (T0 + timedelta(days=20)).isoformat()}
    )
    assert run.status_code == 200, run.text
    assert run.json()["trials_ended"] == 1 and run.json()["complete"] is True
    assert clock.now() == T0 + timedelta(days=20)
    now = acme.call("GET", f"/v1/subscriptions/{sid}", scope="read").json()
    assert now["status"] == "active"
    past = acme.call(
        "GET",
        f"/v1/subscriptions/{sid}",
        scope="read",
        params={"as_of": (T0 + timedelta(days=1)).isoformat()},
    )
    assert past.status_code == 200 and past.json()["status"] == "trialing"
    v1 = acme.call("GET", f"/v1/subscriptions/{sid}?version=1", scope="read").json()
    assert v1["status"] == "trialing" and v1["version"] == 1
    before = acme.call(
        "GET",
        f"/v1/subscriptions/{sid}",
        scope="read",
        params={"as_of": (T0 - timedelta(days=1)).isoformat()},
    )
    assert_error(before, 404, "not_found")
    naive = acme.call("GET", f"/v1/subscriptions/{sid}?as_of=2026-01-02T00:00:00", scope="read")
    assert_error(naive, 422, "validation_error", "as_of")

    assert (
        acme.call("POST", f"/v1/subscriptions/{sid}/pause", scope="write").json()["status"]
        == "paused"
    )
    assert_error(
        acme.call("POST", f"/v1/subscriptions/{sid}/pause", scope="write"),
        409,
        "invalid_transition",
        "status",
    )
    assert (
        acme.call("POST", f"/v1/subscriptions/{sid}/resume", scope="write").json()["status"]
        == "active"
    )
    scheduled = acme.call(
        "POST",
        f"/v1/subscriptions/{sid}/cancel",
        scope="write",
        json={"at_period_end": True, "reason": "too pricey"},
    )
    assert scheduled.json()["cancel_at_period_end"] is True
    undone = acme.call("POST", f"/v1/subscriptions/{sid}/undo-cancel", scope="write")
    assert undone.json()["cancel_at_period_end"] is False
    assert_error(
        acme.call("POST", f"/v1/subscriptions/{sid}/undo-cancel", scope="write"),
        409,
        "invalid_transition",
    )
    assert_error(
        acme.call(
            "POST", f"/v1/subscriptions/{sid}/change-plan", scope="write", json={"plan_key": "pro"}
        ),
        409,
        "invalid_transition",
        "plan_key",
    )
    acme.call(
        "POST", f"/v1/subscriptions/{sid}/cancel", scope="write", json={"at_period_end": True}
    )
    renewal = acme.call(
        "POST", "/v1/billing-runs", json={"until": (T0 + timedelta(days=60)).isoformat()}
    ).json()
    assert renewal["canceled"] == 1
    assert acme.call("GET", f"/v1/subscriptions/{sid}", scope="read").json()["status"] == "canceled"
    assert_error(
        acme.call("POST", "/v1/billing-runs", json={"until": T0.isoformat()}),
        422,
        "invalid_value",
        "until",
    )


def test_billing_runs_need_a_settable_clock(acme: Api, system: System) -> None:
    system.clock = SystemClock()
    assert_error(
        acme.call("POST", "/v1/billing-runs", json={"until": "2030-01-01T00:00:00Z"}),
        409,
        "clock_not_settable",
    )
    assert_error(
        acme.call(
            "POST", "/v1/billing-runs", scope="write", json={"until": "2030-01-01T00:00:00Z"}
        ),
        403,
        "forbidden",
    )


def test_bad_input_names_the_field_and_rule(acme: Api) -> None:
    response = acme.call(
        "POST", "/v1/subscriptions", scope="write", json={"tenant_id": "t 1", "plan_key": "pro"}
    )
    assert_error(response, 422, "validation_error", "tenant_id")
    detail = response.json()["error"]["details"][0]
    assert (
        detail["rule"] == "string_pattern_mismatch"
        and "tenant_id" in response.json()["error"]["message"]
    )
    missing = acme.call("POST", "/v1/subscriptions", scope="write", json={"tenant_id": "t1"})
    assert_error(missing, 422, "validation_error", "plan_key")
    assert missing.json()["error"]["details"][0]["rule"] == "missing"
    not_json = acme.call(
        "POST",
        "/v1/subscriptions",
        scope="write",
        content=b"{",
        headers={"content-type": "application/json"},
    )
    assert_error(not_json, 422, "validation_error")
    bad_uuid = acme.call("GET", "/v1/subscriptions/not-a-uuid", scope="read")
    assert_error(bad_uuid, 422, "validation_error", "subscription_id")
    bad_money = acme.call(
        "POST", "/v1/plans", json={**PLAN, "base_price": {"amount": 1, "currency": "usd"}}
    )
    assert_error(bad_money, 422, "validation_error", "base_price.currency")


def test_app_id_comes_from_the_key(acme: Api, globex: Api) -> None:
    subscribe(acme)
    typed = acme.call("POST", "/v1/plans", json={**PLAN, "plan_key": "x", "app_id": "acme"})
    assert_error(typed, 422, "validation_error", "app_id")
    assert typed.json()["error"]["details"][0]["rule"] == "extra_forbidden"
    generic = acme.call(
        "POST", "/v1/commands/define_plan", json={**PLAN, "plan_key": "x", "app_id": "globex"}
    )
    assert generic.status_code == 422
    assert generic.json() == {"ok": False, "error": generic.json()["error"]}
    assert generic.json()["error"]["code"] == "app_id_mismatch"
    same = acme.call(
        "POST", "/v1/commands/define_plan", json={**PLAN, "plan_key": "x", "app_id": "acme"}
    )
    assert same.status_code == 200 and same.json()["ok"] is True
    assert globex.call("GET", "/v1/plans/x").status_code == 404


def test_generic_command_route(acme: Api) -> None:
    subscribe(acme)
    body = {
        "tenant_id": "t1",
        "feature_key": "api-calls",
        "amount": 5,
        "idempotency_key": "k1",
        "command_id": "c-1",
    }
    first = acme.call("POST", "/v1/commands/consume_quota", scope="write", json=body)
    assert (
        first.status_code == 200 and first.json()["ok"] is True and "duplicate" not in first.json()
    )
    again = acme.call("POST", "/v1/commands/consume_quota", scope="write", json=body)
    replay = {"ok": True, "result": first.json()["result"], "duplicate": True}
    assert again.json() == {**replay, "position": again.json()["position"]}
    assert again.json()["position"] >= first.json()["position"] > 0  # read your writes
    unknown = acme.call("POST", "/v1/commands/fly_to_the_moon", json={})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_command"
    bad = acme.call("POST", "/v1/commands/consume_quota", scope="write", json={"tenant_id": "t1"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] in (
        "feature_key",
        "idempotency_key",
    )
    forbidden = acme.call("POST", "/v1/commands/define_plan", scope="write", json=PLAN)
    assert forbidden.status_code == 403 and forbidden.json()["ok"] is False
    read_only = acme.call("POST", "/v1/commands/consume_quota", scope="read", json=body)
    assert read_only.status_code == 403
    not_found = acme.call(
        "POST",
        "/v1/commands/pause_subscription",
        scope="write",
        json={"subscription_id": "00000000-0000-0000-0000-000000000000"},
    )
    assert (
        not_found.status_code == 404
        and not_found.json()["error"]["details"][0]["field"] == "subscription_id"
    )


def test_usage_ingest_counts(acme: Api, system: System) -> None:
    subscribe(acme)
    single = acme.call(
        "POST",
        "/v1/usage",
        scope="write",
        json={
            "idempotency_key": "u0",
            "tenant_id": "t1",
            "feature_key": "api-calls",
            "quantity": 10,
        },
    )
    assert single.status_code == 200
    assert {k: single.json()[k] for k in ("accepted", "duplicates", "refused", "failed")} == {
        "accepted": 1,
        "duplicates": 0,
        "refused": 0,
        "failed": 0,
    }
    events = [
        {"idempotency_key": "u1", "tenant_id": "t1", "feature_key": "api-calls", "quantity": 50},
        {"idempotency_key": "u0", "tenant_id": "t1", "feature_key": "api-calls", "quantity": 10},
        {"idempotency_key": "u2", "tenant_id": "t1", "feature_key": "api-calls", "quantity": 50},
        {"idempotency_key": "u3", "tenant_id": "t1", "feature_key": "nope"},
    ]
    batch = acme.call("POST", "/v1/usage", scope="write", json={"events": events}).json()
    assert {k: batch[k] for k in ("accepted", "duplicates", "refused", "failed")} == {
        "accepted": 1,
        "duplicates": 1,
        "refused": 1,
        "failed": 1,
    }
    assert [r["status"] for r in batch["results"]] == ["accepted", "duplicate", "refused", "failed"]
    assert batch["results"][3]["error"]["code"] == "not_found"
    unknown = acme.call(
        "POST",
        "/v1/usage",
        scope="write",
        json={"idempotency_key": "u9", "tenant_id": "t1", "feature_key": "nope"},
    )
    assert_error(unknown, 404, "not_found", "feature_key")
    invalid = acme.call(
        "POST",
        "/v1/usage",
        scope="write",
        json={"events": [events[0], {**events[2], "quantity": 0}]},
    )
    assert_error(invalid, 422, "validation_error", "events.1.quantity")
    assert_error(
        acme.call("POST", "/v1/usage", scope="write", json={"events": []}), 422, "validation_error"
    )
    assert_error(acme.call("POST", "/v1/usage", scope="read", json=events[0]), 403, "forbidden")

    system.sync()
    usage = acme.call(
        "GET", "/v1/tenants/t1/usage", scope="read", params={"granularity": "day"}
    ).json()
    assert usage["usage"][0]["quantity"] == 60
    csv = acme.call("GET", "/v1/tenants/t1/usage", scope="read", headers={"Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "feature,granularity,bucket_start,quantity,events"
    assert acme.call("GET", "/v1/tenants/t1/usage?format=csv", scope="read").text == csv.text
    assert_error(
        acme.call("GET", "/v1/tenants/t1/usage?from=yesterday", scope="read"),
        422,
        "invalid_value",
        "from",
    )

    entitlement = acme.call("GET", "/v1/tenants/t1/entitlements/api-calls", scope="read").json()
    assert (
        entitlement["allowed"] is True
        and entitlement["used"] == 60
        and entitlement["remaining"] == 40
    )
    everything = acme.call("GET", "/v1/tenants/t1/entitlements", scope="read").json()
    assert {row["feature"] for row in everything["entitlements"]} >= {"sso", "api-calls"}
    bulk = acme.call(
        "POST",
        "/v1/entitlements/check",
        scope="read",
        json={"tenant_id": "t1", "feature_keys": ["sso", "nope"]},
    ).json()
    assert [row["allowed"] for row in bulk["results"]] == [True, False]


def test_grants_need_admin_and_change_the_answer(acme: Api, system: System) -> None:
    subscribe(acme)
    grant = {"feature_key": "beta", "reason": "pilot customer"}
    assert_error(
        acme.call("POST", "/v1/tenants/t1/grants", scope="write", json=grant), 403, "forbidden"
    )
    assert acme.call("POST", "/v1/tenants/t1/grants", json=grant).status_code == 201
    system.sync()
    assert (
        acme.call("GET", "/v1/tenants/t1/entitlements/beta", scope="read").json()["allowed"] is True
    )
    assert acme.call("DELETE", "/v1/tenants/t1/grants/beta?reason=pilot%20over").status_code == 200
    system.sync()
    assert (
        acme.call("GET", "/v1/tenants/t1/entitlements/beta", scope="read").json()["allowed"]
        is False
    )
    assert_error(acme.call("DELETE", "/v1/tenants/t1/grants/never"), 404, "not_found")


def test_invoices(acme: Api, globex: Api) -> None:
    sub = subscribe(acme)
    line = {
        "kind": "base_fee",
        "description": "Pro",
        "quantity": 1,
        "unit_amount": {"amount": 9900, "currency": USD},
    }
    draft = acme.call(
        "POST",
        "/v1/invoices",
        scope="write",
        json={
            "tenant_id": "t1",
            "subscription_id": sub["subscription_id"],
            "currency": USD,
            "lines": [line],
        },
    )
    assert draft.status_code == 201, draft.text
    invoice_id = draft.json()["invoice_id"]
    assert (
        acme.call("POST", f"/v1/invoices/{invoice_id}/finalize", scope="write").json()["status"]
        == "open"
    )
    paid = acme.call(
        "POST", f"/v1/invoices/{invoice_id}/pay", scope="write", json={"payment_reference": "ch_1"}
    )
    assert paid.json()["status"] == "paid"
    assert_error(
        acme.call(
            "POST", f"/v1/invoices/{invoice_id}/void", scope="write", json={"reason": "oops"}
        ),
        409,
        "invalid_transition",
    )
    assert_error(
        acme.call("POST", f"/v1/invoices/{invoice_id}/void", scope="write", json={}),
        422,
        "validation_error",
        "reason",
    )
    listed = acme.call("GET", "/v1/invoices?tenant_id=t1", scope="read").json()["invoices"]
    assert [i["invoice_id"] for i in listed] == [invoice_id]
    assert acme.call("GET", "/v1/invoices?status=draft", scope="read").json()["invoices"] == []
    assert (
        acme.call("GET", f"/v1/invoices/{invoice_id}", scope="read").json()["total"]["amount"]
        == 9900
    )
    pdf = acme.call("GET", f"/v1/invoices/{invoice_id}/pdf", scope="read")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and b"%%EOF" in pdf.content[-32:]
    assert_error(globex.call("GET", f"/v1/invoices/{invoice_id}"), 404, "not_found")
    assert_error(globex.call("GET", f"/v1/invoices/{invoice_id}/pdf"), 404, "not_found")
    assert globex.call("GET", "/v1/invoices").json()["invoices"] == []


def test_revenue_and_metrics(acme: Api, system: System) -> None:
    subscribe(acme, trial=False)
    system.sync()
    revenue = acme.call("GET", "/v1/revenue", scope="read").json()
    assert revenue["mrr"] == {USD: 9900}
    metrics = acme.call("GET", "/v1/metrics/subscriptions", scope="read")
    assert metrics.status_code == 200
    assert_error(
        acme.call("GET", "/v1/revenue?currency=usd", scope="read"),
        422,
        "validation_error",
        "currency",
    )


def test_a_missing_read_model_answers_501(acme: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(queries.QUERIES, "revenue")
    assert_error(acme.call("GET", "/v1/revenue", scope="read"), 501, "not_implemented")


def test_audit_log_shows_only_the_callers_app(acme: Api, globex: Api) -> None:
    sub = subscribe(acme)
    subscribe(globex, tenant="g1")
    mine = acme.call("GET", "/v1/events", scope="read").json()
    assert mine["events"] and {e["app_id"] for e in mine["events"]} == {"acme"}
    assert mine["next_after"] == mine["head"]
    page = acme.call("GET", "/v1/events?limit=2", scope="read").json()
    assert len(page["events"]) == 2
    rest = acme.call("GET", f"/v1/events?after={page['next_after']}", scope="read").json()
    assert [e["id"] for e in page["events"] + rest["events"]] == [e["id"] for e in mine["events"]]
    tenant = acme.call("GET", "/v1/events?tenant_id=t1", scope="read").json()["events"]
    assert tenant and {e["tenant_id"] for e in tenant} == {"t1"}
    history = acme.call(
        "GET", f"/v1/events?aggregate_id={sub['subscription_id']}", scope="read"
    ).json()
    assert [e["type"] for e in history["events"]] == ["SubscriptionStarted"]
    assert history["events"][0]["actor"].startswith("api-key:")
    assert_error(
        globex.call("GET", f"/v1/events?aggregate_id={sub['subscription_id']}"), 404, "not_found"
    )


def test_other_apps_ids_are_not_found(acme: Api, globex: Api) -> None:
    sid = subscribe(acme)["subscription_id"]
    for method, path, body in [
        ("GET", f"/v1/subscriptions/{sid}", None),
        ("POST", f"/v1/subscriptions/{sid}/pause", None),
        ("POST", f"/v1/subscriptions/{sid}/cancel", {}),
        ("POST", f"/v1/subscriptions/{sid}/change-plan", {"plan_key": "pro"}),
        ("GET", "/v1/plans/pro", None),
        ("POST", "/v1/plans/pro/archive", None),
    ]:
        assert_error(globex.call(method, path, json=body), 404, "not_found")
    assert acme.call("GET", f"/v1/subscriptions/{sid}").json()["status"] == "trialing"


def test_store_down_answers_503(acme: Api, system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    subscribe(acme)

    def down(*_: Any, **__: Any) -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr(system.bus, "handle", down)
    response = acme.call("POST", "/v1/plans", json={**PLAN, "plan_key": "other"})
    assert_error(response, 503, "unavailable")
    assert response.headers["retry-after"] == "1"
    monkeypatch.setattr(system.ledger.recorder, "max_notification_id", down)
    ready = acme.client.get("/ready")
    assert ready.status_code == 503
    assert {c["name"]: c["ok"] for c in ready.json()["checks"]}["event_store"] is False
    assert acme.client.get("/live").status_code == 200


def test_operations_routes(acme: Api) -> None:
    assert acme.client.get("/live").json() == {"status": "ok"}
    ready = acme.client.get("/ready")
    assert ready.status_code == 200 and {c["name"] for c in ready.json()["checks"]} == {
        "event_store",
        "read_models",
    }
    assert acme.client.get("/health").status_code == 200
    subscribe(acme)
    acme.call("POST", "/v1/plans", json=PLAN)
    metrics = acme.client.get("/metrics").text
    assert 'tally_http_requests_total{method="POST",route="/v1/plans",status="201"}' in metrics
    assert 'tally_commands_total{command="define_plan",outcome="already_exists"}' in metrics
    assert "tally_http_request_duration_seconds_bucket" in metrics
    spec = acme.client.get("/openapi.json").json()
    assert "/v1/subscriptions/{subscription_id}" in spec["paths"]
    assert spec["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert acme.client.get("/nowhere").json()["error"]["code"] == "not_found"
    assert acme.client.delete("/v1/plans").json()["error"]["code"] == "method_not_allowed"


def test_the_audit_log_never_shows_key_hashes(acme: Api, system: System) -> None:
    key_id = acme.keys["read"].split("_")[1]
    aggregate = str(api_key_id(key_id))
    history = acme.call("GET", f"/v1/events?aggregate_id={aggregate}", scope="read")
    assert history.status_code == 200, history.text
    [created] = history.json()["events"]
    assert created["type"] == "ApiKeyCreated" and created["data"]["key_id"] == key_id
    assert "secret_hash" not in history.text
    log = acme.call("GET", "/v1/events?limit=50", scope="read")
    assert log.status_code == 200 and "secret_hash" not in log.text


def test_ready_is_degraded_not_down_without_redis(tmp_path: Path, clock: SettableClock) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'events.db'}",
        redis_url="redis://127.0.0.1:1/0",  # nothing listens there
    )
    built = bootstrap(settings, clock)
    try:
        ready = TestClient(create_app(built)).get("/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        checks = {c["name"]: c["ok"] for c in ready.json()["checks"]}
        assert checks == {"event_store": True, "read_models": True, "redis": False}
    finally:
        built.close()
