"""The billing engine over HTTP on the embedded system: a plan with a base fee and a graduated
overage, usage, billing runs, the invoices they make, explain, the upcoming invoice, PDF,
proration modes and seats."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.factories import T0
from tests.unit.http.support import Api

PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 4900, "currency": "USD"},
    "features": [
        {
            "key": "api",
            "kind": "metered",
            "limit": 1000,
            "enforcement": "soft",
            "overage": {
                "model": "graduated",
                "tiers": [
                    {"up_to": 1000, "unit_price": {"amount": 2, "currency": "USD"}},
                    {"up_to": None, "unit_price": {"amount_decimal": "0.5", "currency": "USD"}},
                ],
            },
        },
        {
            "key": "seats",
            "kind": "seats",
            "limit": 50,
            "seat_price": {"amount": 1000, "currency": "USD"},
        },
    ],
}
BIG = {**PLAN, "plan_key": "big", "name": "Big", "base_price": {"amount": 9900, "currency": "USD"}}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def start(acme: Api, **extra: Any) -> dict[str, Any]:
    ok(acme.call("POST", "/v1/plans", json=PLAN), 201)
    body = {"tenant_id": "t1", "plan_key": "pro", **extra}
    return dict(ok(acme.call("POST", "/v1/subscriptions", json=body), 201))


def use(acme: Api, quantity: int, key: str) -> None:
    event = {"tenant_id": "t1", "feature_key": "api", "quantity": quantity, "idempotency_key": key}
    assert ok(acme.call("POST", "/v1/usage", json=event))["accepted"] == 1


def run(acme: Api, days: int) -> dict[str, Any]:
    until = (T0 + timedelta(days=days)).isoformat()
    return dict(ok(acme.call("POST", "/v1/billing-runs", json={"until": until})))


def invoices(acme: Api) -> list[dict[str, Any]]:
    listed = ok(acme.call("GET", "/v1/invoices?tenant_id=t1"))
    return sorted(listed["invoices"], key=lambda i: i["number"] or 0)


def amounts(invoice: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(li["kind"], li["quantity"], li["amount"]["amount"]) for li in invoice["lines"]]


def test_a_period_ends_in_an_invoice_with_fee_usage_tiers_explain_and_pdf(acme: Api) -> None:
    sub = start(acme)
    first = run(acme, 0)
    assert (first["invoiced"], first["finalized"]) == (1, 1)  # the fee in advance at the start
    for i, quantity in enumerate((700, 700, 700)):
        use(acme, quantity, f"k{i}")
    report = run(acme, 31)
    assert (report["invoiced"], report["renewed"]) == (1, 1)
    assert run(acme, 31)["invoiced"] == 0  # the same run twice creates nothing
    opening, renewal = invoices(acme)
    assert opening["number_text"] == "INV-000001" and amounts(opening) == [
        ("base_fee", 1, 4900),
        ("seats", 1, 1000),
    ]
    # 2,100 calls, 1,000 included; billable 1,100: 1,000 x 2 + 100 x 0.5 = 2,050
    assert amounts(renewal) == [
        ("base_fee", 1, 4900),
        ("seats", 1, 1000),
        ("usage", 1000, 2000),
        ("usage", 100, 50),
    ]
    assert renewal["total"] == {"amount": 7950, "currency": "USD"}
    assert renewal["amount_due"] == renewal["total"] and renewal["status"] == "open"
    assert renewal["subscription_id"] == sub["subscription_id"]
    explained = ok(acme.call("GET", f"/v1/invoices/{renewal['invoice_id']}/explain"))
    usage_line = explained["lines"][2]
    assert usage_line["usage"]["quantity"] == 2100 and usage_line["usage"]["events"] == 3
    assert [e["type"] for e in usage_line["events"]] == ["UsageRecorded"] * 3
    assert all("idempotency_key" in e and "value" in e for e in usage_line["events"])
    assert all(e["position"] > 0 for e in usage_line["events"])
    assert usage_line["usage"]["last_position"] <= explained["usage_cutoff"]
    fee_events = explained["lines"][0]["events"]
    assert [e["type"] for e in fee_events] == ["SubscriptionRenewed"]
    pdf = acme.call("GET", f"/v1/invoices/{renewal['invoice_id']}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_the_upcoming_invoice_is_what_the_run_then_bills(acme: Api) -> None:
    sub = start(acme)
    run(acme, 0)
    use(acme, 1500, "k1")
    upcoming = ok(acme.call("GET", f"/v1/subscriptions/{sub['subscription_id']}/upcoming-invoice"))
    assert upcoming["status"] == "upcoming"
    run(acme, 31)
    billed = invoices(acme)[-1]
    assert amounts(billed) == [
        (li["kind"], li["quantity"], li["amount"]["amount"]) for li in upcoming["lines"]
    ]
    assert billed["total"] == upcoming["total"] == {"amount": 4900 + 1000 + 1000, "currency": "USD"}
    assert len(invoices(acme)) == 2  # the preview recorded nothing


def test_an_upgrade_mid_period_is_prorated_on_the_next_invoice(acme: Api) -> None:
    sub = start(acme)
    ok(acme.call("POST", "/v1/plans", json=BIG), 201)
    run(acme, 0)
    run(acme, 15)  # January has 31 days: 16 of them remain
    changed = ok(
        acme.call(
            "POST",
            f"/v1/subscriptions/{sub['subscription_id']}/change-plan",
            json={"plan_key": "big"},
        )
    )
    assert [p["kind"] for p in changed["pending_prorations"]] == [
        "proration_credit",
        "proration_debit",
    ]
    run(acme, 31)
    lines = amounts(invoices(acme)[-1])
    # Stripe's rule: credit the unused 16/31 of 49.00, charge 16/31 of 99.00, half-up
    assert ("proration_credit", 1, -round(4900 * 16 / 31)) in lines
    assert ("proration_debit", 1, round(9900 * 16 / 31)) in lines
    assert ("base_fee", 1, 9900) in lines


def test_always_invoice_bills_the_proration_at_once_and_none_skips_it(acme: Api) -> None:
    sub = start(acme)
    run(acme, 0)
    run(acme, 15)
    path = f"/v1/subscriptions/{sub['subscription_id']}/seats"
    reply = ok(acme.call("PUT", path, json={"quantity": 3, "proration": "always_invoice"}))
    invoice = reply["invoice"]
    assert invoice["status"] == "open" and invoice["number_text"] == "INV-000002"
    # credit the unused 16/31 of one seat, charge 16/31 of three (two lines, as Stripe)
    assert amounts(invoice) == [
        ("proration_credit", 1, -round(1000 * 16 / 31)),
        ("proration_debit", 1, round(3 * 1000 * 16 / 31)),
    ]
    assert reply["pending_prorations"] == []
    none = ok(acme.call("PUT", path, json={"quantity": 2, "proration": "none"}))
    assert none["pending_prorations"] == [] and none["seats"] == 2
    run(acme, 31)
    assert ("seats", 2, 2000) in amounts(invoices(acme)[-1])


def test_bad_seats_and_unknown_zones_name_the_field(acme: Api) -> None:
    sub = start(acme)
    too_many = acme.call(
        "PUT", f"/v1/subscriptions/{sub['subscription_id']}/seats", json={"quantity": 51}
    )
    assert too_many.status_code == 422 and too_many.json()["error"]["details"][0]["field"] == (
        "quantity"
    )
    zone = acme.call(
        "POST",
        "/v1/subscriptions",
        json={"tenant_id": "t2", "plan_key": "pro", "pricing_zone": "mars"},
    )
    assert zone.status_code == 422, zone.text
    assert zone.json()["error"]["details"][0]["field"] == "pricing_zone"


PROFILE = {
    "name": "Globex GmbH",
    "email": "billing@globex.example",
    "country": "DE",
    "tax_status": "taxable",
    "timezone": "Europe/Berlin",
    "currency": "USD",
}


def test_tax_from_the_profile_and_a_coupon_on_the_invoice(acme: Api) -> None:
    ok(acme.call("PUT", "/v1/tenants/t1/profile", json=PROFILE))
    ok(acme.call("PUT", "/v1/tax-rates/DE", json={"rate_percent": "19", "behavior": "exclusive"}))
    coupon = {"code": "save10", "percent_off": 10, "duration": "forever"}
    ok(acme.call("POST", "/v1/coupons", json=coupon), 201)
    sub = start(acme, coupon="save10")
    assert sub["timezone"] == "Europe/Berlin"
    run(acme, 0)
    [first] = invoices(acme)
    # 4900 + 1000 = 5900; 10% off = 590; tax 19% per line on the discounted nets:
    # base 4900 - 490 = 4410 -> 837.9 -> 838; seats 1000 - 100 = 900 -> 171
    assert amounts(first)[2:] == [("discount", 1, -590), ("tax", 1, 838), ("tax", 1, 171)]
    assert first["total"]["amount"] == 5900 - 590 + 838 + 171
    pdf = acme.call("GET", f"/v1/invoices/{first['invoice_id']}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_a_grace_period_keeps_the_draft_editable_until_the_run_finalizes_it(acme: Api) -> None:
    ok(acme.call("PUT", "/v1/billing-settings", json={"grace_period_hours": 24}))
    start(acme)
    run(acme, 0)
    [draft] = invoices(acme)
    assert draft["status"] == "draft" and draft["number"] is None
    line = {
        "kind": "adjustment",
        "description": "Setup",
        "quantity": 1,
        "unit_amount": {"amount": 500, "currency": "USD"},
    }
    ok(acme.call("POST", f"/v1/invoices/{draft['invoice_id']}/lines", json=line))
    report = run(acme, 1)
    assert report["finalized"] == 1
    [final] = invoices(acme)
    assert final["status"] == "open" and final["number_text"] == "INV-000001"
    assert final["total"]["amount"] == 4900 + 1000 + 500
