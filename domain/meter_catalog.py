"""Meters as catalog objects: an app's named definitions of how typed usage events become
quantities (the MeterCatalog aggregate, one per app).

A meter reads events of one `event_type`: those whose properties equal every `filter` value,
folded by its `aggregation` (domain.catalog.Meter) over its `value_property` (none for count),
optionally split by the `group_by` properties. A metered feature of a plan names a meter by
its `key` (domain/catalog.py FeatureSpec.meter_key); domain/usage_events.py turns an event
into the readings of the meters it feeds.

Defining a key again with the same definition records nothing (a duplicate); with another
definition it is refused (MeterRedefined, 409): a meter's meaning never changes under the
usage already counted by it.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import Field, PlainValidator, WithJsonSchema, model_validator

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.catalog import Meter, validate_key
from domain.errors import Conflict, InvalidValue
from domain.usage_events import (
    BUILT_IN_EVENT_TYPES,
    EVENT_TYPE_PATTERN,
    MAX_TEXT,
    PROPERTY_PATTERN,
    PropertySpec,
    Scalar,
    is_scalar,
    valid_event_type,
    valid_property_name,
)
from domain.value import FrozenValue

MAX_FILTERS = 10
MAX_GROUP_BY = 5
MAX_METERS = 1000
"""Most meters one app defines (bounds the catalog's snapshot)."""

AGGREGATION_NAMES = frozenset(meter.value for meter in Meter)
VALUE_AGGREGATIONS = frozenset({Meter.SUM, Meter.MAX, Meter.LATEST, Meter.UNIQUE_COUNT})
"""The aggregations that read a value property (count counts events)."""


class MeterRedefined(Conflict):
    """A meter key is taken by a different definition."""

    code = "meter_redefined"


def _filter_value(value: object) -> Scalar:
    """A filter value as sent: a string (at most MAX_TEXT), a JSON integer or a boolean."""
    if not is_scalar(value):
        raise ValueError(f"a filter value is a string, a JSON integer or a boolean, got {value!r}")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise ValueError(f"a filter value has at most {MAX_TEXT} characters")
    return value


FilterValue = Annotated[
    Scalar,
    PlainValidator(_filter_value),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}]}),
]
"""A value a filter compares a property with (types kept apart: true is not 1)."""


def meter_catalog_id(app_id: str) -> UUID:
    return stable_id("meter_catalog", app_id)


def is_aggregation_name(value: str) -> bool:
    """Whether `value` is a built-in aggregation (sum, count, max, unique_count, latest)."""
    return value in AGGREGATION_NAMES


class MeterDefinition(FrozenValue):
    """How one meter reads typed usage events: type, filter, aggregation, value, grouping."""

    key: str = Field(description="a key (not an aggregation name); features name it as meter")
    event_type: str = Field(
        description="api_request, storage, bandwidth, compute, or the app's own (snake_case)"
    )
    aggregation: Meter
    value_property: str | None = Field(
        default=None, description="the property aggregated (sum, max, latest, unique_count)"
    )
    filter: dict[str, FilterValue] = Field(
        default_factory=dict, description="{property: value}: equality, at most 10"
    )
    group_by: list[str] = Field(
        default_factory=list, description="properties the usage is split by, at most 5"
    )

    @model_validator(mode="after")
    def _rules(self) -> MeterDefinition:
        _check_key(self.key)
        if not valid_event_type(self.event_type):
            raise InvalidValue(
                f"event_type is a snake_case name matching {EVENT_TYPE_PATTERN}",
                field="event_type",
                rule="pattern",
            )
        self._check_value_property()
        self._check_filter()
        self._check_group_by()
        return self

    def _check_value_property(self) -> None:
        name = self.value_property
        if self.aggregation not in VALUE_AGGREGATIONS:
            if name is not None:
                raise InvalidValue(
                    "a count meter counts events: it takes no value_property",
                    field="value_property",
                    rule="not_allowed",
                )
            return
        if name is None:
            raise InvalidValue(
                f"a {self.aggregation.value} meter needs a value_property",
                field="value_property",
                rule="required",
            )
        spec = self._property(name, "value_property")
        if (
            spec is not None
            and spec.type != "integer"
            and self.aggregation is not Meter.UNIQUE_COUNT
        ):
            raise InvalidValue(
                f"a {self.aggregation.value} meter reads an integer property; "
                f"{self.event_type}.{name} is a string",
                field="value_property",
                rule="integer_property",
            )

    def _check_filter(self) -> None:
        if len(self.filter) > MAX_FILTERS:
            raise InvalidValue(
                f"a meter has at most {MAX_FILTERS} filter conditions",
                field="filter",
                rule="max_items",
            )
        for name, expected in self.filter.items():
            spec = self._property(name, f"filter.{name}")
            if spec is not None and not _fits(spec, expected):
                raise InvalidValue(
                    f"filter.{name}: {self.event_type}.{name} is {spec.describe()}, "
                    f"so {expected!r} never matches",
                    field=f"filter.{name}",
                    rule="type",
                )

    def _check_group_by(self) -> None:
        if len(self.group_by) > MAX_GROUP_BY:
            raise InvalidValue(
                f"a meter groups by at most {MAX_GROUP_BY} properties",
                field="group_by",
                rule="max_items",
            )
        if len(set(self.group_by)) != len(self.group_by):
            raise InvalidValue(
                "group_by properties are distinct", field="group_by", rule="unique_items"
            )
        for index, name in enumerate(self.group_by):
            self._property(name, f"group_by.{index}")

    def _property(self, name: str, field: str) -> PropertySpec | None:
        """The built-in property `name` (None for an app-defined type); InvalidValue naming
        `field` for a malformed name or one the built-in type does not have."""
        if not valid_property_name(name):
            raise InvalidValue(
                f"property names match {PROPERTY_PATTERN}, got {name!r}",
                field=field,
                rule="pattern",
            )
        schema = BUILT_IN_EVENT_TYPES.get(self.event_type)
        if schema is None:
            return None
        if name not in schema:
            raise InvalidValue(
                f"{self.event_type} has no property {name!r} (it has {', '.join(schema)})",
                field=field,
                rule="unknown_property",
            )
        return schema[name]


