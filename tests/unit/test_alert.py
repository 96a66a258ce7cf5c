"""The Alert aggregate and its rules: terms, validation naming the field, and what fires
(once per subject and period, never for an older period, never once deleted)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from commands.alerts.create_alert import CreateAlert
from commands.edge import validation_error
from domain.alert import (
    Alert,
    AlertCreated,
    AlertDeleted,
    AlertKind,
    AlertTriggered,
    Observation,
    Threshold,
    alert_id,
    check_terms,
)
from domain.base import Snapshot
from domain.errors import InvalidTransition, InvalidValue
from domain.money import Money
from tests.factories import T0, cause, embedded_system

USD = "USD"


def usd(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": USD}


def usage_alert(*thresholds: dict[str, Any], tenant: str | None = "t1") -> Alert:
    return Alert.create(
        "acme",
        "api-80",
        cause(),
        kind=AlertKind.USAGE,
        thresholds=[Threshold.model_validate(t) for t in thresholds],
        tenant_id=tenant,
        feature_key="api",
    )


def seen(
    value: int,
    *,
    tenant: str = "t1",
    period: str = "jan@1",
    rank: int = 1,
    limit: int | None = 100,
    currency: str | None = None,
    position: int = 10,
) -> Observation:
    return Observation(
        tenant_id=tenant,
        subject=tenant,
        period_key=period,
        rank=rank,
        value=value,
        limit=limit,
        currency=currency,
        source_position=position,
        source_event_id=uuid4(),
        observed_at=T0,
    )


def fired(alert: Alert) -> list[tuple[str | None, str, int, str]]:
    return [
        (e.tenant_id, e.threshold.key, e.value, e.period_key)
        for e in alert.pending_events
        if isinstance(e, AlertTriggered)
    ]


# --- terms --------------------------------------------------------------------------------


def test_an_alert_id_derives_from_the_app_and_its_key() -> None:
    alert = usage_alert({"percent": 80})
    assert alert.id == alert_id("acme", "api-80") != alert_id("globex", "api-80")
    created = alert.pending_events[0]
    assert isinstance(created, AlertCreated)
    assert (created.tenant_id, created.kind, created.feature_key) == ("t1", "usage", "api")
    assert [t.model_dump(mode="json") for t in created.thresholds] == [{"percent": 80}]


@pytest.mark.parametrize(
    ("threshold", "field"),
    [
        ({}, ""),
        ({"percent": 80, "units": 5}, ""),
        ({"percent": 0}, "percent"),
        ({"percent": -5}, "percent"),
        ({"percent": 1001}, "percent"),
        ({"percent": 12.5}, "percent"),
        ({"percent": "80"}, "percent"),
        ({"percent": True}, "percent"),
        ({"units": 0}, "units"),
        ({"units": 10**15 + 1}, "units"),
        ({"amount": usd(0)}, "amount"),
        ({"amount": usd(-100)}, "amount"),
        ({"amount": {"amount": "5", "currency": USD}}, "amount.amount"),
        ({"amount": {"amount": 5, "currency": "usd"}}, "amount.currency"),
        ({"percent": 80, "extra": 1}, "extra"),
    ],
)
def test_a_threshold_is_exactly_one_positive_whole_number_or_amount(
    threshold: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        Threshold.model_validate(threshold)
    named = {d["field"] for d in validation_error(raised.value, "create_alert")["details"]}
    assert named == {field or "body"}, raised.value.errors()


def test_a_threshold_serializes_only_what_it_holds() -> None:
    assert Threshold(percent=80).model_dump(mode="json") == {"percent": 80}
    assert Threshold(units=5).key == "units:5"
    amount = Threshold(amount=Money(amount=500, currency=USD))
    assert amount.model_dump(mode="json") == {"amount": usd(500)}
    assert amount.key == "amount:USD:500"


@pytest.mark.parametrize(
    ("kind", "feature_key", "thresholds", "field"),
    [
        ("usage", None, [{"percent": 80}], "feature_key"),
        ("usage", "Not A Key", [{"percent": 80}], "feature_key"),
        ("spend", "api", [{"amount": usd(100)}], "feature_key"),
        ("credit_balance", "api", [{"amount": usd(100)}], "feature_key"),
        ("usage", "api", [], "thresholds"),
        ("usage", "api", [{"units": n} for n in range(1, 12)], "thresholds"),
        ("usage", "api", [{"percent": 80}, {"percent": 80}], "thresholds.1"),
        ("usage", "api", [{"units": 5}, {"amount": usd(100)}], "thresholds.1.amount"),
        ("spend", None, [{"percent": 80}], "thresholds.0.amount"),
        ("credit_balance", None, [{"units": 8}], "thresholds.0.amount"),
        (
            "spend",
            None,
            [{"amount": usd(100)}, {"amount": {"amount": 100, "currency": "EUR"}}],
            "thresholds.1.amount.currency",
        ),
    ],
)
def test_the_terms_rules_name_the_field(
    kind: str, feature_key: str | None, thresholds: list[dict[str, Any]], field: str
) -> None:
    parsed = [Threshold.model_validate(t) for t in thresholds]
    with pytest.raises(InvalidValue) as raised:
        check_terms(AlertKind(kind), feature_key, parsed)
    assert raised.value.field == field
    with pytest.raises(ValidationError) as refused:  # the command refuses it when built
        CreateAlert.model_validate(
            {"app_id": "acme", "kind": kind, "feature_key": feature_key, "thresholds": thresholds}
        )
    assert validation_error(refused.value, "create_alert")["details"][0]["field"] == field


def test_the_create_command_refuses_an_unknown_kind_and_names_it() -> None:
    with pytest.raises(ValidationError) as refused:
        CreateAlert.model_validate({"app_id": "acme", "kind": "weather", "thresholds": []})
    assert {e["loc"][0] for e in refused.value.errors()} >= {"kind"}


# --- firing -------------------------------------------------------------------------------


def test_each_threshold_fires_once_per_period_in_order_of_crossing() -> None:
    alert = usage_alert({"percent": 80}, {"percent": 100}, {"units": 150})
    assert alert.observe(seen(79), cause()) == []
    alert.observe(seen(85), cause())
    alert.observe(seen(90), cause())
    alert.observe(seen(160), cause())
    alert.observe(seen(200), cause())
    assert fired(alert) == [
        ("t1", "percent:80", 85, "jan@1"),
        ("t1", "percent:100", 160, "jan@1"),
        ("t1", "units:150", 160, "jan@1"),
    ]


def test_a_new_period_re_arms_and_an_older_one_fires_nothing() -> None:
    alert = usage_alert({"percent": 80})
    alert.observe(seen(80), cause())
    alert.observe(seen(80, period="feb@9", rank=9), cause())
    alert.observe(seen(99, period="jan@1", rank=1), cause())  # a redelivery of January
    alert.observe(seen(95, period="feb@9", rank=9), cause())
    assert fired(alert) == [("t1", "percent:80", 80, "jan@1"), ("t1", "percent:80", 80, "feb@9")]


def test_a_percent_needs_a_limit_and_usage_above_zero() -> None:
    alert = usage_alert({"percent": 100}, {"units": 3})
    assert alert.observe(seen(10**6, limit=None), cause())[0].threshold.key == "units:3"
    zero = usage_alert({"percent": 50})
    assert zero.observe(seen(0, limit=0), cause()) == []
    assert [e.value for e in zero.observe(seen(1, limit=0), cause())] == [1]


def test_a_percent_is_of_the_exact_limit() -> None:
    alert = usage_alert({"percent": 80})
    assert alert.observe(seen(5, limit=7), cause()) == []  # 5/7 is 71 %
    assert [e.limit for e in alert.observe(seen(6, limit=7), cause())] == [7]


def test_a_tenant_alert_watches_only_its_tenant_and_an_app_wide_one_every_tenant() -> None:
    own = usage_alert({"units": 5})
    assert own.observe(seen(9, tenant="t2"), cause()) == []
    every = usage_alert({"units": 5}, tenant=None)
    every.observe(seen(9, tenant="t2"), cause())
    every.observe(seen(7, tenant="t1"), cause())
    every.observe(seen(8, tenant="t2"), cause())
    assert fired(every) == [("t2", "units:5", 9, "jan@1"), ("t1", "units:5", 7, "jan@1")]


def test_spend_reaches_an_amount_and_a_credit_balance_falls_to_it() -> None:
    spend = Alert.create(
        "acme",
        "budget",
        cause(),
        kind=AlertKind.SPEND,
        thresholds=[Threshold(amount=Money(amount=5000, currency=USD))],
    )
    assert spend.observe(seen(4999, currency=USD), cause()) == []
    assert spend.observe(seen(9000, currency="EUR"), cause()) == []
    assert [e.value for e in spend.observe(seen(5000, currency=USD), cause())] == [5000]
    credit = Alert.create(
        "acme",
        "low-credit",
        cause(),
        kind=AlertKind.CREDIT_BALANCE,
        thresholds=[Threshold(amount=Money(amount=1000, currency=USD))],
        tenant_id="t1",
    )
    assert credit.observe(seen(1001, currency=USD), cause()) == []
    assert [e.currency for e in credit.observe(seen(1000, currency=USD), cause())] == [USD]


def test_a_deleted_alert_never_fires_and_is_deleted_once() -> None:
    alert = usage_alert({"units": 1})
    alert.delete(cause(T0 + timedelta(hours=1)))
    assert isinstance(alert.pending_events[-1], AlertDeleted)
    assert alert.due(seen(5)) == [] and alert.observe(seen(5), cause()) == []
    with pytest.raises(InvalidTransition):
        alert.delete(cause())


def test_what_fired_survives_a_snapshot() -> None:
    alert = usage_alert({"percent": 80}, {"percent": 100})
    alert.observe(seen(85), cause())
    alert.collect_events()
    restored = Snapshot.take(alert).mutate(None)
    assert isinstance(restored, Alert)
    assert restored.state == alert.state
    assert [t.key for t in restored.due(seen(100))] == ["percent:100"]


def test_the_create_command_generates_a_key_or_refuses_a_taken_one() -> None:
    system = embedded_system()
    try:
        body = {"app_id": "acme", "kind": "usage", "feature_key": "api"}
        first = system.dispatch("create_alert", {**body, "thresholds": [{"percent": 80}]})
        second = system.dispatch("create_alert", {**body, "thresholds": [{"percent": 80}]})
        assert first["ok"] and second["ok"], (first, second)
        assert first["result"]["alert_id"] != second["result"]["alert_id"]
        keyed = {**body, "alert_key": "mine", "thresholds": [{"units": 5}]}
        assert system.dispatch("create_alert", keyed)["result"]["alert_id"] == str(
            alert_id("acme", "mine")
        )
        again = system.dispatch("create_alert", keyed)
        assert again["error"]["code"] == "already_exists"
        assert again["error"]["details"][0]["field"] == "alert_key"
    finally:
        system.close()
