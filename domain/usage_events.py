"""Typed usage events and what meters read from them (pure: no I/O, no clock).

A typed usage event is `{event_type, properties}`. Four types are built in, each with typed
properties, all required and no others accepted:

- `api_request`: endpoint (string), method (string), status (integer), duration_ms (integer);
- `storage`: bytes (integer);
- `bandwidth`: bytes (integer), direction ("ingress" | "egress");
- `compute`: seconds (integer), resource_type (string).

Any other type is app-defined: it exists once a meter of the app names it, and takes any
scalar properties (string, integer, boolean). Integers are JSON integers only: a boolean is not
an integer, 3.0 is not one, "5" is not one.

`readings(event_type, properties, catalog_meters, field_prefix)` checks an event and answers
one `Reading` per meter of its type whose filter matches. Bad input raises InvalidValue naming
`<field_prefix>.event_type` or `<field_prefix>.properties.<name>`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

from domain.catalog import MAX_AMOUNT, Meter
from domain.errors import InvalidValue

if TYPE_CHECKING:
    from domain.meter_catalog import MeterDefinition

Scalar = str | int | bool
"""A property value: a string, a JSON integer or a boolean."""

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
PROPERTY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$"
MAX_PROPERTIES = 64
MAX_TEXT = 1024
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)
_PROPERTY = re.compile(PROPERTY_PATTERN)

PropertyType = Literal["string", "integer"]


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """One property of a built-in event type: its type and, for some strings, the choices."""

    type: PropertyType
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.choices:
            return " | ".join(f'"{choice}"' for choice in self.choices)
        return "a string" if self.type == "string" else f"an integer from 0 to {MAX_AMOUNT}"


_TEXT = PropertySpec("string")
_INTEGER = PropertySpec("integer")

BUILT_IN_EVENT_TYPES: Mapping[str, Mapping[str, PropertySpec]] = MappingProxyType(
    {
        "api_request": MappingProxyType(
            {"endpoint": _TEXT, "method": _TEXT, "status": _INTEGER, "duration_ms": _INTEGER}
        ),
        "storage": MappingProxyType({"bytes": _INTEGER}),
        "bandwidth": MappingProxyType(
            {"bytes": _INTEGER, "direction": PropertySpec("string", ("ingress", "egress"))}
        ),
        "compute": MappingProxyType({"seconds": _INTEGER, "resource_type": _TEXT}),
    }
)
"""The built-in event types and their properties (every one required, no others allowed)."""


def is_integer(value: object) -> TypeGuard[int]:
    """A JSON integer: an int that is not a bool."""
    return type(value) is int


def is_scalar(value: object) -> TypeGuard[Scalar]:
    return type(value) in (str, int, bool)


def scalar_text(value: Scalar) -> str:
    """The text a unique_count compares: the string itself, digits, or "true"/"false"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def same_scalar(left: object, right: object) -> bool:
    """Equality that keeps types apart (True is not 1, "1" is not 1)."""
    return type(left) is type(right) and left == right


def valid_event_type(value: str) -> bool:
    return bool(_EVENT_TYPE.match(value))


def valid_property_name(value: str) -> bool:
    return bool(_PROPERTY.match(value))


@dataclass(frozen=True, slots=True)
class Reading:
    """What one meter reads from one event.

    `value` is the value property (an integer from 0 to MAX_AMOUNT) for sum, max and latest;
    1 for count; for unique_count the property when it is an integer, else 1. `distinct` is
    the value property's text (what unique_count counts distinct; "" for count). `group` holds
    the meter's group_by properties the event has.
    """

    meter_key: str
    aggregation: Meter
    value: int
    distinct: str = ""
    group: dict[str, Scalar] = field(default_factory=dict)


def readings(
    event_type: object,
    properties: object,
    catalog_meters: Iterable[MeterDefinition],
    field_prefix: str = "",
) -> list[Reading]:
    """The readings of one typed event: one per meter of its type whose filter matches.

    `catalog_meters` may be all the app's meters or only those of this type. Raises
    InvalidValue naming `<field_prefix>.event_type` (unknown type) or
    `<field_prefix>.properties[.<name>]` (missing, wrong type, extra on a built-in type,
    a meter's value property missing or not a whole number in range).
    """
    if not isinstance(event_type, str) or not valid_event_type(event_type):
        raise InvalidValue(
            f"event_type is a snake_case name matching {EVENT_TYPE_PATTERN}",
            field=_path(field_prefix, "event_type"),
            rule="pattern",
        )
    meters = [meter for meter in catalog_meters if meter.event_type == event_type]
    schema = BUILT_IN_EVENT_TYPES.get(event_type)
    if schema is None and not meters:
        raise InvalidValue(
            f"unknown event_type {event_type!r}: not built in "
            f"({', '.join(BUILT_IN_EVENT_TYPES)}) and no meter of the app names it",
            field=_path(field_prefix, "event_type"),
            rule="unknown_event_type",
        )
    checked = check_properties(event_type, properties, field_prefix)
    return [
        read(meter, checked, field_prefix) for meter in meters if matches(meter.filter, checked)
    ]


