"""Alerts end to end on SQLite and real PostgreSQL: the evaluator follows the event log
(driven by `system.sync()`), fires each threshold once per period, again in the next window
or after a reset, never twice when the evaluator or the read model is replayed, per tenant
for an app-wide alert, never for a deleted alert; spend from the upcoming invoice, credit
balances falling to a threshold."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from itertools import count
from typing import Any
from uuid import UUID

import pytest

from adapters.alerts.evaluator import EPOCHS, EVALUATOR, RULES, AlertEvaluator
from adapters.alerts.runner import EvaluatingRunner
from adapters.billing.runs import run_billing
from adapters.bootstrap import System, bootstrap
from adapters.eventstore.envelopes import iter_envelopes
from adapters.readmodels.replay import replay
from domain.balance import CreditBalance, balance_id
from domain.clock import SettableClock
from domain.money import Money
from projections.alerts.projector import AlertsProjector
from tests.conftest import StoreSettings
from tests.factories import cause, ok

APP = "acme"
USD = "USD"
PER_UNIT = {"model": "per_unit", "unit_price": {"amount": 5, "currency": USD}}


@pytest.fixture
def quiet(store_settings: StoreSettings, clock: SettableClock) -> Iterator[System]:
    """The whole system with no background delivery: `sync()` alone drives the evaluator."""
    settings, schema = store_settings
    built = bootstrap(settings, clock, schema=schema, deliver_in_process=False)
    try:
        yield built
    finally:
        built.close()


def run(system: System, command: str, /, **payload: Any) -> dict[str, Any]:
    return ok(system.dispatch(command, {"app_id": APP, **payload}))


def plan(system: System, limit: int | None = 100, **feature: Any) -> None:
    run(
        system,
        "define_plan",
        plan_key="pro",
        name="Pro",
        base_price={"amount": 1000, "currency": USD},
        base_fee_timing="in_arrears",
        features=[
            {"key": "api", "kind": "metered", "limit": limit, "enforcement": "soft", **feature}
        ],
    )


def subscribe(system: System, *tenants: str) -> None:
    for tenant in tenants:
        run(system, "start_subscription", tenant_id=tenant, plan_key="pro")


def usage_alert(system: System, *percents: int, tenant: str | None = "t1") -> str:
    body: dict[str, Any] = {"kind": "usage", "feature_key": "api"}
    if tenant is not None:
        body["tenant_id"] = tenant
    thresholds = [{"percent": p} for p in percents]
    return str(run(system, "create_alert", thresholds=thresholds, **body)["alert_id"])


KEYS = count(1)


def evaluator_of(system: System) -> AlertEvaluator:
    assert isinstance(system.runner, EvaluatingRunner) and system.runner.alerts is not None
    return system.runner.alerts


def use(system: System, amount: int, tenant: str = "t1") -> int:
    key = f"{tenant}-{next(KEYS)}"
    result = run(
        system,
        "consume_quota",
        tenant_id=tenant,
        feature_key="api",
        amount=amount,
        idempotency_key=key,
    )
    system.sync()
    return int(result["used"])


def fired(system: System, **params: Any) -> list[tuple[Any, ...]]:
    """(alert_id, tenant, threshold, value, period start) of every trigger, in log order."""
    system.sync()
    found = [
        (
            a["alert_id"],
            t["tenant_id"],
            t["threshold"],
            t["value"],
            (t["period"] or {}).get("start"),
        )
        for a in system.query("alerts", app_id=APP, include_deleted=True, **params)
        for t in a["triggered"]
    ]
    return sorted(found, key=lambda row: str(row))


def trigger_count(system: System) -> int:
    return sum(
        len(batch) for batch in iter_envelopes(system.ledger.recorder, topics=["AlertTriggered"])
    )


JAN, FEB = "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"


def test_80_and_100_percent_fire_once_each_per_window_and_again_in_the_next(quiet: System) -> None:
    clock = quiet.clock
    assert isinstance(clock, SettableClock)
    plan(quiet)
    subscribe(quiet, "t1")
    alert = usage_alert(quiet, 80, 100)
    assert use(quiet, 50) == 50 and fired(quiet) == []
    use(quiet, 30)
    assert fired(quiet) == [(alert, "t1", {"percent": 80}, 80, JAN)]
    use(quiet, 10)
    use(quiet, 10)
    use(quiet, 25)
    january = [(alert, "t1", {"percent": 100}, 100, JAN), (alert, "t1", {"percent": 80}, 80, JAN)]
    assert fired(quiet) == january
    clock.advance(timedelta(days=31, hours=1))
    run_billing(quiet, quiet.index.ids, APP, clock, clock.now())  # renews: the quota resets
    use(quiet, 79)
    assert fired(quiet) == january
    use(quiet, 1)
    use(quiet, 40)
    assert fired(quiet) == sorted(
        [
            *january,
            (alert, "t1", {"percent": 80}, 80, FEB),
            (alert, "t1", {"percent": 100}, 120, FEB),
        ],
        key=str,
    )
    assert trigger_count(quiet) == 4


def test_a_reset_inside_the_window_re_arms_the_thresholds(quiet: System) -> None:
    plan(quiet)
    subscribe(quiet, "t1")
    alert = usage_alert(quiet, 80)
    use(quiet, 90)
    run(quiet, "reset_quota", tenant_id="t1", feature_key="api")
    use(quiet, 70)
    assert len(fired(quiet)) == 1
    use(quiet, 10)
    assert fired(quiet) == [
        (alert, "t1", {"percent": 80}, 80, JAN),
        (alert, "t1", {"percent": 80}, 90, JAN),
    ]


def test_a_hard_quota_fires_its_100_percent_at_the_limit(quiet: System) -> None:
    plan(quiet, limit=10, enforcement="hard")
    subscribe(quiet, "t1")
    alert = usage_alert(quiet, 50, 100)
    use(quiet, 6)
    use(quiet, 4)
    refused = quiet.dispatch(
        "consume_quota",
        {
            "app_id": APP,
            "tenant_id": "t1",
            "feature_key": "api",
            "amount": 1,
            "idempotency_key": "x",
        },
    )
    assert refused["ok"] and refused["result"]["allowed"] is False
    assert fired(quiet) == [
        (alert, "t1", {"percent": 100}, 10, JAN),
        (alert, "t1", {"percent": 50}, 6, JAN),
    ]


def test_units_thresholds_fire_on_an_unlimited_quota(quiet: System) -> None:
    plan(quiet, limit=None)
    subscribe(quiet, "t1")
    created = run(
        quiet,
        "create_alert",
        tenant_id="t1",
        kind="usage",
        feature_key="api",
        thresholds=[{"units": 1000}, {"percent": 50}],
    )
    use(quiet, 999)
    use(quiet, 1)
    assert fired(quiet) == [(created["alert_id"], "t1", {"units": 1000}, 1000, JAN)]


def test_replaying_the_evaluator_and_the_read_model_fires_nothing_twice(quiet: System) -> None:
    plan(quiet)
    subscribe(quiet, "t1", "t2")
    usage_alert(quiet, 80, 100, tenant=None)
    for tenant in ("t1", "t2"):
        use(quiet, 85, tenant)
        use(quiet, 20, tenant)
    run(quiet, "reset_quota", tenant_id="t1", feature_key="api")
    use(quiet, 100, "t1")
    live = fired(quiet)
    assert len(live) == 6 and trigger_count(quiet) == 6
    evaluator = evaluator_of(quiet)
    assert isinstance(evaluator, AlertEvaluator)
    with quiet.views.transaction() as conn:  # the evaluator forgets everything it knew
        quiet.views.execute(
            conn,
            f"DELETE FROM {quiet.views.physical('tracking')} WHERE projection = :name",
            {"name": EVALUATOR},
        )
        for table in (RULES, EPOCHS):
            quiet.views.execute(conn, f"DELETE FROM {quiet.views.physical(table)}")
    assert evaluator.position() == 0
    assert evaluator.evaluate() == 0
    assert evaluator.position() == quiet.views.position("usage") > 0
    assert trigger_count(quiet) == 6
    rows_before = _alert_rows(quiet)
    replay(quiet.views, quiet.ledger.recorder, AlertsProjector())
    assert _alert_rows(quiet) == rows_before
    assert fired(quiet) == live


def _alert_rows(system: System) -> dict[str, list[dict[str, Any]]]:
    return {
        table: system.views.query(f"SELECT * FROM {{{table}}} ORDER BY 1, 2, 3")
        for table in AlertsProjector.TABLES
    }


def test_an_app_wide_alert_fires_per_tenant(quiet: System) -> None:
    plan(quiet)
    subscribe(quiet, "t1", "t2")
    alert = usage_alert(quiet, 80, tenant=None)
    use(quiet, 80, "t1")
    use(quiet, 79, "t2")
    assert fired(quiet) == [(alert, "t1", {"percent": 80}, 80, JAN)]
    use(quiet, 1, "t2")
    use(quiet, 30, "t1")
    assert fired(quiet) == [
        (alert, "t1", {"percent": 80}, 80, JAN),
        (alert, "t2", {"percent": 80}, 80, JAN),
    ]
    only_t2 = quiet.query("alerts", app_id=APP, tenant_id="t2")
    assert [[t["tenant_id"] for t in a["triggered"]] for a in only_t2] == [["t2"]]
    other_app = quiet.query("alerts", app_id="globex")
    assert other_app == []


def test_a_deleted_alert_never_fires(quiet: System) -> None:
    plan(quiet)
    subscribe(quiet, "t1")
    alert = usage_alert(quiet, 80)
    kept = usage_alert(quiet, 50)
    use(quiet, 40)
    run(quiet, "delete_alert", alert_id=alert)
    use(quiet, 60)
    assert fired(quiet) == [(kept, "t1", {"percent": 50}, 100, JAN)]
    # deleted in the same evaluation batch as the usage that crosses it: still nothing
    late = usage_alert(quiet, 200)
    run(
        quiet,
        "consume_quota",
        tenant_id="t1",
        feature_key="api",
        amount=150,
        idempotency_key="late",
    )
    run(quiet, "delete_alert", alert_id=late)
    assert fired(quiet) == [(kept, "t1", {"percent": 50}, 100, JAN)]
    assert [a["alert_id"] for a in quiet.query("alerts", app_id=APP)] == [kept]
    gone = quiet.dispatch("delete_alert", {"app_id": APP, "alert_id": alert})
    assert gone["error"]["code"] == "not_found"
    assert gone["error"]["details"][0]["field"] == "alert_id"
    other = quiet.dispatch("delete_alert", {"app_id": "globex", "alert_id": kept})
    assert other["error"]["code"] == "not_found"


def test_a_spend_alert_fires_once_when_the_upcoming_invoice_crosses_it(quiet: System) -> None:
    clock = quiet.clock
    assert isinstance(clock, SettableClock)
    plan(quiet, overage=PER_UNIT)
    subscribe(quiet, "t1", "t2")
    created = run(
        quiet,
        "create_alert",
        tenant_id="t1",
        kind="spend",
        thresholds=[{"amount": {"amount": 1200, "currency": USD}}],
    )
    use(quiet, 100)  # within the 100 included: the upcoming invoice is the 10.00 fee
    use(quiet, 39)  # 1000 + 39 x 5 = 1195
    use(quiet, 150, "t2")  # another tenant: not watched
    assert fired(quiet) == []
    use(quiet, 1)
    use(quiet, 10)
    assert fired(quiet) == [
        (created["alert_id"], "t1", {"amount": {"amount": 1200, "currency": USD}}, 1200, JAN)
    ]
    subscription = quiet.query("alerts", app_id=APP)[0]["triggered"][0]
    assert subscription["currency"] == USD and subscription["period"]["end"] == FEB
    clock.advance(timedelta(days=31, hours=1))
    run_billing(quiet, quiet.index.ids, APP, clock, clock.now())
    use(quiet, 140)
    assert [row[3:] for row in fired(quiet)] == [(1200, JAN), (1200, FEB)]


def test_spend_is_priced_once_per_tenant_per_batch(
    quiet: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan(quiet, overage=PER_UNIT)
    subscribe(quiet, "t1")
    run(
        quiet,
        "create_alert",
        tenant_id="t1",
        kind="spend",
        thresholds=[{"amount": {"amount": 5000, "currency": USD}}],
    )
    quiet.sync()
    evaluator = evaluator_of(quiet)
    priced: list[str] = []
    original = evaluator._spend

    def counting(app_id: str, tenant: str, event: Any) -> Any:
        priced.append(tenant)
        return original(app_id, tenant, event)

    monkeypatch.setattr(evaluator, "_spend", counting)
    for index in range(30):
        run(
            quiet,
            "consume_quota",
            tenant_id="t1",
            feature_key="api",
            amount=50,
            idempotency_key=f"b{index}",
        )
    quiet.sync()
    assert priced == ["t1"]
    assert [row[3] for row in fired(quiet)] == [1000 + (1500 - 100) * 5]


def test_a_credit_balance_alert_fires_when_it_falls_to_the_amount_and_re_arms_above_it(
    quiet: System,
) -> None:
    created = run(
        quiet,
        "create_alert",
        tenant_id="t1",
        kind="credit_balance",
        thresholds=[
            {"amount": {"amount": 2000, "currency": USD}},
            {"amount": {"amount": 500, "currency": USD}},
        ],
    )
    invoice = UUID(int=1)

    def move(amount: int) -> None:
        money = Money(amount=amount, currency=USD)
        balance = quiet.ledger.get(_balance_id())
        if balance is None:
            balance = CreditBalance.open(APP, "t1", money, cause(), invoice_id=invoice, reason="in")
        else:
            balance.move(money, cause(), invoice_id=invoice, reason="move")
        quiet.ledger.save(balance)
        quiet.sync()

    move(5000)
    move(-2000)
    assert fired(quiet) == []
    move(-1000)  # 2000: at the threshold
    move(-100)
    values = [(row[2]["amount"]["amount"], row[3]) for row in fired(quiet)]
    assert values == [(2000, 2000)]
    move(-1500)  # 400: at or below 500 too
    move(300)  # 700: above 500 again (re-armed), still below 2000 (not)
    move(-250)  # 450
    move(4000)  # 4450: above both
    move(-3000)  # 1450
    values = sorted((row[2]["amount"]["amount"], row[3]) for row in fired(quiet))
    assert values == [(500, 400), (500, 450), (2000, 1450), (2000, 2000)]
    assert created["kind"] == "credit_balance"


def _balance_id() -> UUID:
    return balance_id(APP, "t1", USD)


def test_in_process_delivery_fires_alerts_after_the_commit(system: System) -> None:
    """The background delivery alone (no sync) evaluates and projects the trigger."""
    plan(system)
    subscribe(system, "t1")
    alert = usage_alert(system, 80)
    run(system, "consume_quota", tenant_id="t1", feature_key="api", amount=90, idempotency_key="k")
    deadline = time.monotonic() + 10
    found: list[Any] = []
    while time.monotonic() < deadline and not found:
        time.sleep(0.05)
        found = [t for a in system.query("alerts", app_id=APP) for t in a["triggered"]]
    assert [(t["threshold"], t["value"]) for t in found] == [({"percent": 80}, 90)]
    assert system.query("alerts", app_id=APP)[0]["alert_id"] == alert


def test_the_evaluator_never_passes_the_usage_read_model(quiet: System) -> None:
    plan(quiet)
    subscribe(quiet, "t1")
    usage_alert(quiet, 80)
    quiet.sync()
    evaluator = evaluator_of(quiet)
    run(quiet, "consume_quota", tenant_id="t1", feature_key="api", amount=90, idempotency_key="k")
    before = quiet.views.position("usage")
    assert evaluator.evaluate() == 0  # the usage projector has not applied the usage yet
    assert evaluator.position() == before < (quiet.ledger.recorder.max_notification_id() or 0)
    assert trigger_count(quiet) == 0
    quiet.sync()
    assert trigger_count(quiet) == 1
