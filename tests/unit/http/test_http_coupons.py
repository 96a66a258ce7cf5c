"""The coupon routes in process (FastAPI TestClient on the embedded SQLite system): create,
list, read, attach to a subscription, start a subscription with a coupon; scopes, app
isolation and the error shape."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from adapters.bootstrap import System
from domain.discount import SubscriptionDiscounts, subscription_discounts_id
from domain.money import Money
from tests.unit.http.support import Api, assert_error

PLAN = {"plan_key": "pro", "name": "Pro", "base_price": {"amount": 4900, "currency": "USD"}}
SAVE = {"code": "save", "percent_off": "12.5", "duration": "forever"}


@pytest.fixture
def acme(client: TestClient, system: System) -> Api:
    api = Api(client, system, "acme")
    assert api.call("POST", "/v1/plans", json=PLAN).status_code == 201
    return api


def subscribe(api: Api, tenant: str, **extra: Any) -> Any:
    return api.call(
        "POST", "/v1/subscriptions", "write", json={"tenant_id": tenant, "plan_key": "pro", **extra}
    )


def test_create_list_and_read_coupons(acme: Api) -> None:
    created = acme.call("POST", "/v1/coupons", json=SAVE)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["code"], body["percent_off"], body["duration"]) == ("save", "12.5", "forever")
    assert body["carry_forward"] is False and body["redemption_count"] == 0
    fixed = {
        "code": "fixed",
        "amount_off": {"amount": 5000, "currency": "USD"},
        "duration": "once",
        "carry_forward": True,
        "max_redemptions": 10,
        "valid_until": "2026-06-01T00:00:00Z",
    }
    assert acme.call("POST", "/v1/coupons", json=fixed).json()["carry_forward"] is True
    whole = acme.call("POST", "/v1/coupons", json={"code": "whole", "percent_off": 20})
    assert whole.json()["percent_off"] == 20
    listed = acme.call("GET", "/v1/coupons", "read").json()["coupons"]
    assert [c["code"] for c in listed] == ["save", "fixed", "whole"]
    assert acme.call("GET", "/v1/coupons?limit=1", "read").json()["coupons"][0]["code"] == "save"
    one = acme.call("GET", "/v1/coupons/fixed", "read")
    assert one.status_code == 200 and one.json()["amount_off"] == {
        "amount": 5000,
        "currency": "USD",
    }
    acme.call("POST", "/v1/commands/deactivate_coupon", json={"code": "whole"})
    active = acme.call("GET", "/v1/coupons?active=true", "read").json()["coupons"]
    assert [c["code"] for c in active] == ["save", "fixed"]
    off = acme.call("GET", "/v1/coupons?active=false", "read").json()["coupons"]
    assert [c["code"] for c in off] == ["whole"]
    assert_error(acme.call("POST", "/v1/coupons", json=SAVE), 409, "already_exists", "code")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**SAVE, "percent_off": "0"}, "percent_off"),
        ({**SAVE, "percent_off": "100.5"}, "percent_off"),
        ({**SAVE, "percent_off": 12.5}, "percent_off"),  # a JSON float is not exact
        ({**SAVE, "percent_off": "ten"}, "percent_off"),
        ({**SAVE, "percent_off": 0}, "percent_off"),
        ({**SAVE, "duration": "weekly"}, "duration"),
        ({**SAVE, "valid_from": "2026-01-01T00:00:00"}, "valid_from"),
        ({**SAVE, "app_id": "acme"}, "app_id"),
        ({**SAVE, "code": "Not A Slug"}, "code"),
        ({**SAVE, "carry_forward": "maybe"}, "carry_forward"),
    ],
)
def test_create_refuses_bad_input_naming_the_field(
    acme: Api, body: dict[str, Any], field: str
) -> None:
    assert_error(acme.call("POST", "/v1/coupons", json=body), 422, "validation_error", field)


def test_create_refuses_inconsistent_terms(acme: Api) -> None:
    carry = {**SAVE, "carry_forward": True}
    assert_error(
        acme.call("POST", "/v1/coupons", json=carry), 422, "invalid_value", "carry_forward"
    )
    both = {**SAVE, "amount_off": {"amount": 100, "currency": "USD"}}
    assert_error(acme.call("POST", "/v1/coupons", json=both), 422, "invalid_value", "percent_off")


def test_scopes_and_isolation(acme: Api, globex: Api) -> None:
    assert_error(acme.call("POST", "/v1/coupons", "write", json=SAVE), 403, "forbidden")
    assert acme.call("POST", "/v1/coupons", json=SAVE).status_code == 201
    assert globex.call("GET", "/v1/coupons", "read").json() == {"coupons": []}
    assert_error(globex.call("GET", "/v1/coupons/save", "read"), 404, "not_found", "code")
    assert_error(acme.call("GET", "/v1/coupons/nope", "read"), 404, "not_found", "code")
    assert_error(acme.call("GET", "/v1/coupons/Bad Code", "read"), 422, "validation_error", "code")
    sid = subscribe(acme, "t1").json()["subscription_id"]
    path = f"/v1/subscriptions/{sid}/coupons"
    assert_error(acme.call("POST", path, "read", json={"code": "save"}), 403, "forbidden")
    assert_error(
        globex.call("POST", path, "write", json={"code": "save"}),
        404,
        "not_found",
        "subscription_id",
    )
    assert acme.call("POST", path, "write", json={"code": "save"}).status_code == 201


def test_attach_a_coupon_to_a_subscription(acme: Api, system: System) -> None:
    acme.call("POST", "/v1/coupons", json=SAVE)
    sid = subscribe(acme, "t1").json()["subscription_id"]
    path = f"/v1/subscriptions/{sid}/coupons"
    attached = acme.call("POST", path, "write", json={"code": "save"})
    assert attached.status_code == 201, attached.text
    [entry] = attached.json()["coupons"]
    assert entry["description"] == "save (12.5% off)" and entry["active"] is True
    assert acme.call("GET", "/v1/coupons/save", "read").json()["redemption_count"] == 1
    discounts = system.aggregate(subscription_discounts_id("acme", UUID(sid)))
    assert isinstance(discounts, SubscriptionDiscounts)
    [line] = discounts.preview(Money(amount=4900, currency="USD"))
    assert line.amount == Money(amount=613, currency="USD")  # 612.5 -> 613, half-up
    again = acme.call("POST", path, "write", json={"code": "save"})
    assert_error(again, 409, "coupon_already_attached", "code")
    assert_error(acme.call("POST", path, "write", json={"code": "nope"}), 404, "not_found", "code")
    assert_error(acme.call("POST", path, "write", json={}), 422, "validation_error", "code")
    missing = f"/v1/subscriptions/{uuid4()}/coupons"
    assert_error(
        acme.call("POST", missing, "write", json={"code": "save"}),
        404,
        "not_found",
        "subscription_id",
    )


def test_the_same_command_id_attaches_once(acme: Api) -> None:
    acme.call("POST", "/v1/coupons", json=SAVE)
    sid = subscribe(acme, "t1").json()["subscription_id"]
    path = f"/v1/subscriptions/{sid}/coupons"
    headers = {"Idempotency-Key": "attach-1"}
    first = acme.call("POST", path, "write", json={"code": "save"}, headers=headers)
    replay = acme.call("POST", path, "write", json={"code": "save"}, headers=headers)
    assert first.status_code == 201 and replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json() == first.json()


def test_a_coupon_for_another_currency_is_422_naming_the_field(acme: Api) -> None:
    euros = {"code": "euros", "amount_off": {"amount": 500, "currency": "EUR"}}
    assert acme.call("POST", "/v1/coupons", json=euros).status_code == 201
    sid = subscribe(acme, "t1").json()["subscription_id"]
    refused = acme.call("POST", f"/v1/subscriptions/{sid}/coupons", "write", json={"code": "euros"})
    assert_error(refused, 422, "currency_mismatch", "code")
    assert "amount_off" in refused.json()["error"]["message"]
    at_start = subscribe(acme, "t2", coupon="euros")
    assert_error(at_start, 422, "currency_mismatch", "coupon")
    assert acme.call("GET", "/v1/coupons/euros", "read").json()["redemption_count"] == 0


def test_start_a_subscription_with_a_coupon(acme: Api, system: System) -> None:
    capped = {"code": "first", "percent_off": 50, "duration": "once", "max_redemptions": 1}
    acme.call("POST", "/v1/coupons", json=capped)
    started = subscribe(acme, "t1", coupon="first")
    assert started.status_code == 201, started.text
    assert [c["code"] for c in started.json()["coupons"]] == ["first"]
    chosen = str(uuid4())
    refused = subscribe(acme, "t2", coupon="first", subscription_id=chosen)
    assert_error(refused, 409, "coupon_not_redeemable", "coupon")
    assert_error(acme.call("GET", f"/v1/subscriptions/{chosen}", "read"), 404, "not_found")
    assert_error(subscribe(acme, "t2", coupon="Bad!"), 422, "validation_error", "coupon")
    assert subscribe(acme, "t2", subscription_id=chosen).status_code == 201  # the slot is free
