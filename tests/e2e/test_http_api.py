"""End to end over HTTP: a real `tally serve` (PostgreSQL, NATS JetStream and Redis when they
answer) driven with httpx: catalog -> subscription -> usage -> entitlements -> billing run ->
invoice -> revenue -> audit; time travel; bad input; duplicates; graceful SIGTERM."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import Server, eventually

pytestmark = pytest.mark.postgres

APP = "e2e-shop"
USD = "USD"
PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 9900, "currency": USD},
    "interval": "month",
    "trial_days": 14,
    "features": [
        {"key": "sso", "kind": "boolean"},
        {"key": "api-calls", "kind": "metered", "limit": 1000, "enforcement": "hard"},
    ],
}


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json()


def test_the_whole_journey(server: Server) -> None:
    admin = server.client(APP, "admin")
    writer = server.client(APP, "write")
    reader = server.client(APP, "read")

    # catalog
    assert ok(admin.post("/v1/plans", json=PLAN), 201)["version"] == 1
    assert [p["plan_key"] for p in ok(reader.get("/v1/plans"))["plans"]] == ["pro"]

    # subscribe (a retry with the same command_id is answered as a duplicate)
    start = {"tenant_id": "tenant-1", "plan_key": "pro", "command_id": "signup-tenant-1"}
    subscription = ok(writer.post("/v1/subscriptions", json=start), 201)
    retry = writer.post("/v1/subscriptions", json=start)
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == subscription
    sid = subscription["subscription_id"]
    assert subscription["status"] == "trialing"
    started_at = datetime.fromisoformat(subscription["current_period"]["start"])

    # usage: a batch, with a retried event
    events = [
        {
            "idempotency_key": f"evt-{i}",
            "tenant_id": "tenant-1",
            "feature_key": "api-calls",
            "quantity": 100,
        }
        for i in range(3)
    ]
    batch = ok(writer.post("/v1/usage", json={"events": [*events, events[0]]}))
    assert (batch["accepted"], batch["duplicates"], batch["refused"]) == (3, 1, 0)
    single = ok(writer.post("/v1/usage", json=events[1]))
    assert single["duplicates"] == 1 and single["accepted"] == 0

    # the generic command route: same body and reply as the NATS bus, duplicates flagged
    consume = {
        "tenant_id": "tenant-1",
        "feature_key": "api-calls",
        "amount": 50,
        "idempotency_key": "bus-1",
        "command_id": "bus-cmd-1",
    }
    first = ok(writer.post("/v1/commands/consume_quota", json=consume))
    again = ok(writer.post("/v1/commands/consume_quota", json=consume))
    assert first["ok"] is True and "duplicate" not in first
    replay = {"ok": True, "result": first["result"], "duplicate": True}
    assert again == {**replay, "position": again["position"]}
    assert again["position"] >= first["position"] > 0  # read your writes

    # entitlements (read models are fed through JetStream: eventually consistent)
    def used_350() -> dict[str, Any]:
        answer = ok(reader.get("/v1/tenants/tenant-1/entitlements/api-calls"))
        assert answer["used"] == 350, answer
        return answer

    answer = eventually(used_350)
    assert answer["allowed"] is True and answer["limit"] == 1000 and answer["remaining"] == 650
    assert ok(reader.get("/v1/tenants/tenant-1/entitlements/sso"))["allowed"] is True
    bulk = ok(
        reader.post(
            "/v1/entitlements/check",
            json={"tenant_id": "tenant-1", "feature_keys": ["sso", "exports"]},
        )
    )
    assert [row["allowed"] for row in bulk["results"]] == [True, False]
    every = ok(reader.get("/v1/tenants/tenant-1/entitlements"))["entitlements"]
    assert {row["feature"] for row in every} >= {"sso", "api-calls"}

    # usage read model, JSON and CSV
    def usage_350() -> None:
        rows = ok(reader.get("/v1/tenants/tenant-1/usage", params={"granularity": "month"}))
        assert sum(row["quantity"] for row in rows["usage"]) == 350, rows

    eventually(usage_350)
    csv = reader.get("/v1/tenants/tenant-1/usage", headers={"Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "feature,granularity,bucket_start,quantity,events"

    # a billing run moves the (settable) clock: the trial ends and the first month's fee is
    # invoiced in advance (INV-000001)
    until = started_at + timedelta(days=20)
    run = ok(admin.post("/v1/billing-runs", json={"until": until.isoformat()}))
    assert run["trials_ended"] == 1 and run["complete"] is True
    assert (run["invoiced"], run["finalized"]) == (1, 1)
    now = ok(reader.get(f"/v1/subscriptions/{sid}"))
    assert now["status"] == "active"

    # time travel: the state as of a past instant
    past = ok(
        reader.get(
            f"/v1/subscriptions/{sid}",
            params={"as_of": (started_at + timedelta(days=1)).isoformat()},
        )
    )
    assert past["status"] == "trialing" and past["version"] == 1

    # invoice: draft, finalize, pay
    line = {
        "kind": "base_fee",
        "description": "Pro, monthly",
        "quantity": 1,
        "unit_amount": {"amount": 9900, "currency": USD},
    }
    draft = ok(
        writer.post(
            "/v1/invoices",
            json={
                "tenant_id": "tenant-1",
                "subscription_id": sid,
                "currency": USD,
                "lines": [line],
            },
        ),
        201,
    )
    invoice_id = draft["invoice_id"]
    finalized = ok(writer.post(f"/v1/invoices/{invoice_id}/finalize"))
    assert finalized["status"] == "open" and finalized["number"] == 2
    assert ok(writer.post(f"/v1/invoices/{invoice_id}/pay"))["status"] == "paid"
    listed = ok(reader.get("/v1/invoices", params={"tenant_id": "tenant-1"}))["invoices"]
    assert listed[0]["invoice_id"] == invoice_id and len(listed) == 2
    pdf = reader.get(f"/v1/invoices/{invoice_id}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    assert pdf.headers["content-disposition"] == 'inline; filename="INV-000002.pdf"'

    # revenue and subscription metrics: the manual invoice (no service period) is recognized
    # on its day; the run's invoice day by day over its month, the rest deferred
    def revenue_counted() -> dict[str, Any]:
        revenue = ok(reader.get("/v1/revenue"))
        assert revenue["mrr"] == {USD: 9900}, revenue
        recognized = sum(r["amount"] for r in revenue["recognized"])
        assert 9900 < recognized < 2 * 9900, revenue
        assert recognized + revenue["deferred"].get(USD, 0) == 2 * 9900, revenue
        return revenue

    eventually(revenue_counted)
    metrics = ok(reader.get("/v1/metrics/subscriptions"))
    assert metrics["active_total"] == 1

    # the audit log: this app's events, and one aggregate's history
    log = ok(reader.get("/v1/events", params={"limit": 1000}))
    types = [event["type"] for event in log["events"]]
    for expected in (
        "PlanDefined",
        "SubscriptionStarted",
        "UsageRecorded",
        "SubscriptionTrialEnded",
        "InvoiceFinalized",
        "InvoicePaid",
    ):
        assert expected in types
    assert {event["app_id"] for event in log["events"]} == {server.app_id(APP)}
    history = ok(reader.get("/v1/events", params={"aggregate_id": sid}))["events"]
    assert [event["type"] for event in history] == [
        "SubscriptionStarted",
        "SubscriptionTrialEnded",
        "SubscriptionInvoiced",
    ]
    assert history[1]["actor"] == history[2]["actor"] == "billing-run"


def test_bad_input_gets_422_naming_the_field(server: Server) -> None:
    writer = server.client(APP, "write")
    response = writer.post("/v1/subscriptions", json={"tenant_id": "tenant 2", "plan_key": "pro"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == "tenant_id" and "tenant_id" in error["message"]
    assert error["details"][0]["rule"] == "string_pattern_mismatch"

    usage = writer.post(
        "/v1/usage",
        json={"idempotency_key": "x", "tenant_id": "t", "feature_key": "api-calls", "quantity": -5},
    )
    assert usage.status_code == 422
    assert usage.json()["error"]["details"][0]["field"].endswith("quantity")

    command = writer.post("/v1/commands/start_subscription", json={"tenant_id": "t"})
    assert command.status_code == 422
    assert command.json()["ok"] is False
    assert command.json()["error"]["details"][0]["field"] == "plan_key"

    naive = writer.get(
        f"/v1/subscriptions/{'0' * 8}-0000-0000-0000-{'0' * 12}",
        params={"as_of": "2026-01-01T00:00:00"},
    )
    assert naive.status_code == 422 and naive.json()["error"]["details"][0]["field"] == "as_of"


def test_operations_endpoints(server: Server) -> None:
    ready = httpx.get(f"{server.base_url}/ready").json()
    names = {check["name"] for check in ready["checks"]}
    assert {"event_store", "read_models"} <= names
    if server.nats:
        assert "nats" in names
    if server.redis:
        assert "redis" in names
    assert all(check["ok"] for check in ready["checks"])
    assert httpx.get(f"{server.base_url}/live").json() == {"status": "ok"}
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert "tally_http_requests_total" in metrics and "tally_commands_total" in metrics
    spec = httpx.get(f"{server.base_url}/openapi.json").json()
    assert spec["info"]["title"] == "Tally"


def test_sigterm_finishes_in_flight_requests_and_loses_nothing(server: Server) -> None:
    """Last in this module: it stops the server."""
    writer = server.client(APP, "write")
    accepted: list[str] = []
    failures: list[str] = []

    def send(worker: int) -> None:
        with httpx.Client(base_url=server.base_url, headers=writer.headers, timeout=30) as client:
            for i in range(200):
                key = f"drain-{worker}-{i}"
                try:
                    response = client.post(
                        "/v1/usage",
                        json={
                            "idempotency_key": key,
                            "tenant_id": "tenant-1",
                            "feature_key": "api-calls",
                            "quantity": 1,
                        },
                    )
                except httpx.TransportError:
                    return  # the server stopped listening: later events were never sent
                if response.status_code == 200 and response.json()["accepted"] == 1:
                    accepted.append(key)
                else:
                    failures.append(f"{response.status_code} {response.text}")

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    eventually(lambda: _at_least(accepted, 20), timeout=30)
    code = server.stop()
    for thread in threads:
        thread.join(timeout=60)
    assert code == 0
    assert not failures, failures[:3]
    with psycopg.connect(server.database_url) as conn:
        recorded = {
            row[0]
            for row in conn.execute(
                "SELECT idempotency_key FROM public.usage_keys"  # the keys counted, durably
            )
        }
    drained = {key for key in recorded if key and key.startswith("drain-")}
    assert drained == set(accepted)


def _at_least(items: list[str], count: int) -> None:
    assert len(items) >= count
