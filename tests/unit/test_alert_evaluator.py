"""The evaluator's batch on hand-made envelopes: rules follow the log, usage events are matched
by name (the older QuotaConsumed and UsageRecorded alike), periods open at a reset or a credit,
and a burst keeps one observation per threshold crossed."""

from __future__ import annotations

from itertools import count
from typing import Any
from uuid import UUID, uuid4

from adapters.alerts.evaluator import Batch, Epoch, EpochKey
from projections.envelope import EventEnvelope

APP = "acme"
ALERT = UUID(int=7)
JAN = {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}
positions = count(1)


def envelope(
    type_: str, data: dict[str, Any], *, tenant: str | None = "t1", aggregate: UUID | None = None
) -> EventEnvelope:
    return EventEnvelope(
        id=uuid4(),
        type=type_,
        position=next(positions),
        aggregate_id=aggregate or uuid4(),
        aggregate_type="x",
        version=1,
        app_id=APP,
        tenant_id=tenant,
        occurred_at="2026-01-05T00:00:00Z",
        recorded_at=None,
        schema_version=1,
        data=data,
    )


def created(kind: str, thresholds: list[dict[str, Any]], **data: Any) -> EventEnvelope:
    tenant = data.pop("tenant", "t1")
    body = {"alert_key": "a", "kind": kind, "thresholds": thresholds, **data}
    return envelope("AlertCreated", body, tenant=tenant, aggregate=ALERT)


def used(type_: str, value: int, tenant: str = "t1", window: Any = JAN) -> EventEnvelope:
    data = {"feature_key": "api", "used": value, "limit": 100, "window": window}
    return envelope(type_, data, tenant=tenant)


def batch(stored: dict[EpochKey, Epoch] | None = None) -> Batch:
    known = stored or {}
    return Batch(rules={}, load_epoch=known.get)


def seen(found: Batch) -> list[tuple[str, int, str, int]]:
    return [
        (o.tenant_id, o.value, o.period_key, o.rank)
        for observations in found.observations.values()
        for o in observations
    ]


def test_both_usage_event_names_are_observed_and_a_burst_keeps_one_per_threshold() -> None:
    run = batch()
    run.feed(created("usage", [{"percent": 80}, {"percent": 100}], feature_key="api"))
    first = used("QuotaConsumed", 85)
    run.feed(first)
    for value in (86, 90, 99):
        run.feed(used("UsageRecorded", value))
    full = used("UsageRecorded", 100)
    run.feed(full)
    run.feed(used("UsageRecorded", 120))
    period = f"{JAN['start']}/{JAN['end']}@{first.position}"
    assert seen(run) == [("t1", 85, period, first.position), ("t1", 100, period, first.position)]
    assert [o.source_position for o in run.observations[ALERT]] == [first.position, full.position]
    key = (APP, "t1", "usage:api")
    assert key in run.epoch_writes and run.epochs[key] == Epoch(
        period=f"{JAN['start']}/{JAN['end']}", epoch=first.position, opened_at=first.occurred_at
    )


def test_another_feature_another_tenant_or_app_is_not_observed() -> None:
    run = batch()
    run.feed(created("usage", [{"units": 5}], feature_key="api"))
    run.feed(envelope("UsageRecorded", {"feature_key": "storage", "used": 50, "limit": None}))
    run.feed(used("UsageRecorded", 50, tenant="t2"))
    other = used("UsageRecorded", 50)
    other = other.model_copy(update={"app_id": "globex"})
    run.feed(other)
    assert seen(run) == []


def test_a_reset_opens_a_new_period_in_the_same_window() -> None:
    known = {
        (APP, "t1", "usage:api"): Epoch(
            period=f"{JAN['start']}/{JAN['end']}", epoch=3, opened_at="2026-01-01T00:00:00Z"
        )
    }
    run = batch(known)
    run.feed(created("usage", [{"percent": 80}], feature_key="api"))
    run.feed(used("UsageRecorded", 90))
    reset = envelope("QuotaReset", {"feature_key": "api", "window": JAN})
    run.feed(reset)
    run.feed(used("UsageRecorded", 80))
    assert [(value, rank) for _, value, _, rank in seen(run)] == [(90, 3), (80, reset.position)]


def test_rules_follow_the_log_a_deleted_alert_is_not_observed() -> None:
    run = batch()
    run.feed(used("UsageRecorded", 90))  # before the alert existed
    run.feed(created("usage", [{"percent": 80}], feature_key="api", tenant=None))
    run.feed(used("UsageRecorded", 95, tenant="t2"))
    run.feed(envelope("AlertDeleted", {"alert_key": "a"}, tenant=None, aggregate=ALERT))
    run.feed(used("UsageRecorded", 99, tenant="t3"))
    assert [(tenant, value) for tenant, value, _, _ in seen(run)] == [("t2", 95)]
    assert run.rules == {APP: {}} and run.rule_writes[(APP, ALERT)] is None


def test_spend_is_noted_once_per_tenant_with_its_last_usage_event() -> None:
    run = batch()
    run.feed(created("spend", [{"amount": {"amount": 500, "currency": "USD"}}], tenant=None))
    for value in (1, 2, 3):
        run.feed(used("UsageRecorded", value, tenant="t1"))
    last = used("UsageRecorded", 9, tenant="t2")
    run.feed(last)
    assert sorted(run.spend_due) == [(APP, "t1"), (APP, "t2")]
    assert run.spend_due[(APP, "t2")][0] is last


def test_a_credit_threshold_re_arms_when_the_balance_rises_above_it() -> None:
    run = batch()
    thresholds = [{"amount": {"amount": n, "currency": "USD"}} for n in (1000, 400)]
    run.feed(created("credit_balance", thresholds))

    def moved(kind: str, amount: int, balance: int) -> EventEnvelope:
        money = {"amount": {"amount": amount, "currency": "USD"}}
        data = {**money, "balance": {"amount": balance, "currency": "USD"}, "reason": "x"}
        found = envelope(kind, data)
        run.feed(found)
        return found

    opened = moved("CreditBalanceOpened", 3000, 3000)  # rises above both
    low = moved("CreditBalanceMoved", -2500, 500)  # at or below 1000
    moved("CreditBalanceMoved", 200, 700)  # stays below 1000: still its period
    lower = moved("CreditBalanceMoved", -350, 350)  # at or below 400 too
    rise = moved("CreditBalanceMoved", 300, 650)  # above 400 again: 400 re-arms
    again = moved("CreditBalanceMoved", -300, 350)
    observed = [
        (o.threshold_key, o.value, o.rank, o.source_position) for o in run.observations[ALERT]
    ]
    assert observed == [
        ("amount:USD:1000", 500, opened.position, low.position),
        ("amount:USD:400", 350, opened.position, lower.position),
        ("amount:USD:400", 350, rise.position, again.position),
    ]
    assert {o.subject for o in run.observations[ALERT]} == {
        "t1:amount:USD:1000",
        "t1:amount:USD:400",
    }
    euro = envelope(
        "CreditBalanceOpened",
        {"amount": {"amount": 5, "currency": "EUR"}, "balance": {"amount": 5, "currency": "EUR"}},
    )
    run.feed(euro)  # another currency: not these thresholds
    assert len(run.observations[ALERT]) == 3
