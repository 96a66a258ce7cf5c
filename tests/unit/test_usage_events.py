"""Typed usage events: the built-in schemas, app-defined types, and readings() for every
built-in type, every aggregation, filters, group_by, wrong types and unknown types. Folding
the readings with domain.metering gives hand-computed answers."""

from __future__ import annotations

from typing import Any

import pytest

from domain.catalog import MAX_AMOUNT, Meter
from domain.errors import InvalidValue
from domain.meter_catalog import MeterDefinition
from domain.metering import aggregate
from domain.usage_events import BUILT_IN_EVENT_TYPES, Reading, readings

API = {"endpoint": "/v1/things", "method": "GET", "status": 200, "duration_ms": 35}


def meter(key: str, event_type: str, aggregation: str, **extra: Any) -> MeterDefinition:
    return MeterDefinition.model_validate(
        {"key": key, "event_type": event_type, "aggregation": aggregation, **extra}
    )


REQUESTS = meter("requests", "api_request", "count")
LATENCY = meter("latency", "api_request", "max", value_property="duration_ms")
ERRORS = meter("errors", "api_request", "count", filter={"status": 500})
BY_ENDPOINT = meter("by-endpoint", "api_request", "count", group_by=["endpoint", "method"])
STORED = meter("stored", "storage", "latest", value_property="bytes")
EGRESS = meter("egress", "bandwidth", "sum", value_property="bytes", filter={"direction": "egress"})
CPU = meter("cpu", "compute", "sum", value_property="seconds", group_by=["resource_type"])
USERS = meter("users", "login", "unique_count", value_property="user_id", group_by=["region"])
ALL = [REQUESTS, LATENCY, ERRORS, BY_ENDPOINT, STORED, EGRESS, CPU, USERS]


def refused(event_type: Any, properties: Any, meters: list[MeterDefinition] = ALL) -> str:
    with pytest.raises(InvalidValue) as caught:
        readings(event_type, properties, meters, "events.3")
    assert caught.value.field is not None
    return caught.value.field


def test_the_built_in_types() -> None:
    schemas = {name: dict(props) for name, props in BUILT_IN_EVENT_TYPES.items()}
    assert {name: {p: s.type for p, s in props.items()} for name, props in schemas.items()} == {
        "api_request": {
            "endpoint": "string",
            "method": "string",
            "status": "integer",
            "duration_ms": "integer",
        },
        "storage": {"bytes": "integer"},
        "bandwidth": {"bytes": "integer", "direction": "string"},
        "compute": {"seconds": "integer", "resource_type": "string"},
    }
    assert schemas["bandwidth"]["direction"].choices == ("ingress", "egress")


def test_an_api_request_feeds_every_meter_of_its_type_whose_filter_matches() -> None:
    found = readings("api_request", API, ALL, "events.0")
    assert found == [
        Reading("requests", Meter.COUNT, 1, "", {}),
        Reading("latency", Meter.MAX, 35, "35", {}),
        Reading("by-endpoint", Meter.COUNT, 1, "", {"endpoint": "/v1/things", "method": "GET"}),
    ]
    failed = readings("api_request", {**API, "status": 500}, ALL, "events.0")
    assert [r.meter_key for r in failed] == ["requests", "latency", "errors", "by-endpoint"]


def test_storage_bandwidth_and_compute() -> None:
    assert readings("storage", {"bytes": 2048}, ALL) == [
        Reading("stored", Meter.LATEST, 2048, "2048", {})
    ]
    assert readings("bandwidth", {"bytes": 10, "direction": "egress"}, ALL) == [
        Reading("egress", Meter.SUM, 10, "10", {})
    ]
    assert readings("bandwidth", {"bytes": 10, "direction": "ingress"}, ALL) == []
    assert readings("compute", {"seconds": 90, "resource_type": "gpu"}, ALL) == [
        Reading("cpu", Meter.SUM, 90, "90", {"resource_type": "gpu"})
    ]


def test_a_built_in_type_without_meters_is_valid_and_feeds_nothing() -> None:
    assert readings("storage", {"bytes": 1}, []) == []
    assert readings("compute", {"seconds": 1, "resource_type": "cpu"}, [REQUESTS]) == []
    assert refused("storage", {"bytes": "1"}, []) == "events.3.properties.bytes"


def test_an_app_defined_type_exists_once_a_meter_names_it() -> None:
    login = {"user_id": "u-1", "region": "eu", "beta": True, "attempt": 2}
    assert readings("login", login, ALL) == [
        Reading("users", Meter.UNIQUE_COUNT, 1, "u-1", {"region": "eu"})
    ]
    assert refused("login", login, [REQUESTS]) == "events.3.event_type"
    assert refused("signup", {"user_id": "u"}) == "events.3.event_type"


@pytest.mark.parametrize("event_type", [None, 7, "", "Api_Request", "api-request"])
def test_a_malformed_event_type(event_type: Any) -> None:
    assert refused(event_type, {}) == "events.3.event_type"


