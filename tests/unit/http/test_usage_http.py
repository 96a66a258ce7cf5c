"""POST /v1/usage edges (strict integers, time window, typed events) and the usage read
model over HTTP (history of N days, current period, CSV), in process."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from adapters.bootstrap import System
from domain.clock import SettableClock
from tests.unit.http.support import Api, assert_error
from tests.unit.http.test_http_app import subscribe


def event(key: str, **extra: Any) -> dict[str, Any]:
    return {"idempotency_key": key, "tenant_id": "t1", "feature_key": "api-calls", **extra}


def post(api: Api, body: Any) -> Any:
    return api.call("POST", "/v1/usage", scope="write", json=body)


@pytest.mark.parametrize("quantity", ["5", 5.0, True, 2.5])
def test_quantity_is_a_json_integer_only(acme: Api, quantity: Any) -> None:
    subscribe(acme)
    response = post(acme, {"events": [event("a"), event("b", quantity=quantity)]})
    assert_error(response, 422, "validation_error", "events.1.quantity")
    assert post(acme, event("a")).json()["accepted"] == 1  # nothing of the refused batch counted


def test_a_timestamp_outside_the_window_refuses_the_batch_naming_the_event(
    acme: Api, clock: SettableClock
) -> None:
    subscribe(acme)
    old = (clock.now() - timedelta(days=36)).isoformat()
    response = post(acme, {"events": [event("a"), event("b", timestamp=old)]})
    assert_error(response, 422, "invalid_value", "events.1.timestamp")
    ahead = (clock.now() + timedelta(minutes=10)).isoformat()
    assert_error(
        post(acme, event("c", timestamp=ahead)), 422, "invalid_value", "events.0.timestamp"
    )
    naive = clock.now().replace(tzinfo=None).isoformat()
    assert_error(post(acme, event("d", timestamp=naive)), 422, "validation_error", "timestamp")
    assert post(acme, event("a")).json()["accepted"] == 1


def test_an_unknown_event_type_is_422_naming_it(acme: Api) -> None:
    subscribe(acme)
    typed = {"idempotency_key": "x", "tenant_id": "t1", "event_type": "teleport", "properties": {}}
    assert_error(post(acme, {"events": [typed]}), 422, "invalid_value", "events.0.event_type")


def test_history_of_n_days_current_period_and_csv(
    acme: Api, system: System, clock: SettableClock
) -> None:
    subscribe(acme)
    yesterday = (clock.now() + timedelta(days=14, hours=10)).isoformat()
    clock.advance(timedelta(days=15, hours=12))  # past the trial: the period is running
    answer = post(
        acme, {"events": [event("a", quantity=3, timestamp=yesterday), event("b", quantity=4)]}
    ).json()
    assert answer["accepted"] == 2
    system.sync()
    history = acme.call("GET", "/v1/tenants/t1/usage?days=3&feature=api-calls").json()["usage"]
    assert [row["quantity"] for row in history] == [0, 3, 4]
    current = acme.call("GET", "/v1/tenants/t1/usage/current").json()["usage"]
    assert [(row["feature"], row["quantity"]) for row in current] == [("api-calls", 7)]
    csv = acme.call("GET", "/v1/tenants/t1/usage?days=3&format=csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("feature")
    assert len(csv.text.splitlines()) == 4
    assert_error(acme.call("GET", "/v1/tenants/t1/usage?days=0"), 422, "validation_error", "days")
    entitlement = acme.call("GET", "/v1/tenants/t1/entitlements/api-calls").json()
    assert entitlement["percent_used"] == 7.0  # 7 of 100


def test_an_event_is_plain_or_typed_not_both_nor_neither(acme: Api) -> None:
    subscribe(acme)
    neither = {"idempotency_key": "n", "tenant_id": "t1"}
    assert_error(post(acme, {"events": [event("a"), neither]}), 422, "validation_error", "events.1")
    both = event("b", event_type="storage")
    assert_error(post(acme, {"events": [both]}), 422, "validation_error", "events.0")
    typed_quantity = {**neither, "event_type": "storage", "quantity": 3}
    assert_error(post(acme, typed_quantity), 422, "validation_error", "body")
