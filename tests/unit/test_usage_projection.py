"""Usage totals read model through the embedded system (SQLite, events fed on sync)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.bootstrap import System
from adapters.eventstore.envelopes import read_envelopes
from adapters.readmodels.sql_store import ViewStore
from domain.clock import SettableClock
from domain.errors import InvalidValue
from projections.usage.projector import UsageProjector
from projections.usage.queries import CSV_COLUMNS, usage_csv, usage_json
from tests.factories import embedded_system

APP, TENANT = "acme", "t1"
START = datetime(2025, 12, 31, 23, 30, tzinfo=UTC)  # hour, day, month and year end ahead


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(START)


@pytest.fixture
def system(clock: SettableClock) -> Iterator[System]:
    built = embedded_system(clock)
    try:
        yield built
    finally:
        built.close()


def run(system: System, name: str, **payload: Any) -> dict[str, Any]:
    reply = system.dispatch(name, {"app_id": APP, **payload})
    assert reply["ok"], reply
    result: dict[str, Any] = reply["result"]
    return result


def configure(system: System, feature: str, **terms: Any) -> None:
    run(system, "configure_quota", tenant_id=TENANT, feature_key=feature, **terms)


def consume(system: System, feature: str, amount: int, key: str) -> dict[str, Any]:
    return run(
        system,
        "consume_quota",
        tenant_id=TENANT,
        feature_key=feature,
        amount=amount,
        idempotency_key=key,
    )


def usage(system: System, **params: Any) -> list[dict[str, Any]]:
    system.sync()
    rows: list[dict[str, Any]] = system.query("usage", app_id=APP, tenant_id=TENANT, **params)
    return rows


def quantities(rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    return {(r["feature"], r["bucket_start"]): r["quantity"] for r in rows}


def test_buckets_split_at_hour_day_month_and_year_boundaries(
    system: System, clock: SettableClock
) -> None:
    configure(system, "api_calls")
    consume(system, "api_calls", 2, "a")  # 2025-12-31 23:30
    clock.set(START + timedelta(minutes=20))  # 23:50, same hour
    consume(system, "api_calls", 3, "b")
    clock.set(datetime(2026, 1, 1, 0, 5, tzinfo=UTC))  # next hour, day, month and year
    consume(system, "api_calls", 4, "c")
    clock.set(datetime(2026, 1, 1, 1, 0, tzinfo=UTC))  # exactly on the next hour
    consume(system, "api_calls", 5, "d")
    clock.set(datetime(2026, 1, 2, 12, 0, tzinfo=UTC))
    consume(system, "api_calls", 6, "e")

    assert usage(system, granularity="hour") == [
        {
            "feature": "api_calls",
            "granularity": "hour",
            "bucket_start": "2025-12-31T23:00:00Z",
            "quantity": 5,
            "events": 2,
        },
        {
            "feature": "api_calls",
            "granularity": "hour",
            "bucket_start": "2026-01-01T00:00:00Z",
            "quantity": 4,
            "events": 1,
        },
        {
            "feature": "api_calls",
            "granularity": "hour",
            "bucket_start": "2026-01-01T01:00:00Z",
            "quantity": 5,
            "events": 1,
        },
        {
            "feature": "api_calls",
            "granularity": "hour",
            "bucket_start": "2026-01-02T12:00:00Z",
            "quantity": 6,
            "events": 1,
        },
    ]
    assert quantities(usage(system, granularity="day")) == {
        ("api_calls", "2025-12-31T00:00:00Z"): 5,
        ("api_calls", "2026-01-01T00:00:00Z"): 9,
        ("api_calls", "2026-01-02T00:00:00Z"): 6,
    }
    months = usage(system, granularity="month")
    assert [(r["bucket_start"], r["quantity"], r["events"]) for r in months] == [
        ("2025-12-01T00:00:00Z", 5, 2),
        ("2026-01-01T00:00:00Z", 15, 3),
    ]


def test_default_granularity_is_day_and_features_are_kept_apart(
    system: System, clock: SettableClock
) -> None:
    configure(system, "api_calls")
    configure(system, "storage")
    consume(system, "api_calls", 7, "a")
    consume(system, "storage", 100, "b")
    clock.advance(timedelta(days=1))
    consume(system, "storage", 50, "c")

    assert quantities(usage(system)) == {
        ("api_calls", "2025-12-31T00:00:00Z"): 7,
        ("storage", "2025-12-31T00:00:00Z"): 100,
        ("storage", "2026-01-01T00:00:00Z"): 50,
    }
    assert quantities(usage(system, feature="api_calls")) == {
        ("api_calls", "2025-12-31T00:00:00Z"): 7
    }
    # another tenant and another app see nothing of this tenant's usage
    assert system.query("usage", app_id=APP, tenant_id="t2") == []
    assert system.query("usage", app_id="other", tenant_id=TENANT) == []


def test_from_is_floored_to_its_bucket_and_to_is_exclusive(
    system: System, clock: SettableClock
) -> None:
    configure(system, "api_calls")
    for day in range(4):  # 2025-12-31 .. 2026-01-03, one consume a day
        clock.set(START + timedelta(days=day))
        consume(system, "api_calls", day + 1, f"k{day}")

    between = usage(system, granularity="day", **{"from": "2026-01-01T15:00:00Z"}, to="2026-01-03")
    assert [r["bucket_start"] for r in between] == [
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
    ]
    # a `to` inside a bucket keeps that bucket (it starts before `to`); from_ works too
    partial = usage(system, granularity="day", from_="2026-01-02", to="2026-01-03T00:00:01+00:00")
    assert [r["bucket_start"] for r in partial] == [
        "2026-01-02T00:00:00Z",
        "2026-01-03T00:00:00Z",
    ]
    # an offset is converted to UTC; a time without offset is UTC
    shifted = usage(system, granularity="hour", **{"from": "2026-01-01T00:30:00+01:00"})
    assert shifted[0]["bucket_start"] == "2025-12-31T23:00:00Z"
    assert usage(system, granularity="month", to="2026-01-01T00:00:00") == [
        {
            "feature": "api_calls",
            "granularity": "month",
            "bucket_start": "2025-12-01T00:00:00Z",
            "quantity": 1,
            "events": 1,
        }
    ]


def test_refused_and_duplicate_consumes_are_not_counted(system: System) -> None:
    configure(system, "api_calls", limit=10)
    consume(system, "api_calls", 6, "a")
    assert consume(system, "api_calls", 6, "a")["duplicate"] is True
    assert consume(system, "api_calls", 5, "b")["allowed"] is False  # hard limit
    rows = usage(system, granularity="month")
    assert [(r["quantity"], r["events"]) for r in rows] == [(6, 1)]


def test_current_period_follows_the_quota_window(system: System, clock: SettableClock) -> None:
    configure(system, "api_calls", period="day")  # windows of one day from 23:30
    configure(system, "storage", period="absolute")
    consume(system, "api_calls", 3, "a")
    consume(system, "storage", 40, "s1")
    clock.advance(timedelta(hours=1))
    consume(system, "api_calls", 4, "b")
    system.sync()
    current = system.query("usage_current_period", app_id=APP, tenant_id=TENANT)
    assert current == [
        {
            "feature": "api_calls",
            "period": "day",
            "window_start": "2025-12-31T23:30:00Z",
            "window_end": "2026-01-01T23:30:00Z",
            "quantity": 7,
            "events": 2,
            "enabled": True,
        },
        {
            "feature": "storage",
            "period": "absolute",
            "window_start": None,
            "window_end": None,
            "quantity": 40,
            "events": 1,
            "enabled": True,
        },
    ]

    # the window ended; no reset recorded yet: the window containing now, with nothing used
    clock.set(datetime(2026, 1, 2, 1, 0, tzinfo=UTC))
    [idle] = system.query("usage_current_period", app_id=APP, tenant_id=TENANT, feature="api_calls")
    assert (idle["window_start"], idle["window_end"], idle["quantity"]) == (
        "2026-01-01T23:30:00Z",
        "2026-01-02T23:30:00Z",
        0,
    )

    # the next consume resets the quota (QuotaReset) and counts in the new window
    consume(system, "api_calls", 2, "c")
    system.sync()
    [now] = system.query("usage_current_period", app_id=APP, tenant_id=TENANT, feature="api_calls")
    assert (now["window_start"], now["quantity"], now["events"]) == (
        "2026-01-01T23:30:00Z",
        2,
        1,
    )
    # the buckets keep the whole history
    assert sum(r["quantity"] for r in usage(system, feature="api_calls")) == 9


def test_history_is_the_last_n_days_zero_filled(system: System, clock: SettableClock) -> None:
    configure(system, "api_calls")
    consume(system, "api_calls", 3, "a")  # 2025-12-31
    clock.set(datetime(2026, 1, 3, 8, 0, tzinfo=UTC))
    consume(system, "api_calls", 4, "b")
    system.sync()

    history = system.query("usage_history", app_id=APP, tenant_id=TENANT, days=4)
    assert [(r["bucket_start"], r["quantity"]) for r in history] == [
        ("2025-12-31T00:00:00Z", 3),
        ("2026-01-01T00:00:00Z", 0),
        ("2026-01-02T00:00:00Z", 0),
        ("2026-01-03T00:00:00Z", 4),
    ]
    assert [
        r["bucket_start"]
        for r in system.query("usage_history", app_id=APP, tenant_id=TENANT, days=2)
    ] == ["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]

    default = system.query("usage_history", app_id=APP, tenant_id=TENANT)
    assert len(default) == 30
    assert default[-1]["bucket_start"] == "2026-01-03T00:00:00Z"
    assert sum(r["quantity"] for r in default) == 7
    # a feature asked for by name is listed even without usage
    unused = system.query("usage_history", app_id=APP, tenant_id=TENANT, feature="x", days=2)
    assert [(r["feature"], r["quantity"]) for r in unused] == [("x", 0), ("x", 0)]


def test_export_as_csv_and_json(system: System, clock: SettableClock) -> None:
    configure(system, "api_calls")
    configure(system, "storage")
    consume(system, "api_calls", 3, "a")
    consume(system, "storage", 1024, "b")
    clock.advance(timedelta(hours=1))
    consume(system, "api_calls", 5, "c")
    rows = usage(system, granularity="hour")

    text = usage_csv(rows)
    lines = text.splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    assert lines[1:] == [
        "api_calls,hour,2025-12-31T23:00:00Z,3,1",
        "storage,hour,2025-12-31T23:00:00Z,1024,1",
        "api_calls,hour,2026-01-01T00:00:00Z,5,1",
    ]
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["quantity"]) for r in parsed] == [r["quantity"] for r in rows]
    assert usage_csv([]) == ",".join(CSV_COLUMNS) + "\n"

    assert json.loads(usage_json(rows)) == rows


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"granularity": "week"}, "granularity"),
        ({"granularity": None}, "granularity"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "from"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"to": ""}, "to"),
        ({"feature": ""}, "feature"),
        ({"tenant_id": ""}, "tenant_id"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_parameters_name_the_field(system: System, params: dict[str, Any], field: str) -> None:
    arguments: dict[str, Any] = {"app_id": APP, "tenant_id": TENANT, **params}
    with pytest.raises(InvalidValue) as error:
        system.query("usage", **arguments)
    assert error.value.field == field


@pytest.mark.parametrize("days", [0, -1, 10_000, "many", 1.5, True])
def test_bad_history_length_names_days(system: System, days: Any) -> None:
    with pytest.raises(InvalidValue) as error:
        system.query("usage_history", app_id=APP, tenant_id=TENANT, days=days)
    assert error.value.field == "days"


def dump(store: ViewStore) -> dict[str, list[dict[str, Any]]]:
    return {
        table: sorted(
            store.query(f"SELECT * FROM {{{table}}}"), key=lambda row: json.dumps(row, default=str)
        )
        for table in UsageProjector.TABLES
    }


def test_applying_the_same_events_twice_changes_nothing(
    system: System, clock: SettableClock
) -> None:
    configure(system, "api_calls", period="day")
    for i in range(6):
        consume(system, "api_calls", i + 1, f"k{i}")
        clock.advance(timedelta(hours=7))
    events = read_envelopes(system.ledger.recorder, 0, 1000)
    assert any(e.type == "QuotaReset" for e in events)

    store = ViewStore("sqlite", ":memory:")
    projector = UsageProjector()
    store.ensure(projector)
    try:
        head = store.apply(projector, events)
        once = dump(store)
        assert once["usage_buckets"]
        assert store.apply(projector, events) == head  # redelivered: skipped by position
        assert store.apply(projector, events[len(events) // 2 :]) == head
        assert dump(store) == once
        # and the system's own live model, fed in small batches, is the same
        system.sync()
        assert dump(system.views) == once
    finally:
        store.close()