@pytest.mark.parametrize(
    ("event_type", "properties", "field"),
    [
        ("storage", {}, "bytes"),  # missing
        ("storage", {"bytes": "5"}, "bytes"),  # a quantity-like string is not an integer
        ("storage", {"bytes": 3.0}, "bytes"),  # nor is a float with no fraction
        ("storage", {"bytes": True}, "bytes"),  # nor a boolean
        ("storage", {"bytes": None}, "bytes"),
        ("storage", {"bytes": -1}, "bytes"),
        ("storage", {"bytes": MAX_AMOUNT + 1}, "bytes"),
        ("storage", {"bytes": 5, "region": "eu"}, "region"),  # extra on a built-in type
        ("api_request", {**API, "status": "200"}, "status"),
        ("api_request", {**API, "duration_ms": 1.5}, "duration_ms"),
        ("api_request", {**API, "method": 1}, "method"),
        ("api_request", {**API, "endpoint": ""}, "endpoint"),
        ("api_request", {k: v for k, v in API.items() if k != "method"}, "method"),
        ("bandwidth", {"bytes": 1, "direction": "sideways"}, "direction"),
        ("bandwidth", {"bytes": 1}, "direction"),
        ("compute", {"seconds": 1, "resource_type": ["gpu"]}, "resource_type"),
        ("login", {"user_id": 1.5}, "user_id"),  # app-defined: scalars only
        ("login", {"user_id": None}, "user_id"),
        ("login", {"user_id": {"id": 1}}, "user_id"),
        ("login", {"user_id": "x" * 1025}, "user_id"),
    ],
)
def test_wrong_properties_name_the_property(
    event_type: str, properties: dict[str, Any], field: str
) -> None:
    assert refused(event_type, properties) == f"events.3.properties.{field}"


@pytest.mark.parametrize("properties", [None, [1], "bytes=5", 5])
def test_properties_are_an_object(properties: Any) -> None:
    assert refused("storage", properties) == "events.3.properties"


def test_the_field_prefix_is_optional() -> None:
    with pytest.raises(InvalidValue) as caught:
        readings("storage", {}, [])
    assert caught.value.field == "properties.bytes"


def test_a_meter_value_property_missing_on_an_app_event_is_refused() -> None:
    assert refused("login", {"region": "eu"}) == "events.3.properties.user_id"
    filtered = meter(
        "eu-logins", "login", "unique_count", value_property="user_id", filter={"region": "eu"}
    )
    assert readings("login", {"region": "us"}, [filtered]) == []  # filtered out: not read


@pytest.mark.parametrize("value", ["5", 3.0, True, -1, MAX_AMOUNT + 1])
@pytest.mark.parametrize("aggregation", ["sum", "max", "latest"])
def test_a_value_is_a_whole_number_in_range(value: Any, aggregation: str) -> None:
    amount = meter("amount", "purchase", aggregation, value_property="amount")
    assert readings("purchase", {"amount": 0}, [amount])[0].value == 0
    assert readings("purchase", {"amount": MAX_AMOUNT}, [amount])[0].value == MAX_AMOUNT
    assert refused("purchase", {"amount": value}, [amount]) == "events.3.properties.amount"


def test_unique_count_reads_strings_integers_and_booleans_as_text() -> None:
    distinct = meter("distinct", "visit", "unique_count", value_property="who")
    texts = [readings("visit", {"who": who}, [distinct])[0] for who in ("ann", 7, True, False)]
    assert [(r.value, r.distinct) for r in texts] == [
        (1, "ann"),
        (7, "7"),
        (1, "true"),
        (1, "false"),
    ]
    assert refused("visit", {"who": -3}, [distinct]) == "events.3.properties.who"


def test_filters_compare_types_strictly() -> None:
    flagged = meter("flagged", "job", "count", filter={"urgent": True, "tier": 1})
    assert readings("job", {"urgent": True, "tier": 1}, [flagged]) != []
    assert readings("job", {"urgent": 1, "tier": 1}, [flagged]) == []  # 1 is not true
    assert readings("job", {"urgent": True, "tier": True}, [flagged]) == []
    assert readings("job", {"urgent": True, "tier": "1"}, [flagged]) == []
    assert readings("job", {"tier": 1}, [flagged]) == []  # absent never matches


def test_group_by_keeps_only_the_properties_present() -> None:
    grouped = meter("jobs", "job", "count", group_by=["queue", "region"])
    assert readings("job", {"queue": "a"}, [grouped])[0].group == {"queue": "a"}
    assert readings("job", {"queue": "a", "region": 3, "x": 1}, [grouped])[0].group == {
        "queue": "a",
        "region": 3,
    }


def test_every_aggregation_folds_to_hand_computed_answers() -> None:
    """storage bytes 5, 3, 5 (as in docs/usage.md): sum 13, count 3, max 5, unique 2, latest 5."""
    meters = [
        meter(
            f"bytes-{aggregation.value}",
            "storage",
            aggregation.value,
            **({} if aggregation is Meter.COUNT else {"value_property": "bytes"}),
        )
        for aggregation in Meter
    ]
    events = [readings("storage", {"bytes": b}, meters) for b in (5, 3, 5)]
    by_meter: dict[Meter, list[Reading]] = {}
    for found in events:
        for reading in found:
            by_meter.setdefault(reading.aggregation, []).append(reading)
    quantities = {m: aggregate(m, [r.value for r in rs]) for m, rs in by_meter.items()}
    assert quantities == {
        Meter.SUM: 13,
        Meter.COUNT: 3,
        Meter.MAX: 5,
        Meter.UNIQUE_COUNT: 2,
        Meter.LATEST: 5,
    }
    assert len({r.distinct for r in by_meter[Meter.UNIQUE_COUNT]}) == 2


def test_distinct_strings_count_distinct() -> None:
    logins = [{"user_id": u, "region": "eu"} for u in ("a", "b", "a", "c", "b")]
    found = [readings("login", props, [USERS])[0] for props in logins]
    assert len({r.distinct for r in found}) == 3 and all(r.value == 1 for r in found)


def test_one_event_may_feed_no_meter_one_or_many() -> None:
    assert len(readings("api_request", {**API, "status": 500}, ALL)) == 4
    assert readings("login", {"user_id": "u", "region": "eu"}, [USERS, REQUESTS]) != []
