"""What-if pricing over HTTP (`POST /v1/simulations/pricing`) on the embedded system: a plan
with a base fee, seats and a graduated overage, subscriptions, usage recorded with
`consume_quota`, then a draft with other tiers re-priced per tenant, exact to the cent; the
current side equals what the billing run then invoices; nothing is recorded.

Graduated tiers as Stripe defines them (each unit priced in the tier it falls into):
https://docs.stripe.com/products-prices/pricing-models#graduated-pricing"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from adapters.bootstrap import System
from tests.factories import T0
from tests.unit.http.support import Api, assert_error


def usd(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "USD"}


def graduated(*tiers: tuple[int | None, dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": "graduated",
        "tiers": [{"up_to": up_to, "unit_price": price} for up_to, price in tiers],
    }


def api_feature(overage: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "key": "api",
        "kind": "metered",
        "limit": 1000,
        "enforcement": "soft",
        "overage": overage,
        **extra,
    }


SEATS = {"key": "seats", "kind": "seats", "limit": 50, "seat_price": usd(1000)}
# 1,000 calls included; then 2 cents each up to 1,000 more, half a cent beyond
CURRENT_TIERS = graduated((1000, usd(2)), (None, {"amount_decimal": "0.5", "currency": "USD"}))
PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": usd(4900),
    "features": [api_feature(CURRENT_TIERS), SEATS],
}
OTHER = {**PLAN, "plan_key": "other", "name": "Other"}
# the draft: 59.00, and 3 cents each up to 500 billable calls, 1 cent beyond
DRAFT_TIERS = graduated((500, usd(3)), (None, usd(1)))
DRAFT = {"name": "Pro", "base_price": usd(5900), "features": [api_feature(DRAFT_TIERS), SEATS]}
JANUARY = {"start": T0.isoformat(), "end": (T0 + timedelta(days=31)).isoformat()}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def subscribe(acme: Api, tenant: str, plan_key: str = "pro") -> str:
    body = {"tenant_id": tenant, "plan_key": plan_key}
    return str(ok(acme.call("POST", "/v1/subscriptions", json=body), 201)["subscription_id"])


def consume(system: System, tenant: str, *amounts: int) -> None:
    for index, amount in enumerate(amounts):
        reply = system.dispatch(
            "consume_quota",
            {
                "app_id": "acme",
                "tenant_id": tenant,
                "feature_key": "api",
                "amount": amount,
                "idempotency_key": f"{tenant}-{index}",
            },
        )
        assert reply["ok"] and reply["result"]["allowed"], reply


def catalog(acme: Api, system: System) -> dict[str, str]:
    """pro with t1 (2,100 calls) and t2 (400 calls); t3 on another plan (5,000 calls)."""
    ok(acme.call("POST", "/v1/plans", json=PLAN), 201)
    ok(acme.call("POST", "/v1/plans", json=OTHER), 201)
    subscriptions = {tenant: subscribe(acme, tenant) for tenant in ("t1", "t2")}
    subscriptions["t3"] = subscribe(acme, "t3", "other")
    consume(system, "t1", 700, 700, 700)
    consume(system, "t2", 400)
    consume(system, "t3", 5000)
    return subscriptions


def simulate(acme: Api, scope: str = "write", **body: Any) -> Any:
    payload = {"plan_key": "pro", "draft": DRAFT, "period": JANUARY, **body}
    return acme.call("POST", "/v1/simulations/pricing", scope=scope, json=payload)


def amounts(lines: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return [(li["kind"], li["quantity"], li["amount"]["amount"]) for li in lines]


def test_a_draft_with_other_tiers_repriced_per_tenant(acme: Api, system: System) -> None:
    subscriptions = catalog(acme, system)
    head = system.ledger.recorder.max_notification_id()
    answer = ok(simulate(acme))
    assert system.ledger.recorder.max_notification_id() == head  # nothing recorded
    rows = {row["tenant_id"]: row for row in answer["tenants"]}
    assert set(rows) == {"t1", "t2"}  # t3 is on another plan
    t1, t2 = rows["t1"], rows["t2"]
    assert t1["subscription_id"] == subscriptions["t1"] and t1["current_version"] == 1
    # t1 used 2,100: 1,100 billable. Current: 1,000 x 2 + 100 x 0.5 = 2,050 cents of usage
    assert amounts(t1["lines"]["current"]) == [
        ("base_fee", 1, 4900),
        ("seats", 1, 1000),
        ("usage", 1000, 2000),
        ("usage", 100, 50),
    ]
    # draft: 500 x 3 + 600 x 1 = 2,100 cents of usage
    assert amounts(t1["lines"]["draft"]) == [
        ("base_fee", 1, 5900),
        ("seats", 1, 1000),
        ("usage", 500, 1500),
        ("usage", 600, 600),
    ]
    assert (t1["current"], t1["draft"], t1["difference"]) == (usd(7950), usd(9000), usd(1050))
    # t2 used 400 of its 1,000 included calls: the fees alone
    assert amounts(t2["lines"]["draft"]) == [("base_fee", 1, 5900), ("seats", 1, 1000)]
    assert (t2["current"], t2["draft"], t2["difference"]) == (usd(5900), usd(6900), usd(1000))
    assert answer["totals"] == {
        "USD": {
            "current": usd(13850),
            "draft": usd(15900),
            "difference": usd(2050),
            "subscriptions": 2,
        }
    }
    usage_line = t1["lines"]["current"][2]
    assert usage_line["usage"]["quantity"] == 2100 and usage_line["usage"]["events"] == 3
    assert usage_line["usage"]["included"] == 1000 and "source_event_ids" not in usage_line
    assert usage_line["period"] == answer["period"]
    assert answer["period"]["start"].startswith("2026-01-01T00:00:00")
    assert answer["draft"]["version"] == 2 and answer["draft"]["plan_key"] == "pro"
    assert answer["skipped"] == [] and answer["usage_cutoff"] >= head


def test_the_current_side_is_what_the_billing_run_invoices(acme: Api, system: System) -> None:
    catalog(acme, system)
    ok(acme.call("POST", "/v1/billing-runs", json={"until": T0.isoformat()}))
    simulated = {row["tenant_id"]: row for row in ok(simulate(acme))["tenants"]}
    until = (T0 + timedelta(days=31)).isoformat()
    ok(acme.call("POST", "/v1/billing-runs", json={"until": until}))
    for tenant in ("t1", "t2"):
        listed = ok(acme.call("GET", f"/v1/invoices?tenant_id={tenant}"))["invoices"]
        renewal = max(listed, key=lambda invoice: invoice["number"] or 0)
        # in advance: the renewal bills February's fee (the same as January's) and January's usage
        assert amounts(renewal["lines"]) == amounts(simulated[tenant]["lines"]["current"])
        assert renewal["subtotal"] == simulated[tenant]["current"]


def test_listed_tenants_only_and_those_without_a_subscription_skipped(
    acme: Api, system: System
) -> None:
    subscriptions = catalog(acme, system)
    answer = ok(simulate(acme, tenant_ids=["t2", "t3", "t9", "t2"]))
    assert [row["tenant_id"] for row in answer["tenants"]] == ["t2"]
    assert answer["skipped"] == [
        {"tenant_id": "t3", "subscription_id": None, "reason": "no_subscription"},
        {"tenant_id": "t9", "subscription_id": None, "reason": "no_subscription"},
    ]
    assert answer["totals"]["USD"]["subscriptions"] == 1
    ok(acme.call("POST", f"/v1/subscriptions/{subscriptions['t2']}/cancel", json={}))
    assert ok(simulate(acme, tenant_ids=["t2"]))["tenants"] == []  # canceled: not live


def test_the_base_fee_of_a_part_or_several_intervals(acme: Api, system: System) -> None:
    catalog(acme, system)
    half = {"start": T0.isoformat(), "end": (T0 + timedelta(days=15)).isoformat()}
    row = ok(simulate(acme, period=half, tenant_ids=["t2"]))["tenants"][0]
    # 15 days of January's 31, rounded once half-up: 4,900 x 15/31 = 2,370.97 and
    # 1,000 x 15/31 = 483.87
    assert amounts(row["lines"]["current"]) == [("base_fee", 1, 2371), ("seats", 1, 484)]
    two = {"start": T0.isoformat(), "end": (T0 + timedelta(days=59)).isoformat()}  # to March 1
    row = ok(simulate(acme, period=two, tenant_ids=["t2"]))["tenants"][0]
    assert amounts(row["lines"]["current"]) == [("base_fee", 1, 9800), ("seats", 1, 2000)]
    yearly = {**DRAFT, "interval": "year", "base_price": usd(49000)}
    row = ok(simulate(acme, draft=yearly, tenant_ids=["t2"]))["tenants"][0]
    # a month of a yearly plan: 49,000 x 31/365 = 4,161.64; seats 1,000 x 31/365 = 84.93
    assert amounts(row["lines"]["draft"]) == [("base_fee", 1, 4162), ("seats", 1, 85)]


def test_a_draft_that_counts_usage_by_another_meter(acme: Api, system: System) -> None:
    catalog(acme, system)
    per_call = {"model": "per_unit", "unit_price": usd(7)}
    counted = {**DRAFT, "features": [api_feature(per_call, meter="count", limit=1), SEATS]}
    row = ok(simulate(acme, draft=counted, tenant_ids=["t1"]))["tenants"][0]
    # t1 sent 3 events (sum 2,100): counted, 3 calls, 1 included, 2 x 7 cents
    assert amounts(row["lines"]["draft"])[2:] == [("usage", 2, 14)]
    assert amounts(row["lines"]["current"])[2:] == [("usage", 1000, 2000), ("usage", 100, 50)]


def test_bad_input_is_refused_naming_the_field(acme: Api, globex: Api, system: System) -> None:
    catalog(acme, system)
    assert_error(simulate(acme, plan_key="nope"), 404, "not_found", "plan_key")
    assert_error(simulate(globex), 404, "not_found", "plan_key")  # another app's plan
    euros = {**DRAFT, "base_price": {"amount": 5900, "currency": "EUR"}}
    euros["features"] = [SEATS | {"seat_price": {"amount": 1000, "currency": "EUR"}}]
    assert_error(simulate(acme, draft=euros), 422, "invalid_value", "draft.base_price")
    backwards = {"start": JANUARY["end"], "end": JANUARY["start"]}
    assert_error(simulate(acme, period=backwards), 422, "validation_error", "period.end")
    empty = {"start": JANUARY["start"], "end": JANUARY["start"]}
    assert_error(simulate(acme, period=empty), 422, "validation_error", "period.end")
    naive = {"start": "2026-01-01T00:00:00", "end": JANUARY["end"]}
    assert_error(simulate(acme, period=naive), 422, "validation_error", "period.start")
    many = [f"t{i}" for i in range(1001)]
    assert_error(simulate(acme, tenant_ids=many), 422, "validation_error", "tenant_ids")
    assert ok(simulate(acme, tenant_ids=many[:1000]))["tenants"] != []
    assert_error(simulate(acme, tenant_ids=["bad id"]), 422, "validation_error", "tenant_ids.0")
    assert_error(simulate(acme, draft={**DRAFT, "plan_key": "other"}), 422, "invalid_value")
    mixed = {
        **DRAFT,
        "features": [api_feature(graduated((None, {"amount": 1, "currency": "EUR"})))],
    }
    assert_error(simulate(acme, draft=mixed), 422, "validation_error", "draft")
    assert_error(simulate(acme, scope="read"), 403, "forbidden")
    assert ok(simulate(acme, scope="admin"))["tenants"] != []


def test_subscriptions_in_another_currency_than_the_draft_are_skipped(
    acme: Api, system: System
) -> None:
    subscriptions = catalog(acme, system)
    eur = {"amount": 4500, "currency": "EUR"}
    revision = {"name": "Pro", "base_price": eur}  # version 2, in euros, without features
    ok(acme.call("POST", "/v1/plans/pro/revisions", json=revision), 201)
    euro_subscription = subscribe(acme, "t4")
    answer = ok(simulate(acme, draft={"name": "Pro", "base_price": {**eur, "amount": 5000}}))
    assert [(row["tenant_id"], row["difference"]) for row in answer["tenants"]] == [
        ("t4", {"amount": 500, "currency": "EUR"})
    ]
    assert answer["tenants"][0]["subscription_id"] == euro_subscription
    assert answer["skipped"] == [
        {"tenant_id": t, "subscription_id": subscriptions[t], "reason": "currency"}
        for t in ("t1", "t2")
    ]
    assert list(answer["totals"]) == ["EUR"]
    assert_error(simulate(acme), 422, "invalid_value", "draft.base_price")  # USD draft now
