"""Meters as catalog objects: the MeterDefinition rules, the MeterCatalog aggregate (define,
duplicate, redefinition refused, queries, snapshots, events), a plan feature naming a meter
key, and the define_meter command through the bus."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from commands.edge import validation_error
from domain import catalog, quota
from domain.base import Snapshot
from domain.catalog import FeatureSpec, Meter
from domain.errors import InvalidValue
from domain.meter_catalog import (
    MAX_FILTERS,
    MAX_GROUP_BY,
    MeterCatalog,
    MeterDefined,
    MeterDefinition,
    MeterRedefined,
    is_aggregation_name,
    meter_catalog_id,
    meter_view,
)
from domain.plan import plan_id
from tests.factories import cause, embedded_system, ok

REQUESTS = {"key": "api-calls", "event_type": "api_request", "aggregation": "count"}
GB = {"key": "storage-gb", "event_type": "storage", "aggregation": "max", "value_property": "bytes"}


def refusal(**fields: Any) -> tuple[str, str]:
    """(field, message) of the first rule a definition breaks."""
    with pytest.raises(ValidationError) as caught:
        MeterDefinition.model_validate(fields)
    detail = validation_error(caught.value, "define_meter")["details"][0]
    return detail["field"], detail["message"]


def test_a_definition_keeps_every_part() -> None:
    meter = MeterDefinition.model_validate(
        {
            **REQUESTS,
            "filter": {"method": "GET", "status": 200},
            "group_by": ["endpoint", "method"],
        }
    )
    assert meter.aggregation is Meter.COUNT and meter.value_property is None
    assert meter_view(meter) == {
        "key": "api-calls",
        "event_type": "api_request",
        "aggregation": "count",
        "value_property": None,
        "filter": {"method": "GET", "status": 200},
        "group_by": ["endpoint", "method"],
    }


@pytest.mark.parametrize("aggregation", ["sum", "max", "latest", "unique_count"])
def test_value_aggregations_need_a_value_property(aggregation: str) -> None:
    fields = {"key": "m", "event_type": "storage", "aggregation": aggregation}
    assert refusal(**fields)[0] == "value_property"
    meter = MeterDefinition.model_validate({**fields, "value_property": "bytes"})
    assert meter.value_property == "bytes"


def test_a_count_meter_takes_no_value_property() -> None:
    field, message = refusal(**REQUESTS, value_property="status")
    assert field == "value_property" and "count" in message


@pytest.mark.parametrize("key", ["sum", "count", "max", "unique_count", "latest"])
def test_a_key_is_never_an_aggregation_name(key: str) -> None:
    assert is_aggregation_name(key)
    field, message = refusal(**{**REQUESTS, "key": key})
    assert field == "key" and "built-in aggregation" in message


@pytest.mark.parametrize("key", ["Api", "", "a b", "-x", "x" * 65])
def test_a_key_is_a_slug(key: str) -> None:
    assert refusal(**{**REQUESTS, "key": key})[0] == "key"


@pytest.mark.parametrize("event_type", ["ApiRequest", "api-request", "1type", "", "a" * 65])
def test_the_event_type_is_snake_case(event_type: str) -> None:
    assert refusal(**{**REQUESTS, "event_type": event_type})[0] == "event_type"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"value_property": "size"}, "value_property"),  # storage has only bytes
        ({"filter": {"region": "eu"}}, "filter.region"),
        ({"group_by": ["bytes", "region"]}, "group_by.1"),
    ],
)
def test_properties_of_a_built_in_type_are_its_own(fields: dict[str, Any], field: str) -> None:
    base = {"key": "m", "event_type": "storage", "aggregation": "sum", "value_property": "bytes"}
    found, message = refusal(**{**base, **fields})
    assert found == field and "storage has no property" in message


def test_sum_max_latest_of_a_built_in_type_read_an_integer_property() -> None:
    for aggregation in ("sum", "max", "latest"):
        fields = {"key": "m", "event_type": "compute", "aggregation": aggregation}
        field, message = refusal(**fields, value_property="resource_type")
        assert field == "value_property" and "integer" in message
    distinct = MeterDefinition(
        key="m",
        event_type="compute",
        aggregation=Meter.UNIQUE_COUNT,
        value_property="resource_type",
    )
    assert distinct.value_property == "resource_type"


@pytest.mark.parametrize(
    ("conditions", "field"),
    [
        ({"status": "200"}, "filter.status"),  # an integer property never equals a string
        ({"status": True}, "filter.status"),
        ({"method": 1}, "filter.method"),
        ({"status": 2.0}, "filter.status"),  # not a scalar the filter compares
        ({"status": None}, "filter.status"),
        ({"method": ["GET"]}, "filter.method"),
    ],
)
def test_filter_values_fit_the_built_in_property(conditions: dict[str, Any], field: str) -> None:
    assert refusal(**REQUESTS, filter=conditions)[0] == field


def test_a_filter_choice_must_be_one_of_the_property_choices() -> None:
    fields = {"key": "m", "event_type": "bandwidth", "aggregation": "count"}
    assert refusal(**fields, filter={"direction": "up"})[0] == "filter.direction"
    meter = MeterDefinition.model_validate({**fields, "filter": {"direction": "egress"}})
    assert meter.filter == {"direction": "egress"}


def test_an_app_defined_type_takes_any_property_names_and_scalar_filters() -> None:
    meter = MeterDefinition.model_validate(
        {
            "key": "active-users",
            "event_type": "login",
            "aggregation": "unique_count",
            "value_property": "user_id",
            "filter": {"region": "eu", "beta": True, "tier": 2},
            "group_by": ["region"],
        }
    )
    assert meter.filter == {"region": "eu", "beta": True, "tier": 2}
    assert type(meter.filter["beta"]) is bool and type(meter.filter["tier"]) is int
    assert refusal(**{**REQUESTS, "event_type": "login", "group_by": ["has space"]})[0] == (
        "group_by.0"
    )


def test_at_most_ten_filters_and_five_distinct_group_by() -> None:
    base = {"key": "m", "event_type": "login", "aggregation": "count"}
    conditions = {f"p{i}": i for i in range(MAX_FILTERS)}
    assert MeterDefinition.model_validate({**base, "filter": conditions}).filter == conditions
    assert refusal(**base, filter={**conditions, "one_more": 1})[0] == "filter"
    names = [f"g{i}" for i in range(MAX_GROUP_BY)]
    assert MeterDefinition.model_validate({**base, "group_by": names}).group_by == names
    assert refusal(**base, group_by=[*names, "g9"])[0] == "group_by"
    assert refusal(**base, group_by=["a", "a"])[0] == "group_by"


def test_the_catalog_starts_with_its_first_meter_and_answers_queries() -> None:
    requests, gb = MeterDefinition.model_validate(REQUESTS), MeterDefinition.model_validate(GB)
    errors = MeterDefinition.model_validate(
        {**REQUESTS, "key": "api-errors", "filter": {"status": 500}}
    )
    meters = MeterCatalog.start("acme", requests, cause())
    assert meters.id == meter_catalog_id("acme") != meter_catalog_id("globex")
    assert meters.define(gb, cause()) is True
    assert meters.define(errors, cause()) is True
    assert meters.all() == [requests, gb, errors]
    assert meters.get("storage-gb") == gb and meters.get("nope") is None
    assert meters.meters_for("api_request") == [requests, errors]
    assert meters.meters_for("compute") == []
    events = meters.collect_events()
    assert [type(e) for e in events] == [MeterDefined] * 3
    assert [e.meter.key for e in events] == ["api-calls", "storage-gb", "api-errors"]  # type: ignore[attr-defined]
    assert events[0].aggregate_type == "meter_catalog" and events[0].app_id == "acme"


def test_the_same_definition_again_is_a_duplicate_and_another_is_refused() -> None:
    meters = MeterCatalog.start("acme", MeterDefinition.model_validate(REQUESTS), cause())
    meters.collect_events()
    assert meters.define(MeterDefinition.model_validate(dict(REQUESTS)), cause()) is False
    assert meters.collect_events() == []
    with pytest.raises(MeterRedefined) as caught:
        meters.define(
            MeterDefinition.model_validate({**REQUESTS, "filter": {"status": 200}}), cause()
        )
    assert caught.value.field == "key" and caught.value.code == "meter_redefined"
    assert meters.collect_events() == [] and len(meters.all()) == 1


def test_a_catalog_rebuilds_from_its_events_and_its_snapshot() -> None:
    meters = MeterCatalog.start("acme", MeterDefinition.model_validate(REQUESTS), cause())
    meters.define(MeterDefinition.model_validate(GB), cause())
    events = meters.collect_events()
    replayed: Any = None
    for event in events:
        stored = type(event).model_validate(event.model_dump(mode="json"))
        replayed = stored.mutate(replayed)
    assert replayed.all() == meters.all() and replayed.version == 2
    restored = Snapshot.take(meters).mutate(None)
    assert isinstance(restored, MeterCatalog) and restored.all() == meters.all()


def test_the_usage_bound_is_the_quotas() -> None:
    assert catalog.MAX_AMOUNT == quota.MAX_AMOUNT


# --- a plan feature names a meter ---


def metered(meter: Any, **extra: Any) -> dict[str, Any]:
    return {"key": "api", "kind": "metered", "limit": 100, "meter": meter, **extra}


@pytest.mark.parametrize("aggregation", ["sum", "count", "max", "unique_count", "latest"])
def test_a_built_in_aggregation_name_stays_the_meter(aggregation: str) -> None:
    spec = FeatureSpec.model_validate(metered(aggregation))
    assert spec.meter is Meter(aggregation) and spec.meter_key is None


def test_any_other_meter_name_is_a_meter_key() -> None:
    spec = FeatureSpec.model_validate(metered("api-calls"))
    assert spec.meter_key == "api-calls" and spec.meter is Meter.SUM  # until the plan resolves it
    dumped = spec.model_dump(mode="json")
    assert dumped["meter"] == "sum" and dumped["meter_key"] == "api-calls"
    again = FeatureSpec.model_validate({**dumped, "meter": "count"})  # a stored, resolved spec
    assert (again.meter, again.meter_key) == (Meter.COUNT, "api-calls")


def test_a_meter_that_is_neither_an_aggregation_nor_a_key_is_refused_naming_meter() -> None:
    with pytest.raises(ValidationError) as caught:
        FeatureSpec.model_validate(metered("Not A Key"))
    assert caught.value.errors()[0]["loc"] == ("meter",)


def test_specs_stored_before_meter_keys_still_decode() -> None:
    stored = {"key": "api", "kind": "metered", "limit": 10, "meter": "max"}
    spec = FeatureSpec.model_validate(stored)
    assert (spec.meter, spec.meter_key) == (Meter.MAX, None)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (metered("api-calls", meter_key="other"), "meter"),
        ({"key": "sso", "kind": "boolean", "meter": "api-calls"}, "features.sso.meter"),
        (metered("sum", meter_key="count"), "features.api.meter"),
    ],
)
def test_bad_meter_names(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FeatureSpec.model_validate(fields)
    cause_of = caught.value.errors()[0]["ctx"]["error"]
    assert isinstance(cause_of, InvalidValue) and cause_of.field == field


# --- through the command bus ---


def test_define_meter_and_plans_that_name_it() -> None:
    system = embedded_system()
    try:
        created = ok(system.dispatch("define_meter", {"app_id": "acme", **GB}))
        assert created == {
            **meter_view(MeterDefinition.model_validate(GB)),
            "duplicate": False,
            "version": 1,
        }
        again = ok(system.dispatch("define_meter", {"app_id": "acme", **GB}))
        assert again["duplicate"] is True and again["version"] == 1
        other = system.dispatch("define_meter", {"app_id": "acme", **GB, "aggregation": "latest"})
        assert other["ok"] is False and other["error"]["code"] == "meter_redefined"
        assert other["error"]["details"][0]["field"] == "key"
        plan = {
            "app_id": "acme",
            "plan_key": "pro",
            "name": "Pro",
            "base_price": {"amount": 1000, "currency": "USD"},
            "features": [metered("storage-gb"), {**metered("sum"), "key": "seats-ish"}],
        }
        ok(system.dispatch("define_plan", plan))
        features = system.aggregate(plan_id("acme", "pro")).state.latest.features
        assert [(f.meter, f.meter_key) for f in features] == [
            (Meter.MAX, "storage-gb"),
            (Meter.SUM, None),
        ]
        unknown = system.dispatch("revise_plan", {**plan, "features": [metered("missing-meter")]})
        assert unknown["ok"] is False and unknown["error"]["code"] == "invalid_value"
        assert unknown["error"]["details"][0]["field"] == "features.api.meter"
        elsewhere = system.dispatch("define_plan", {**plan, "app_id": "globex"})
        assert elsewhere["error"]["details"][0]["field"] == "features.api.meter"  # per app
    finally:
        system.close()