def _check_key(key: str) -> None:
    validate_key(key, "key")
    if is_aggregation_name(key):
        raise InvalidValue(
            f"key {key!r} is a built-in aggregation name; choose another",
            field="key",
            rule="reserved",
        )


def _fits(spec: PropertySpec, value: Scalar) -> bool:
    """Whether a filter value can ever equal a property of this spec."""
    if spec.type == "integer":
        return type(value) is int
    if not isinstance(value, str):
        return False
    return not spec.choices or value in spec.choices


def meter_view(definition: MeterDefinition) -> dict[str, Any]:
    """A definition as JSON (the shape POST /v1/meters takes)."""
    return definition.model_dump(mode="json")


# --- the aggregate ---


class MeterCatalogState(AggregateState):
    meters: list[MeterDefinition] = Field(default_factory=list)


class MeterDefined(CreatedEvent):
    """A meter was defined (the app's first creates its catalog)."""

    AGGREGATE_TYPE: ClassVar[str] = "meter_catalog"
    NAME: ClassVar[str] = "MeterDefined"
    meter: MeterDefinition

    def mutate(self, aggregate: Any) -> Any:
        if aggregate is None:
            return super().mutate(aggregate)  # CreatedEvent: builds the aggregate
        return DomainEvent.mutate(self, aggregate)

    def apply(self, aggregate: Any) -> None:
        if self.originator_version == 1:
            aggregate.state = MeterCatalogState(app_id=self.app_id)
        aggregate.state.meters.append(self.meter)


class MeterCatalog(Aggregate[MeterCatalogState]):
    """An app's meters, in definition order; a key names one definition forever."""

    TYPE: ClassVar[str] = "meter_catalog"
    State = MeterCatalogState

    @classmethod
    def start(cls, app_id: str, definition: MeterDefinition, cause: Cause) -> MeterCatalog:
        """The app's catalog, created by its first meter."""
        return cls._create(
            MeterDefined, meter_catalog_id(app_id), cause, app_id=app_id, meter=definition
        )

    def define(self, definition: MeterDefinition, cause: Cause) -> bool:
        """Add a meter; the same definition again records nothing (False); another
        definition of a taken key raises MeterRedefined naming `key`."""
        existing = self.get(definition.key)
        if existing is not None:
            if existing == definition:
                return False
            raise MeterRedefined(
                f"meter {definition.key} is already defined differently; "
                "a meter's definition never changes (define a new key)",
                field="key",
                rule="redefined",
            )
        if len(self.state.meters) >= MAX_METERS:
            raise InvalidValue(
                f"an app defines at most {MAX_METERS} meters", field="key", rule="max_items"
            )
        self._trigger(MeterDefined, cause, meter=definition)
        return True

    def get(self, key: str) -> MeterDefinition | None:
        """The meter of this key, or None."""
        return next((meter for meter in self.state.meters if meter.key == key), None)

    def meters_for(self, event_type: str) -> list[MeterDefinition]:
        """The meters reading events of this type, in definition order."""
        return [meter for meter in self.state.meters if meter.event_type == event_type]

    def all(self) -> list[MeterDefinition]:
        """Every meter, in definition order."""
        return list(self.state.meters)
