"""Late usage: usage timed in a period already invoiced is billed as an adjustment line on
the next invoice (citing the usage facts), never by editing the finalized invoice; each late
fact is corrected once.

Worked example (Lago, "Late events": https://docs.getlago.com/guide/events/ingesting-usage —
events with a past timestamp are attached to the billing period their timestamp names; and
Kill Bill invoice adjustments, https://docs.killbill.io/latest/invoice_subsystem.html, where a
repair on a later invoice corrects an earlier one): 10 units at 25 cents in January billed on
Feb 1 as 250; 4 more units timed January 20 arrive on Feb 3: the March 1 invoice carries
+100 for January besides February's own usage."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from domain.clock import SettableClock
from tests.factories import T0
from tests.unit.http.support import Api

PLAN = {
    "plan_key": "meter",
    "name": "Metered",
    "base_price": {"amount": 1000, "currency": "USD"},
    "base_fee_timing": "in_arrears",
    "features": [
        {
            "key": "api",
            "kind": "metered",
            "enforcement": "soft",
            "overage": {"model": "per_unit", "unit_price": {"amount": 25, "currency": "USD"}},
        }
    ],
}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def use(acme: Api, quantity: int, key: str, at: Any = None, status: str = "accepted") -> None:
    event: dict[str, Any] = {"tenant_id": "t1", "feature_key": "api", "quantity": quantity}
    if at is not None:
        event["timestamp"] = at.isoformat()
    answer = ok(acme.call("POST", "/v1/usage", json={**event, "idempotency_key": key}))
    assert answer["results"][0]["status"] == status


def run(acme: Api, clock: SettableClock, days: int) -> None:
    clock.set(T0 + timedelta(days=days))
    ok(acme.call("POST", "/v1/billing-runs", json={"until": clock.now().isoformat()}))


def subscribe(acme: Api, plan: dict[str, Any]) -> None:
    ok(acme.call("POST", "/v1/plans", json=plan), 201)
    body = {"tenant_id": "t1", "plan_key": plan["plan_key"]}
    ok(acme.call("POST", "/v1/subscriptions", json=body), 201)


def invoices(acme: Api) -> list[dict[str, Any]]:
    listed = ok(acme.call("GET", "/v1/invoices?tenant_id=t1"))["invoices"]
    return sorted(listed, key=lambda invoice: invoice["number"] or 0)


def kinds(invoice: dict[str, Any]) -> list[tuple[str, int]]:
    return [(line["kind"], line["amount"]["amount"]) for line in invoice["lines"]]


def test_late_usage_is_an_adjustment_on_the_next_invoice_once(
    acme: Api, clock: SettableClock
) -> None:
    subscribe(acme, PLAN)
    clock.set(T0 + timedelta(days=10))
    use(acme, 10, "jan-1")
    run(acme, clock, 31)  # Feb 1: January billed
    [january] = invoices(acme)
    assert kinds(january) == [("base_fee", 1000), ("usage", 250)]

    clock.set(T0 + timedelta(days=33))  # Feb 3
    use(acme, 4, "jan-late", at=T0 + timedelta(days=19))  # timed January 20: late
    use(acme, 2, "feb-1")
    upcoming = ok(
        acme.call("GET", f"/v1/subscriptions/{january['subscription_id']}/upcoming-invoice")
    )
    assert ("adjustment", 100) in kinds(upcoming)

    run(acme, clock, 59)  # Mar 1: February billed, January corrected
    january_again, february = invoices(acme)
    assert january_again["lines"] == january["lines"]  # the finalized invoice is untouched
    assert kinds(february) == [("base_fee", 1000), ("usage", 50), ("adjustment", 100)]
    adjustment = february["lines"][2]
    assert adjustment["adjusts"] == january["invoice_id"]
    assert adjustment["period"] == january["lines"][1]["period"]
    explained = ok(acme.call("GET", f"/v1/invoices/{february['invoice_id']}/explain"))
    cited = explained["lines"][2]["events"]
    assert {event["idempotency_key"] for event in cited} == {"jan-1", "jan-late"}

    run(acme, clock, 90)  # Apr 1: nothing late any more, nothing corrected again
    march = invoices(acme)[-1]
    assert kinds(march) == [("base_fee", 1000), ("usage", 0)]  # no adjustment again


def test_a_recompute_finding_no_change_adds_no_line(acme: Api, clock: SettableClock) -> None:
    subscribe(acme, PLAN)
    clock.set(T0 + timedelta(days=10))
    use(acme, 3, "a")
    run(acme, clock, 31)
    clock.set(T0 + timedelta(days=40))
    use(acme, 3, "a", at=T0 + timedelta(days=10), status="duplicate")  # billed already
    run(acme, clock, 59)
    assert kinds(invoices(acme)[-1]) == [("base_fee", 1000), ("usage", 0)]


def test_recompute_shows_the_late_usage_beside_what_was_billed(
    acme: Api, clock: SettableClock
) -> None:
    subscribe(acme, PLAN)
    clock.set(T0 + timedelta(days=10))
    use(acme, 10, "jan-1")
    run(acme, clock, 31)
    [january] = invoices(acme)
    before = ok(acme.call("GET", f"/v1/invoices/{january['invoice_id']}/recompute"))
    [api] = before["features"]
    assert (api["billed"]["amount"], api["recomputed"]["amount"]) == (250, 250)
    assert api["difference"]["amount"] == 0 and api["late_event_ids"] == []
    clock.set(T0 + timedelta(days=33))
    use(acme, 4, "jan-late", at=T0 + timedelta(days=19))
    after = ok(acme.call("GET", f"/v1/invoices/{january['invoice_id']}/recompute"))
    [api] = after["features"]
    assert (api["recomputed"]["amount"], api["difference"]["amount"]) == (350, 100)
    assert api["quantity"] == 14 and len(api["late_event_ids"]) == 1
    assert (
        ok(acme.call("GET", f"/v1/invoices/{january['invoice_id']}"))["lines"] == january["lines"]
    )


LATEST = {
    **PLAN,
    "plan_key": "gauge",
    "features": [{**PLAN["features"][0], "meter": "latest"}],
}


def test_late_usage_that_lowers_the_amount_is_a_credit_note_on_the_billed_invoice(
    acme: Api, clock: SettableClock
) -> None:
    subscribe(acme, LATEST)
    clock.set(T0 + timedelta(days=19))
    use(acme, 10, "jan-20")  # the latest reading of January: 10 units
    run(acme, clock, 31)
    [january] = invoices(acme)
    assert kinds(january) == [("base_fee", 1000), ("usage", 250)]
    clock.set(T0 + timedelta(days=33))
    use(acme, 4, "jan-25", at=T0 + timedelta(days=24))  # a later reading, arriving late: 4
    run(acme, clock, 59)
    notes = ok(acme.call("GET", "/v1/credit-notes?tenant_id=t1"))["credit_notes"]
    assert len(notes) == 1 and notes[0]["invoice_id"] == january["invoice_id"]
    assert notes[0]["total"]["amount"] == 150  # 10 -> 4 units at 25 cents
    corrected = ok(acme.call("GET", f"/v1/invoices/{january['invoice_id']}"))
    assert corrected["amount_due"]["amount"] == 1250 - 150  # open: the amount due went down
    february = invoices(acme)[-1]
    assert all(kind != "adjustment" for kind, _ in kinds(february))
    run(acme, clock, 90)
    assert len(ok(acme.call("GET", "/v1/credit-notes?tenant_id=t1"))["credit_notes"]) == 1


def test_late_usage_inside_a_true_up_owes_nothing_and_beyond_it_the_excess(
    acme: Api, clock: SettableClock
) -> None:
    """Found in review: late usage was billed on top of the minimum the true-up had covered.
    A $50 minimum, $10 fee, $0.25 a unit: January billed 40 units ($10) + a $30 true-up."""
    plan = {**PLAN, "minimum_spend": {"amount": 5000, "currency": "USD"}}
    subscribe(acme, plan)
    clock.set(T0 + timedelta(days=10))
    use(acme, 40, "jan-1")
    run(acme, clock, 31)
    [january] = invoices(acme)
    assert january["total"]["amount"] == 5000
    clock.set(T0 + timedelta(days=33))
    use(acme, 40, "jan-late-1", at=T0 + timedelta(days=19))  # January now $30: still under $50
    run(acme, clock, 59)
    february = invoices(acme)[-1]
    assert all(kind != "adjustment" for kind, _ in kinds(february))
    clock.set(T0 + timedelta(days=61))
    use(acme, 120, "jan-late-2", at=T0 + timedelta(days=27))  # January now $60: $10 over
    run(acme, clock, 90)
    march = invoices(acme)[-1]
    assert [amount for kind, amount in kinds(march) if kind == "adjustment"] == [1000]
