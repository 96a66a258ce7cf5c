"""Prepaid credits over HTTP on the embedded system: grant, list with what is left, void;
a billing run's invoice drawing two grants in order (priority 0 first, then the next);
expiry by the clock; 422 naming the field; scopes and app isolation; replay equals live.

Worked example after Stripe's credit grants (a lower priority number is drawn first, an
invoice never takes more than it owes; https://docs.stripe.com/billing/subscriptions/
usage-based/billing-credits) and Lago wallets (credits lower the amount due, the rest is
paid; https://docs.getlago.com/guide/wallet-and-prepaid-credits): a $49.00 invoice on
grants of $20.00 (priority 0) and $30.00 (priority 10) draws $20.00 then $29.00, owes $0,
and leaves $1.00.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from adapters.bootstrap import System
from adapters.eventstore.envelopes import iter_envelopes
from adapters.readmodels.sql_store import ViewStore
from projections.credits.projector import CreditsProjector
from projections.queries import QueryContext, run_query
from tests.factories import T0
from tests.unit.http.support import Api, assert_error

PLAN = {"plan_key": "pro", "name": "Pro", "base_price": {"amount": 4900, "currency": "USD"}}
PATH = "/v1/tenants/t1/credits"


def usd(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "USD"}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def grant(api: Api, amount: int, priority: int, days: int | None = None, **extra: Any) -> Any:
    body: dict[str, Any] = {"amount": usd(amount), "priority": priority, "reason": "prepaid"}
    if days is not None:
        body["expires_at"] = (T0 + timedelta(days=days)).isoformat()
    return ok(api.call("POST", PATH, "write", json={**body, **extra}), 201)


def listed(api: Api, system: System) -> dict[str, Any]:
    system.sync()
    return dict(ok(api.call("GET", PATH, "read")))


def run(api: Api, days: int) -> dict[str, Any]:
    until = (T0 + timedelta(days=days)).isoformat()
    return dict(ok(api.call("POST", "/v1/billing-runs", json={"until": until})))


def test_an_invoice_draws_two_grants_in_order_and_the_read_model_shows_what_is_left(
    acme: Api, system: System
) -> None:
    later = grant(acme, 3000, 10)
    first = grant(acme, 2000, 0, days=60)
    assert (first["remaining"], first["status"]) == (usd(2000), "active")
    assert first["actor"].startswith("api-key:")
    ok(acme.call("POST", "/v1/plans", json=PLAN), 201)
    body = {"tenant_id": "t1", "plan_key": "pro"}
    ok(acme.call("POST", "/v1/subscriptions", json=body), 201)
    upcoming = ok(acme.call("GET", "/v1/invoices?tenant_id=t1"))
    assert upcoming["invoices"] == []
    report = run(acme, 0)
    assert (report["invoiced"], report["finalized"]) == (1, 1)
    invoice = ok(acme.call("GET", "/v1/invoices?tenant_id=t1"))["invoices"][0]
    assert (invoice["total"], invoice["credits_applied"], invoice["amount_due"]) == (
        usd(4900),
        usd(4900),
        usd(0),
    )
    credits = listed(acme, system)
    assert credits["balance"] == [usd(100)]
    by_id = {g["grant_id"]: g for g in credits["grants"]}
    assert [g["grant_id"] for g in credits["grants"]] == [later["grant_id"], first["grant_id"]]
    assert (by_id[first["grant_id"]]["remaining"], by_id[first["grant_id"]]["status"]) == (
        usd(0),
        "depleted",
    )
    assert by_id[later["grant_id"]]["remaining"] == usd(100)
    drawn = [
        (g["grant_id"], m["amount"]["amount"], m["position"])
        for g in credits["grants"]
        for m in g["movements"]
        if m["kind"] == "drawn"
    ]
    assert {m[0]: m[1] for m in drawn} == {first["grant_id"]: -2000, later["grant_id"]: -2900}
    order = sorted(drawn, key=lambda m: m[2])
    assert [m[0] for m in order] == [first["grant_id"], later["grant_id"]]  # priority 0 first
    for g in credits["grants"]:
        assert sum(m["amount"]["amount"] for m in g["movements"]) == g["remaining"]["amount"]
        assert all(m["invoice_id"] == invoice["invoice_id"] for m in g["movements"][1:])
    assert_replay_equals_live(system, acme.app_id)


def test_expiry_by_the_clock_and_void(acme: Api, system: System) -> None:
    soon = grant(acme, 500, 0, days=10)
    kept = grant(acme, 700, 5)
    assert run(acme, 9)["credits_expired"] == 0
    assert run(acme, 11)["credits_expired"] == 1
    assert run(acme, 12)["credits_expired"] == 0  # once
    credits = listed(acme, system)
    assert credits["balance"] == [usd(700)]
    expired = next(g for g in credits["grants"] if g["grant_id"] == soon["grant_id"])
    assert (expired["status"], expired["remaining"]) == ("expired", usd(0))
    assert [(m["kind"], m["amount"]["amount"]) for m in expired["movements"]] == [
        ("granted", 500),
        ("expired", -500),
    ]
    assert expired["movements"][1]["occurred_at"].startswith("2026-01-11")
    voided = ok(acme.call("POST", f"{PATH}/{kept['grant_id']}/void", "write", json={}))
    assert (voided["status"], voided["remaining"]) == ("voided", usd(0))
    again = acme.call("POST", f"{PATH}/{kept['grant_id']}/void", "write")
    assert_error(again, 409, "invalid_transition", "grant_id")
    assert listed(acme, system)["balance"] == []
    assert_replay_equals_live(system, acme.app_id)


def test_bad_input_is_refused_naming_the_field(acme: Api) -> None:
    past = (T0 - timedelta(seconds=1)).isoformat()
    cases = [
        ({"amount": usd(0), "reason": "x"}, "amount"),
        ({"amount": usd(-1), "reason": "x"}, "amount"),
        ({"amount": {"amount": 5, "currency": "usd!"}, "reason": "x"}, "amount.currency"),
        ({"amount": usd(5), "priority": 101, "reason": "x"}, "priority"),
        ({"amount": usd(5), "priority": -1, "reason": "x"}, "priority"),
        ({"amount": usd(5), "priority": "1", "reason": "x"}, "priority"),
        ({"amount": usd(5), "reason": "x", "expires_at": past}, "expires_at"),
        ({"amount": usd(5), "reason": "x", "expires_at": "2027-01-01T00:00:00"}, "expires_at"),
        ({"amount": usd(5)}, "reason"),
        ({"amount": usd(5), "reason": "x", "app_id": "globex"}, "app_id"),
    ]
    for body, field in cases:
        answer = acme.call("POST", PATH, "write", json=body)
        assert answer.status_code == 422, (body, answer.text)
        fields = [d["field"] for d in answer.json()["error"]["details"]]
        assert any(f == field or f.endswith(f".{field}") for f in fields), (body, fields)


def test_scopes_isolation_and_unknown_grants(acme: Api, globex: Api, system: System) -> None:
    assert_error(
        acme.call("POST", PATH, "read", json={"amount": usd(5), "reason": "x"}), 403, "forbidden"
    )
    mine = grant(acme, 900, 0)
    assert listed(globex, system)["grants"] == []
    stolen = globex.call("POST", f"{PATH}/{mine['grant_id']}/void", "write")
    assert_error(stolen, 404, "not_found", "grant_id")
    other_tenant = acme.call("POST", f"/v1/tenants/t2/credits/{mine['grant_id']}/void", "write")
    assert_error(other_tenant, 404, "not_found", "grant_id")
    assert listed(acme, system)["balance"] == [usd(900)]


def test_a_retried_grant_runs_once(acme: Api, system: System) -> None:
    body = {"amount": usd(250), "reason": "promo"}
    headers = {"Idempotency-Key": "grant-1"}
    first = acme.call("POST", PATH, "write", json=body, headers=headers)
    second = acme.call("POST", PATH, "write", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.json() == second.json()
    assert len(listed(acme, system)["grants"]) == 1


def assert_replay_equals_live(system: System, app_id: str) -> None:
    """The credits read model rebuilt from position 0 answers as the live one."""
    system.sync()
    target = Path(str(system.settings.database_url).removeprefix("sqlite:///")).with_name(
        "replay-views.db"
    )
    replayed = ViewStore("sqlite", str(target))
    try:
        projector = CreditsProjector()
        replayed.ensure(projector)
        for envelopes in iter_envelopes(system.ledger.recorder, 0, 3):
            replayed.apply(projector, envelopes)
        ctx = QueryContext(views=replayed, now=system.clock.now)
        live = system.query("credits", app_id=app_id, tenant_id="t1")
        assert run_query(ctx, "credits", app_id=app_id, tenant_id="t1") == live
        assert live["grants"]
    finally:
        replayed.close()


def test_voiding_an_invoice_reinstates_the_credits_it_drew(acme: Api, system: System) -> None:
    """As Stripe reinstates billing credits applied to a voided invoice."""
    kept = grant(acme, 1000, 0)
    line = {"kind": "base_fee", "description": "Fee", "quantity": 1, "unit_amount": usd(700)}
    body = {"tenant_id": "t1", "currency": "USD", "lines": [line]}
    draft = ok(acme.call("POST", "/v1/invoices", "write", json=body), 201)
    final = ok(acme.call("POST", f"/v1/invoices/{draft['invoice_id']}/finalize", "write"))
    assert (final["credits_applied"], final["amount_due"]) == (usd(700), usd(0))
    assert listed(acme, system)["balance"] == [usd(300)]
    voided = acme.call(
        "POST", f"/v1/invoices/{draft['invoice_id']}/void", "write", json={"reason": "wrong"}
    )
    assert ok(voided)["status"] == "void"
    credits = listed(acme, system)
    assert credits["balance"] == [usd(1000)]
    [only] = credits["grants"]
    assert only["grant_id"] == kept["grant_id"]
    assert [(m["kind"], m["amount"]["amount"]) for m in only["movements"]] == [
        ("granted", 1000),
        ("drawn", -700),
        ("reinstated", 700),
    ]
    assert only["movements"][2]["invoice_id"] == draft["invoice_id"]
    assert_replay_equals_live(system, acme.app_id)
