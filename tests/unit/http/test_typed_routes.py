"""The typed routes of the commands that once had only `POST /v1/commands/{name}` (issue 14):
quotas (configure, allowances, reset), payment failures and retries, coupon redemption and
deactivation, ending a trial and expiring. Each answers the command's result, refuses bad
input naming the field, needs its scope, hides other apps' data (404) and replays a
command_id; /openapi.json documents each with an example; every command of the registry has
a typed route or is listed as generic-only in docs/http-api.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.bootstrap import System
from tests.unit.http.support import Api, assert_error

ROOT = Path(__file__).resolve().parents[3]

USD = "USD"
PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 4900, "currency": USD},
    "trial_days": 14,
    "features": [{"key": "api-calls", "kind": "metered", "limit": 100}],
}
LINE = {
    "kind": "base_fee",
    "description": "Pro",
    "quantity": 1,
    "unit_amount": {"amount": 4900, "currency": USD},
}
QUOTA = "/v1/tenants/t1/quotas/api-calls"

# command name -> its typed route (the ones issue 14 added and the older ones alike)
TYPED = {
    "configure_quota": ("PUT", "/v1/tenants/{tenant_id}/quotas/{feature_key}"),
    "grant_allowance": ("POST", "/v1/tenants/{tenant_id}/quotas/{feature_key}/allowances"),
    "revoke_grant": (
        "DELETE",
        "/v1/tenants/{tenant_id}/quotas/{feature_key}/allowances/{grant_id}",
    ),
    "reset_quota": ("POST", "/v1/tenants/{tenant_id}/quotas/{feature_key}/reset"),
    "fail_invoice_payment": ("POST", "/v1/invoices/{invoice_id}/payment-failures"),
    "retry_invoice_payment": ("POST", "/v1/invoices/{invoice_id}/retry-payment"),
    "redeem_coupon": ("POST", "/v1/coupons/{code}/redemptions"),
    "deactivate_coupon": ("POST", "/v1/coupons/{code}/deactivate"),
    "end_trial": ("POST", "/v1/subscriptions/{subscription_id}/end-trial"),
    "expire_subscription": ("POST", "/v1/subscriptions/{subscription_id}/expire"),
    "add_invoice_line": ("POST", "/v1/invoices/{invoice_id}/lines"),
    "mark_invoice_uncollectible": ("POST", "/v1/invoices/{invoice_id}/uncollectible"),
    "define_plan": ("POST", "/v1/plans"),
    "start_subscription": ("POST", "/v1/subscriptions"),
    "consume_quota": ("POST", "/v1/usage"),
    "grant_feature": ("POST", "/v1/tenants/{tenant_id}/grants"),
    "create_coupon": ("POST", "/v1/coupons"),
    "attach_coupon": ("POST", "/v1/subscriptions/{subscription_id}/coupons"),
}
# sent by the billing run, dunning or the Stripe worker (and API keys by `tally keys`): the
# generic route only, as docs/http-api.md says
GENERIC_ONLY = {
    "invoice_subscription",
    "invoice_thresholds",
    "renew_subscription",
    "mark_subscription_past_due",
    "recover_subscription_payment",
    "expire_credit_grants",
    "create_api_key",
    "revoke_api_key",
    "link_payment_customer",
    "record_customer_sync",
    "link_provider_subscription",
    "link_provider_invoice",
    "record_payment_repair",
    "link_plan_price",
    "record_plan_prices_deactivated",
    "record_provider_webhook",
}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def subscribed(api: Api, tenant: str = "t1") -> dict[str, Any]:
    ok(api.call("POST", "/v1/plans", json=PLAN), 201)
    body = {"tenant_id": tenant, "plan_key": "pro"}
    return dict(ok(api.call("POST", "/v1/subscriptions", json=body), 201))


def open_invoice(api: Api, tenant: str = "t1") -> str:
    body = {"tenant_id": tenant, "currency": USD, "lines": [LINE]}
    invoice_id = ok(api.call("POST", "/v1/invoices", json=body), 201)["invoice_id"]
    ok(api.call("POST", f"/v1/invoices/{invoice_id}/finalize", scope="write"))
    return str(invoice_id)


def test_configure_a_quota_then_read_it_as_the_entitlement(acme: Api, globex: Api) -> None:
    body = {"limit": 1000, "enforcement": "soft", "period": "day"}
    quota = ok(acme.call("PUT", QUOTA, json=body))
    assert (quota["limit"], quota["enforcement"], quota["period"]) == (1000, "soft", "day")
    assert quota["tenant_id"] == "t1" and quota["feature_key"] == "api-calls"
    again = ok(acme.call("PUT", QUOTA, json={"limit": 10}))
    assert again["limit"] == 10 and again["version"] == quota["version"] + 1
    usage = {"idempotency_key": "u1", "tenant_id": "t1", "feature_key": "api-calls"}
    assert ok(acme.call("POST", "/v1/usage", scope="write", json=usage))["accepted"] == 1
    read = ok(acme.call("GET", QUOTA, scope="read"))
    assert read["used"] == 1 and read["limit"] == 10 and read["version"] == again["version"] + 1
    assert_error(globex.call("GET", QUOTA, scope="read"), 404, "not_found", "feature_key")
    unknown = acme.call("GET", "/v1/tenants/t1/quotas/seats", scope="read")
    assert_error(unknown, 404, "not_found", "feature_key")
    # another app's key configures its own tenant t1, never acme's
    assert ok(globex.call("PUT", QUOTA, json={"limit": 3}))["used"] == 0
    assert ok(acme.call("PUT", QUOTA, json={"limit": 10}))["used"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limit": -1}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"enforcement": "maybe"}, "enforcement"),
        ({"soft_threshold_percent": 0}, "soft_threshold_percent"),
        ({"tenant_id": "t2"}, "tenant_id"),
        ({"app_id": "globex"}, "app_id"),
    ],
)
def test_a_bad_quota_is_refused_naming_the_field(
    acme: Api, body: dict[str, Any], field: str
) -> None:
    assert_error(acme.call("PUT", QUOTA, json=body), 422, "validation_error", field)


def test_quota_routes_need_the_admin_scope(acme: Api) -> None:
    assert_error(acme.call("PUT", QUOTA, scope="write", json={"limit": 1}), 403, "forbidden")
    grant = {"amount": 5, "reason": "r"}
    assert_error(
        acme.call("POST", f"{QUOTA}/allowances", scope="write", json=grant), 403, "forbidden"
    )
    assert_error(acme.call("POST", f"{QUOTA}/reset", scope="write"), 403, "forbidden")
    assert_error(acme.call("DELETE", f"{QUOTA}/allowances/g1", scope="write"), 403, "forbidden")


def test_an_allowance_raises_the_limit_until_it_is_revoked(acme: Api, globex: Api) -> None:
    subscribed(acme)
    grant = {"amount": 50, "reason": "launch week", "grant_id": "launch"}
    granted = ok(acme.call("POST", f"{QUOTA}/allowances", json=grant), 201)
    assert granted["grant_id"] == "launch" and granted["effective_limit"] == 150
    assert [g["grant_id"] for g in granted["grants"]] == ["launch"]
    # globex's key: acme's quota does not exist for it
    hidden = globex.call("POST", f"{QUOTA}/allowances", json=grant)
    assert_error(hidden, 404, "not_found", "feature_key")
    assert_error(globex.call("DELETE", f"{QUOTA}/allowances/launch"), 404, "not_found")
    assert ok(acme.call("GET", QUOTA, scope="read"))["grants"] == granted["grants"]
    revoked = ok(acme.call("DELETE", f"{QUOTA}/allowances/launch", params={"reason": "over"}))
    assert revoked["effective_limit"] == 100 and revoked["grants"] == []
    refused = acme.call("POST", f"{QUOTA}/allowances", json={"amount": 0, "reason": "x"})
    assert_error(refused, 422, "validation_error", "amount")


def test_a_reset_starts_a_new_window_unless_only_if_ended(acme: Api, globex: Api) -> None:
    subscribed(acme)
    usage = {"idempotency_key": "u1", "tenant_id": "t1", "feature_key": "api-calls"}
    ok(acme.call("POST", "/v1/usage", scope="write", json={**usage, "quantity": 7}))
    kept = ok(acme.call("POST", f"{QUOTA}/reset", json={"only_if_ended": True}))
    assert kept["reset"] is False and kept["used"] == 7
    assert_error(globex.call("POST", f"{QUOTA}/reset"), 404, "not_found", "feature_key")
    reset = ok(acme.call("POST", f"{QUOTA}/reset"))
    assert reset["reset"] is True and reset["used"] == 0


def test_a_failed_payment_then_a_retry_by_hand(acme: Api, globex: Api) -> None:
    invoice_id = open_invoice(acme)
    path = f"/v1/invoices/{invoice_id}"
    failure = {"reason": "card_declined", "next_retry_at": "2030-01-01T00:00:00+02:00"}
    assert_error(globex.call("POST", f"{path}/payment-failures", json=failure), 404, "not_found")
    failed = ok(acme.call("POST", f"{path}/payment-failures", scope="write", json=failure))
    assert failed["status"] == "open" and failed["payment_attempts"] == 1
    assert failed["last_payment_error"] == "card_declined"
    assert failed["next_retry_at"] == "2030-01-01T00:00:00+02:00"
    bad = acme.call("POST", f"{path}/payment-failures", json={"reason": ""})
    assert_error(bad, 422, "validation_error", "reason")
    assert_error(acme.call("POST", f"{path}/retry-payment", scope="write"), 403, "forbidden")
    stale = ok(acme.call("POST", f"{path}/retry-payment", json={"attempt": 1}))
    assert stale["retried"] is False and stale["invoice"]["payment_attempts"] == 1
    retried = ok(acme.call("POST", f"{path}/retry-payment", json={"attempt": 2}))
    assert retried["retried"] is True
    assert retried["invoice"]["status"] == ("paid" if retried["paid"] else "open")


def test_redeem_then_deactivate_a_coupon(acme: Api, globex: Api) -> None:
    coupon = {"code": "welcome", "percent_off": 10, "duration": "forever"}
    ok(acme.call("POST", "/v1/coupons", json=coupon), 201)
    path = "/v1/coupons/welcome"
    redeem = {"tenant_id": "t1"}
    redeemed = ok(acme.call("POST", f"{path}/redemptions", scope="write", json=redeem), 201)
    assert redeemed["redemption_count"] == 1
    twice = acme.call("POST", f"{path}/redemptions", scope="write", json={"tenant_id": "t1"})
    assert_error(twice, 409, "coupon_already_redeemed", "tenant_id")
    hidden = globex.call("POST", f"{path}/redemptions", json={"tenant_id": "t1"})
    assert_error(hidden, 404, "not_found", "code")
    assert_error(globex.call("POST", f"{path}/deactivate"), 404, "not_found", "code")
    assert_error(acme.call("POST", f"{path}/deactivate", scope="write"), 403, "forbidden")
    assert ok(acme.call("POST", f"{path}/deactivate"))["active"] is False
    assert_error(acme.call("POST", f"{path}/deactivate"), 409, "invalid_transition", "code")
    late = acme.call("POST", f"{path}/redemptions", json={"tenant_id": "t2"})
    assert_error(late, 409, "coupon_not_redeemable")


def test_end_a_trial_then_expire(acme: Api, globex: Api) -> None:
    started = subscribed(acme)
    assert started["status"] == "trialing"
    path = f"/v1/subscriptions/{started['subscription_id']}"
    hidden = globex.call("POST", f"{path}/end-trial")
    assert_error(hidden, 404, "not_found", "subscription_id")
    ended = ok(acme.call("POST", f"{path}/end-trial", scope="write"))
    assert ended["status"] == "active" and ended["trial_end"] is not None
    assert_error(acme.call("POST", f"{path}/end-trial"), 409, "invalid_transition")
    assert_error(globex.call("POST", f"{path}/expire"), 404, "not_found", "subscription_id")
    assert ok(acme.call("POST", f"{path}/expire", scope="write"))["status"] == "expired"
    assert_error(acme.call("POST", f"{path}/expire"), 409, "invalid_transition")


def test_a_command_id_replays_the_first_result(acme: Api) -> None:
    grant = {"amount": 5, "reason": "once", "command_id": "grant-1"}
    ok(acme.call("PUT", QUOTA, json={"limit": 10}))
    first = acme.call("POST", f"{QUOTA}/allowances", json=grant)
    again = acme.call("POST", f"{QUOTA}/allowances", json=grant)
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json() and again.json()["effective_limit"] == 15
    header = {"Idempotency-Key": "reset-1"}
    assert acme.call("POST", f"{QUOTA}/reset", headers=header).status_code == 200
    replay = acme.call("POST", f"{QUOTA}/reset", headers=header)
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_the_typed_route_answers_what_the_generic_route_answers(acme: Api) -> None:
    subscribed(acme)
    typed = ok(acme.call("POST", f"{QUOTA}/reset", json={"only_if_ended": True}))
    body = {"tenant_id": "t1", "feature_key": "api-calls", "only_if_ended": True}
    generic = ok(acme.call("POST", "/v1/commands/reset_quota", json=body))
    assert generic["ok"] is True and generic["result"] == typed


def test_openapi_documents_each_new_route_with_examples(acme: Api) -> None:
    document = acme.client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    for name, (method, path) in TYPED.items():
        operation = document["paths"][path][method.lower()]
        assert operation["summary"], name
        for status in ("401", "403", "404", "422"):
            assert status in operation["responses"], (name, status)
    for path, method in (
        ("/v1/tenants/{tenant_id}/quotas/{feature_key}", "put"),
        ("/v1/invoices/{invoice_id}/payment-failures", "post"),
        ("/v1/coupons/{code}/redemptions", "post"),
    ):
        operation = document["paths"][path][method]
        body_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert schemas[body_ref.rsplit("/", 1)[-1]]["examples"], path
        ok_status = next(code for code in operation["responses"] if code.startswith("2"))
        reply = operation["responses"][ok_status]["content"]["application/json"]["schema"]
        assert schemas[reply["$ref"].rsplit("/", 1)[-1]]["examples"], path


def test_every_command_has_a_typed_route_or_is_documented_as_generic_only(
    acme: Api, system: System
) -> None:
    untyped = set(system.bus.command_names) - set(TYPED) - GENERIC_ONLY
    assert untyped <= KNOWN_TYPED_ELSEWHERE, sorted(untyped - KNOWN_TYPED_ELSEWHERE)
    paths = acme.client.get("/openapi.json").json()["paths"]
    assert [route for route in TYPED.values() if route[0].lower() not in paths[route[1]]] == []
    docs = (ROOT / "docs" / "http-api.md").read_text(encoding="utf-8")
    generic_section = docs.split("have no typed route", 1)[1].split("\n\n", 1)[0]
    for name in GENERIC_ONLY - {"create_api_key", "revoke_api_key"}:
        assert f"`{name}`" in generic_section, name


# commands whose typed routes predate issue 14 (tests of their own cover them)
KNOWN_TYPED_ELSEWHERE = {
    "revise_plan",
    "archive_plan",
    "define_meter",
    "cancel_subscription",
    "undo_scheduled_cancel",
    "change_plan",
    "change_seats",
    "pause_subscription",
    "resume_subscription",
    "revoke_feature",
    "draft_invoice",
    "finalize_invoice",
    "pay_invoice",
    "void_invoice",
    "issue_credit_note",
    "set_billing_profile",
    "set_tax_rate",
    "configure_billing",
    "create_alert",
    "delete_alert",
    "grant_credit",
    "void_credit_grant",
}
