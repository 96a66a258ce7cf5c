"""The alert routes in process (FastAPI TestClient on the embedded SQLite system): create,
list with what fired, delete; 422 naming the field, scopes, app isolation, idempotency."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient

from adapters.bootstrap import System
from tests.unit.http.support import Api, assert_error

PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 1000, "currency": "USD"},
    "features": [{"key": "api", "kind": "metered", "limit": 100, "enforcement": "soft"}],
}
USAGE = {"tenant_id": "t1", "kind": "usage", "feature_key": "api", "thresholds": [{"percent": 80}]}
BUDGET = {
    "alert_key": "budget",
    "kind": "spend",
    "thresholds": [{"amount": {"amount": 5000, "currency": "USD"}}],
}


@pytest.fixture
def acme(client: TestClient, system: System) -> Api:
    api = Api(client, system, "acme")
    assert api.call("POST", "/v1/plans", json=PLAN).status_code == 201
    for tenant in ("t1", "t2"):
        started = api.call(
            "POST", "/v1/subscriptions", "write", json={"tenant_id": tenant, "plan_key": "pro"}
        )
        assert started.status_code == 201, started.text
    return api


def use(api: Api, tenant: str, quantity: int) -> None:
    event = {
        "tenant_id": tenant,
        "feature_key": "api",
        "quantity": quantity,
        "idempotency_key": uuid4().hex,
    }
    answer = api.call("POST", "/v1/usage", "write", json=event)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text


def listed(api: Api, system: System, **params: Any) -> list[dict[str, Any]]:
    system.sync()
    answer = api.call("GET", "/v1/alerts", "read", params=params)
    assert answer.status_code == 200, answer.text
    alerts: list[dict[str, Any]] = answer.json()["alerts"]
    return alerts


def test_create_list_what_fired_and_delete(acme: Api, system: System) -> None:
    created = acme.call(
        "POST",
        "/v1/alerts",
        "write",
        json={**USAGE, "thresholds": [{"percent": 80}, {"units": 100}]},
    )
    assert created.status_code == 201, created.text
    alert = created.json()
    assert (alert["kind"], alert["tenant_id"], alert["feature_key"]) == ("usage", "t1", "api")
    assert alert["thresholds"] == [{"percent": 80}, {"units": 100}] and alert["deleted"] is False
    budget = acme.call("POST", "/v1/alerts", "write", json=BUDGET)
    assert budget.status_code == 201 and budget.json()["alert_key"] == "budget"
    assert budget.json()["tenant_id"] is None
    assert_error(acme.call("POST", "/v1/alerts", json=BUDGET), 409, "already_exists", "alert_key")

    use(acme, "t1", 85)
    use(acme, "t2", 100)  # t2 is not watched by the usage alert
    alerts = listed(acme, system)
    assert [a["alert_id"] for a in alerts] == [alert["alert_id"], budget.json()["alert_id"]]
    (trigger,) = alerts[0]["triggered"]
    assert trigger["tenant_id"] == "t1" and trigger["threshold"] == {"percent": 80}
    assert (trigger["value"], trigger["limit"], trigger["currency"]) == (85, 100, None)
    assert trigger["period"] == {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}
    assert trigger["source_position"] < trigger["position"]
    assert alerts[1]["triggered"] == []  # 10.00 of the fee, under the 50.00 budget
    use(acme, "t1", 15)
    assert [t["threshold"] for t in listed(acme, system)[0]["triggered"]] == [
        {"percent": 80},
        {"units": 100},
    ]
    assert [a["alert_key"] for a in listed(acme, system, tenant_id="t2")] == ["budget"]

    deleted = acme.call("DELETE", f"/v1/alerts/{alert['alert_id']}", "write")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True, deleted.text
    assert [a["alert_key"] for a in listed(acme, system)] == ["budget"]
    every = listed(acme, system, include_deleted="true")
    assert [a["deleted"] for a in every] == [True, False] and every[0]["deleted_at"]
    assert len(every[0]["triggered"]) == 2  # what it fired stays on record
    again = acme.call("DELETE", f"/v1/alerts/{alert['alert_id']}", "write")
    assert_error(again, 404, "not_found", "alert_id")
    assert_error(
        acme.call("DELETE", f"/v1/alerts/{uuid4()}", "write"), 404, "not_found", "alert_id"
    )
    assert acme.call("DELETE", "/v1/alerts/not-a-uuid", "write").status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**USAGE, "kind": "weather"}, "kind"),
        ({k: v for k, v in USAGE.items() if k != "kind"}, "kind"),
        ({k: v for k, v in USAGE.items() if k != "feature_key"}, "feature_key"),
        ({**BUDGET, "feature_key": "api"}, "feature_key"),
        ({**USAGE, "thresholds": []}, "thresholds"),
        ({**USAGE, "thresholds": [{"units": n} for n in range(1, 12)]}, "thresholds"),
        ({**USAGE, "thresholds": [{"percent": 80}, {"percent": 80}]}, "thresholds.1"),
        ({**USAGE, "thresholds": [{"percent": 0}]}, "thresholds.0.percent"),
        ({**USAGE, "thresholds": [{"percent": 80.0}]}, "thresholds.0.percent"),
        ({**USAGE, "thresholds": [{"units": "5"}]}, "thresholds.0.units"),
        ({**USAGE, "thresholds": [{"units": -5}]}, "thresholds.0.units"),
        ({**USAGE, "thresholds": [{}]}, "thresholds.0"),
        (
            {**USAGE, "thresholds": [{"amount": {"amount": 5, "currency": "USD"}}]},
            "thresholds.0.amount",
        ),
        ({**BUDGET, "thresholds": [{"percent": 80}]}, "thresholds.0.amount"),
        (
            {**BUDGET, "thresholds": [{"amount": {"amount": 0, "currency": "USD"}}]},
            "thresholds.0.amount",
        ),
        (
            {
                **BUDGET,
                "thresholds": [
                    {"amount": {"amount": 5, "currency": "USD"}},
                    {"amount": {"amount": 5, "currency": "EUR"}},
                ],
            },
            "thresholds.1.amount.currency",
        ),
        ({**USAGE, "tenant_id": "not a tenant"}, "tenant_id"),
        ({**USAGE, "alert_key": "Not A Key"}, "alert_key"),
        ({**USAGE, "app_id": "acme"}, "app_id"),
        ({**USAGE, "thresholds": [{"units": 2**70}]}, "thresholds.0.units"),
    ],
)
def test_bad_input_is_422_naming_the_field(acme: Api, body: dict[str, Any], field: str) -> None:
    answer = acme.call("POST", "/v1/alerts", "write", json=body)
    assert_error(answer, 422, "validation_error", field)


def test_scopes_and_keys(acme: Api, client: TestClient) -> None:
    assert_error(acme.call("POST", "/v1/alerts", "read", json=USAGE), 403, "forbidden")
    created = acme.call("POST", "/v1/alerts", "write", json=USAGE).json()
    path = f"/v1/alerts/{created['alert_id']}"
    assert_error(acme.call("DELETE", path, "read"), 403, "forbidden")
    assert client.get("/v1/alerts").status_code == 401
    assert acme.call("GET", "/v1/alerts", "read").status_code == 200


def test_another_app_never_sees_or_deletes_them(acme: Api, globex: Api, system: System) -> None:
    created = acme.call("POST", "/v1/alerts", "write", json=USAGE).json()
    assert listed(globex, system) == []
    gone = globex.call("DELETE", f"/v1/alerts/{created['alert_id']}", "write")
    assert_error(gone, 404, "not_found", "alert_id")
    theirs = globex.call(
        "POST", "/v1/alerts", "write", json={**USAGE, "thresholds": [{"units": 1}]}
    )
    assert theirs.status_code == 201
    use(acme, "t1", 90)  # acme's usage: acme's alert fires, globex's alert of "t1" does not
    assert [len(a["triggered"]) for a in listed(acme, system)] == [1]
    assert [len(a["triggered"]) for a in listed(globex, system)] == [0]


def test_a_retried_create_answers_the_first_alert(acme: Api, system: System) -> None:
    headers = {"Idempotency-Key": "create-once"}
    first = acme.call("POST", "/v1/alerts", "write", json=USAGE, headers=headers)
    replay = acme.call("POST", "/v1/alerts", "write", json=USAGE, headers=headers)
    assert first.status_code == 201 and replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert len(listed(acme, system)) == 1


def test_the_generic_command_route_runs_them(acme: Api, system: System) -> None:
    created = acme.call("POST", "/v1/commands/create_alert", "write", json=BUDGET)
    assert created.status_code == 200 and created.json()["ok"], created.text
    alert_id = created.json()["result"]["alert_id"]
    deleted = acme.call("POST", "/v1/commands/delete_alert", "write", json={"alert_id": alert_id})
    assert deleted.json()["result"]["deleted"] is True
    hidden = acme.call("POST", "/v1/commands/record_alert_triggers", "write", json={})
    assert_error(hidden, 404, "unknown_command")