def check_properties(
    event_type: str, properties: object, field_prefix: str = ""
) -> Mapping[str, Scalar]:
    """The event's properties, checked against its type (built-in schema or any scalars)."""
    where = _path(field_prefix, "properties")
    if not isinstance(properties, Mapping):
        raise InvalidValue("properties is an object", field=where, rule="type")
    if len(properties) > MAX_PROPERTIES:
        raise InvalidValue(
            f"an event has at most {MAX_PROPERTIES} properties", field=where, rule="max_items"
        )
    schema = BUILT_IN_EVENT_TYPES.get(event_type)
    if schema is not None:
        _check_built_in(schema, properties, where)
    else:
        _check_any(properties, where)
    return properties


def _check_built_in(
    schema: Mapping[str, PropertySpec], properties: Mapping[Any, Any], where: str
) -> None:
    for name, spec in schema.items():
        if name not in properties:
            raise InvalidValue(
                f"properties.{name} is required ({spec.describe()})",
                field=f"{where}.{name}",
                rule="required",
            )
        _check_typed(name, spec, properties[name], where)
    if len(properties) == len(schema):
        return  # every property of the schema is there, so none other is
    for name in properties:
        if name not in schema:
            raise InvalidValue(
                f"properties.{name} is not a property of this event type "
                f"(it has {', '.join(schema)})",
                field=f"{where}.{name}",
                rule="extra_forbidden",
            )


def _check_typed(name: str, spec: PropertySpec, value: object, where: str) -> None:
    if spec.type == "integer":
        if not is_integer(value) or not 0 <= value <= MAX_AMOUNT:
            raise InvalidValue(
                f"properties.{name} is {spec.describe()} (a JSON integer), got {value!r}",
                field=f"{where}.{name}",
                rule="type",
            )
        return
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        raise InvalidValue(
            f"properties.{name} is a string of 1 to {MAX_TEXT} characters, got {value!r}",
            field=f"{where}.{name}",
            rule="type",
        )
    if spec.choices and value not in spec.choices:
        raise InvalidValue(
            f"properties.{name} is one of {spec.describe()}, got {value!r}",
            field=f"{where}.{name}",
            rule="choice",
        )


def _check_any(properties: Mapping[Any, Any], where: str) -> None:
    for name, value in properties.items():
        if not isinstance(name, str) or not valid_property_name(name):
            raise InvalidValue(
                f"property names match {PROPERTY_PATTERN}, got {name!r}",
                field=f"{where}.{name}",
                rule="pattern",
            )
        if not is_scalar(value):
            raise InvalidValue(
                f"properties.{name} is a string, a JSON integer or a boolean, got {value!r}",
                field=f"{where}.{name}",
                rule="type",
            )
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise InvalidValue(
                f"properties.{name} has at most {MAX_TEXT} characters",
                field=f"{where}.{name}",
                rule="max_length",
            )


def matches(conditions: Mapping[str, Scalar], properties: Mapping[str, Scalar]) -> bool:
    """Whether every filter condition equals the event's property (types kept apart)."""
    if not conditions:
        return True
    return all(
        name in properties and same_scalar(properties[name], expected)
        for name, expected in conditions.items()
    )


def read(
    meter: MeterDefinition, properties: Mapping[str, Scalar], field_prefix: str = ""
) -> Reading:
    """The reading of one meter whose filter matched the event."""
    group = {n: properties[n] for n in meter.group_by if n in properties} if meter.group_by else {}
    if meter.aggregation is Meter.COUNT:
        return Reading(meter.key, meter.aggregation, 1, "", group)
    name = meter.value_property
    assert name is not None  # MeterDefinition requires it for every other aggregation
    if name not in properties:
        raise InvalidValue(
            f"meter {meter.key} ({meter.aggregation.value}) reads properties.{name}, "
            "which the event lacks",
            field=_path(field_prefix, f"properties.{name}"),
            rule="required",
            meter=meter.key,
        )
    value = properties[name]
    if is_integer(value):
        if not 0 <= value <= MAX_AMOUNT:
            raise InvalidValue(
                f"properties.{name} is the value of meter {meter.key}: "
                f"a whole number from 0 to {MAX_AMOUNT}, got {value!r}",
                field=_path(field_prefix, f"properties.{name}"),
                rule="range",
                meter=meter.key,
            )
        return Reading(meter.key, meter.aggregation, int(value), scalar_text(value), group)
    if meter.aggregation is not Meter.UNIQUE_COUNT:
        raise InvalidValue(
            f"properties.{name} is the value of meter {meter.key} "
            f"({meter.aggregation.value}): a JSON integer from 0 to {MAX_AMOUNT}, got {value!r}",
            field=_path(field_prefix, f"properties.{name}"),
            rule="type",
            meter=meter.key,
        )
    return Reading(meter.key, meter.aggregation, 1, scalar_text(value), group)


def _path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def fact_value(reading: Reading) -> int:
    """The value a quota and billing fold for this reading. For unique_count it must tell
    distinct values apart: an integer property is itself; any other text becomes a stable
    number from its digest (below MAX_AMOUNT; two texts share one with a chance of about
    n²/2·10⁻¹⁵ for n distinct texts, e.g. 5·10⁻⁶ for 100,000)."""
    if reading.aggregation is not Meter.UNIQUE_COUNT:
        return reading.value
    if reading.distinct.isdigit() and int(reading.distinct) <= MAX_AMOUNT:
        return int(reading.distinct)
    digest = hashlib.blake2b(reading.distinct.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % MAX_AMOUNT
