"""Usage totals read model through the embedded system (SQLite, events fed on sync)."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.bootstrap import System
from adapters.eventstore.envelopes import read_envelopes
from adapters.readmodels.sql_store import ViewStore
from domain.catalog import Meter
from domain.clock import SettableClock
from domain.errors import InvalidValue
from domain.metering import aggregate_timed
from projections.envelope import EventEnvelope
from projections.queries import QueryContext, run_query
from projections.usage.projector import UsageProjector, floor_to
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


# --- meters: buckets, windows and billable usage follow the feature's meter ---

METERS = ("sum", "count", "max", "unique_count", "latest")


def billable(system: System, feature: str, meter: str, start: Any, end: Any, **more: Any) -> Any:
    system.sync()
    return system.query(
        "billable_usage",
        app_id=APP,
        tenant_id=TENANT,
        feature_key=feature,
        meter=meter,
        start=start,
        end=end,
        **more,
    )


def test_five_three_five_under_each_meter_everywhere(system: System, clock: SettableClock) -> None:
    # issue 8: posting 5, 3, 5 reported 13 for every meter; expected 3, 5, 2, 5 (and sum 13)
    expected = {"sum": 13, "count": 3, "max": 5, "unique_count": 2, "latest": 5}
    for meter in METERS:
        configure(system, meter.replace("_", "-"), meter=meter, period="day")
    for i, value in enumerate([5, 3, 5]):
        for meter in METERS:
            consume(system, meter.replace("_", "-"), value, f"{meter}-{i}")
        clock.advance(timedelta(minutes=5))  # all three in one hour, day and month
    system.sync()
    current = {
        row["feature"]: row["quantity"]
        for row in system.query("usage_current_period", app_id=APP, tenant_id=TENANT)
    }
    history = {
        (row["feature"], row["bucket_start"]): row["quantity"]
        for row in system.query("usage_history", app_id=APP, tenant_id=TENANT, days=1)
    }
    for meter, quantity in expected.items():
        feature = meter.replace("_", "-")
        for granularity in ("hour", "day", "month"):
            [bucket] = usage(system, feature=feature, granularity=granularity)
            assert (bucket["quantity"], bucket["events"]) == (quantity, 3), (meter, granularity)
        assert current[feature] == quantity
        assert history[feature, "2025-12-31T00:00:00Z"] == quantity
        answer = billable(system, feature, meter, START, START + timedelta(days=1))
        assert (answer["quantity"], answer["events"]) == (quantity, 3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    meter=st.sampled_from(METERS),
    posted=st.lists(st.tuples(st.integers(1, 6), st.integers(0, 400)), min_size=1, max_size=12),
)
def test_buckets_and_billable_usage_equal_the_domain_meter(
    meter: str, posted: list[tuple[int, int]]
) -> None:
    """Random values at random clock steps (across hours, days and a month end): every
    bucket, billable_usage over ranges and the quota's window equal `aggregate` of the
    values they cover."""
    clock = SettableClock(datetime(2026, 3, 31, 20, tzinfo=UTC))
    system = embedded_system(clock)
    try:
        configure(system, "f", meter=meter, period="absolute")
        readings: list[tuple[datetime, int, int]] = []
        for i, (value, minutes) in enumerate(posted):
            clock.advance(timedelta(minutes=minutes))
            consume(system, "f", value, f"k{i}")
            readings.append((clock.now(), i, value))
        check_buckets(usage, system, Meter(meter), readings)
        check_billable(lambda **p: billable(system, "f", meter, **p), Meter(meter), readings)
        [window] = system.query("usage_current_period", app_id=APP, tenant_id=TENANT)
        assert window["quantity"] == aggregate_timed(Meter(meter), readings)
    finally:
        system.close()


def check_buckets(
    read: Any, source: Any, meter: Meter, readings: list[tuple[datetime, int, int]]
) -> None:
    for granularity in ("hour", "day", "month"):
        rows = read(source, feature="f", granularity=granularity)
        starts = {floor_to(r[0], granularity) for r in readings}
        assert [datetime.fromisoformat(row["bucket_start"]) for row in rows] == sorted(starts)
        for row in rows:
            start = datetime.fromisoformat(row["bucket_start"])
            inside = [r for r in readings if floor_to(r[0], granularity) == start]
            assert row["quantity"] == aggregate_timed(meter, inside), granularity
            assert row["events"] == len(inside)


def check_billable(ask: Any, meter: Meter, readings: list[tuple[datetime, int, int]]) -> None:
    times = sorted({r[0] for r in readings})
    ranges = [(times[0], times[-1] + timedelta(microseconds=1)), (times[0], times[-1])]
    ranges += [(times[len(times) // 2], times[-1] + timedelta(days=1))]
    for start, end in ranges:
        inside = [r for r in readings if start <= r[0] < end]
        answer = ask(start=start, end=end)
        assert answer["quantity"] == aggregate_timed(meter, inside)
        assert answer["events"] == len(inside)


def fact_events(readings: list[tuple[datetime, int, int]], meter: str) -> list[EventEnvelope]:
    """QuotaConsumed envelopes at the given (time, position, value), in position order."""
    return [
        EventEnvelope(
            id=uuid.uuid5(uuid.NAMESPACE_OID, str(position)),
            type="QuotaConsumed",
            position=position,
            aggregate_id=uuid.uuid5(uuid.NAMESPACE_OID, "quota"),
            aggregate_type="quota",
            version=position,
            app_id=APP,
            tenant_id=TENANT,
            occurred_at=at.isoformat(),
            recorded_at=None,
            schema_version=1,
            data={
                "feature_key": "f",
                "amount": value,
                "meter": meter,
                "idempotency_key": f"k{position}",
                "used": 0,
                "limit": None,
                "remaining": None,
                "overage": 0,
                "window": None,
            },
        )
        for at, position, value in sorted(readings, key=lambda r: r[1])
    ]


@settings(max_examples=60, deadline=None)
@given(
    meter=st.sampled_from(METERS),
    posted=st.lists(st.tuples(st.integers(1, 6), st.integers(-200, 200)), min_size=1, max_size=15),
    batch=st.integers(1, 5),
)
def test_events_out_of_time_order_fold_by_time_then_position(
    meter: str, posted: list[tuple[int, int]], batch: int
) -> None:
    """The projector alone, fed events whose clock times go back and forth (as concurrent
    writers may commit them): buckets and billable_usage are still the domain meter."""
    base = datetime(2026, 5, 31, 22, tzinfo=UTC)
    readings = [
        (base + timedelta(minutes=minutes), position, value)
        for position, (value, minutes) in enumerate(posted, start=1)
    ]
    events = fact_events(readings, meter)
    store = ViewStore("sqlite", ":memory:")
    projector = UsageProjector()
    store.ensure(projector)
    try:
        for offset in range(0, len(events), batch):
            store.apply(projector, events[offset : offset + batch])
        ctx = QueryContext(views=store, now=lambda: base)

        def read(views: ViewStore, **params: Any) -> Any:
            return run_query(ctx, "usage", app_id=APP, tenant_id=TENANT, **params)

        check_buckets(read, store, Meter(meter), readings)
        check_billable(
            lambda **p: run_query(
                ctx,
                "billable_usage",
                app_id=APP,
                tenant_id=TENANT,
                feature_key="f",
                meter=meter,
                **p,
            ),
            Meter(meter),
            readings,
        )
    finally:
        store.close()


def test_billable_usage_answers_the_period_half_open(system: System, clock: SettableClock) -> None:
    configure(system, "api_calls")
    day = datetime(2026, 1, 1, tzinfo=UTC)
    times = [
        day - timedelta(microseconds=1),
        day,
        day + timedelta(hours=5),
        day + timedelta(days=1),
    ]
    for i, at in enumerate(times):
        clock.set(at)
        consume(system, "api_calls", i + 1, f"k{i}")
    answer = billable(system, "api_calls", "sum", day, day + timedelta(days=1))
    assert (answer["quantity"], answer["events"]) == (2 + 3, 2)  # start in, end out
    assert (answer["first_at"], answer["last_at"]) == (
        "2026-01-01T00:00:00.000000Z",
        "2026-01-01T05:00:00.000000Z",
    )
    # ISO text works too, a naive one read as UTC
    text = billable(system, "api_calls", "sum", "2026-01-01T00:00:00", "2026-01-02T00:00:00Z")
    assert text == answer
    empty = billable(system, "api_calls", "max", day, day)
    assert empty == {
        "quantity": 0,
        "events": 0,
        "first_position": None,
        "last_position": None,
        "first_at": None,
        "last_at": None,
        "event_ids": [],
    }


def test_the_cut_off_counts_only_facts_up_to_a_position(
    system: System, clock: SettableClock
) -> None:
    configure(system, "api_calls", meter="latest")
    for i, value in enumerate([4, 9, 2]):
        consume(system, "api_calls", value, f"k{i}")
        clock.advance(timedelta(minutes=1))
    system.sync()
    facts = system.views.query("SELECT * FROM {usage_facts} ORDER BY position")
    assert [f["value"] for f in facts] == [4, 9, 2]
    period = (START, START + timedelta(days=1))
    second = int(facts[1]["position"])
    cut = billable(system, "api_calls", "latest", *period, max_position=second)
    assert (cut["quantity"], cut["events"], cut["last_position"]) == (9, 2, second)
    assert cut["first_position"] == int(facts[0]["position"])
    assert cut["event_ids"] == [str(facts[1]["event_id"]), str(facts[0]["event_id"])]
    assert billable(system, "api_calls", "latest", *period)["quantity"] == 2
    assert billable(system, "api_calls", "sum", *period, max_position=0)["events"] == 0


def test_event_ids_are_oldest_first_with_the_deciding_event_first(
    system: System, clock: SettableClock
) -> None:
    configure(system, "api_calls")
    for i, value in enumerate([3, 8, 8, 1]):
        consume(system, "api_calls", value, f"k{i}")
        clock.advance(timedelta(minutes=1))
    system.sync()
    ids = [
        str(f["event_id"])
        for f in system.views.query("SELECT * FROM {usage_facts} ORDER BY position")
    ]
    period = (START, START + timedelta(days=1))
    assert billable(system, "api_calls", "sum", *period)["event_ids"] == ids
    assert billable(system, "api_calls", "unique_count", *period, max_ids=2)["event_ids"] == ids[:2]
    # max: the earliest event with the largest value decides; latest: the last one
    assert billable(system, "api_calls", "max", *period)["event_ids"] == [ids[1], ids[0], *ids[2:]]
    assert billable(system, "api_calls", "latest", *period, max_ids=2)["event_ids"] == [
        ids[3],
        ids[0],
    ]
    assert billable(system, "api_calls", "max", *period, max_ids=0)["event_ids"] == []


def test_many_requests_answer_as_each_one_alone(system: System, clock: SettableClock) -> None:
    for feature, meter in (("api_calls", "max"), ("storage", "unique_count")):
        configure(system, feature, meter=meter)
        run(system, "configure_quota", tenant_id="t2", feature_key=feature, meter=meter)
    for i in range(6):
        for tenant in (TENANT, "t2"):
            run(
                system,
                "consume_quota",
                tenant_id=tenant,
                feature_key="api_calls" if i % 2 else "storage",
                amount=i % 3 + 1 + (tenant == "t2"),
                idempotency_key=f"{tenant}-{i}",
            )
        clock.advance(timedelta(hours=3))
    system.sync()
    requests = [
        {
            "tenant_id": tenant,
            "feature_key": feature,
            "meter": meter,
            "start": START + timedelta(hours=offset),
            "end": START + timedelta(hours=offset + 9),
        }
        for tenant in (TENANT, "t2", "nobody")
        for feature in ("api_calls", "storage")
        for meter in METERS
        for offset in (0, 4)
    ] * 30  # more than one statement's worth (1,000 requests)
    answers = system.query("billable_usage_many", app_id=APP, requests=requests)
    assert len(answers) == len(requests) > 1000
    for request, answer in list(zip(requests, answers, strict=True))[:120]:
        alone = system.query("billable_usage", app_id=APP, **request)
        assert answer == alone
    assert answers[0]["events"] > 0 and answers[-1]["events"] == 0
    assert system.query("billable_usage_many", app_id=APP, requests=[]) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"meter": "median"}, "meter"),
        ({"tenant_id": ""}, "tenant_id"),
        ({"feature_key": None}, "feature_key"),
        ({"start": "soon"}, "start"),
        ({"end": datetime(2026, 1, 1)}, "end"),  # naive
        ({"start": "2026-02-01", "end": "2026-01-01"}, "start"),
        ({"max_position": -1}, "max_position"),
        ({"max_position": "7"}, "max_position"),
        ({"max_ids": True}, "max_ids"),
        ({"max_ids": 10**6}, "max_ids"),
    ],
)
def test_bad_billable_parameters_name_the_field(
    system: System, params: dict[str, Any], field: str
) -> None:
    arguments: dict[str, Any] = {
        "app_id": APP,
        "tenant_id": TENANT,
        "feature_key": "api_calls",
        "meter": "sum",
        "start": "2026-01-01",
        "end": "2026-02-01",
        **params,
    }
    with pytest.raises(InvalidValue) as error:
        system.query("billable_usage", **arguments)
    assert error.value.field == field


def test_bad_requests_in_many_name_their_index(system: System) -> None:
    good = {"tenant_id": TENANT, "feature_key": "f", "meter": "sum", "start": "2026-01-01"}
    good["end"] = "2026-02-01"
    for requests, field in [
        ([good, {**good, "meter": "mean"}], "requests.1.meter"),
        ([{**good, "colour": "blue"}], "requests.0.colour"),
        ([good, "x"], "requests.1"),
        ("x", "requests"),
    ]:
        with pytest.raises(InvalidValue) as error:
            system.query("billable_usage_many", app_id=APP, requests=requests)
        assert error.value.field == field


def test_replayed_meters_equal_live(system: System, clock: SettableClock) -> None:
    """Every usage table rebuilt from the log, in batches of any size, equals the live one
    for every meter, across buckets and a meter change mid-bucket."""
    for meter in METERS:
        configure(system, meter.replace("_", "-"), meter=meter, period="day")
    for i, (value, minutes) in enumerate([(5, 0), (3, 20), (5, 0), (7, 200), (2, 1500)]):
        clock.advance(timedelta(minutes=minutes))
        for meter in METERS:
            consume(system, meter.replace("_", "-"), value, f"{meter}-{i}")
        system.sync()  # live, one command at a time
    configure(system, "max", meter="latest", period="day")
    consume(system, "max", 1, "after-change")
    system.sync()
    live = dump(system.views)
    grouped = {"usage_group_buckets", "usage_group_values", "usage_group_latest"}
    assert all(live[table] for table in UsageProjector.TABLES if table not in grouped)
    events = read_envelopes(system.ledger.recorder, 0, 10_000)
    for batch in (1, 3, 1000):
        store = ViewStore("sqlite", ":memory:")
        projector = UsageProjector()
        store.ensure(projector)
        try:
            for offset in range(0, len(events), batch):
                store.apply(projector, events[offset : offset + batch])
            assert dump(store) == live, batch
        finally:
            store.close()


def test_bucket_starts_agree_with_floor_to() -> None:
    from datetime import UTC, datetime, timedelta

    from projections.usage.projector import GRANULARITIES, bucket_starts, bucket_text, floor_to

    instant = datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=UTC)
    for offset in range(0, 24 * 40, 7):
        at = instant + timedelta(hours=offset)
        expected = {g: bucket_text(floor_to(at, g)) for g in GRANULARITIES}
        assert bucket_starts(at) == expected
