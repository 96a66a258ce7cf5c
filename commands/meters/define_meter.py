"""Define a meter in the app's catalog: which typed usage events it reads (event type and
filter), how it aggregates them (over which property) and what it groups by. The same
definition again is a duplicate (records nothing); another definition of a taken key is
refused (409 meter_redefined)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from commands.base import Command
from commands.meters.resolve import load_meter_catalog
from commands.unit_of_work import UnitOfWork
from domain.meter_catalog import MeterCatalog, MeterDefinition, meter_view


class DefineMeter(Command, MeterDefinition):
    """A meter: `key`, `event_type`, `aggregation`, `value_property` (not for count),
    `filter` ({property: value}, at most 10) and `group_by` (at most 5 properties)."""

    # filter values are compared with event properties as sent: no whitespace stripping
    model_config = ConfigDict(str_strip_whitespace=False)

    def definition(self) -> MeterDefinition:
        return MeterDefinition.model_validate(
            self.model_dump(include=set(MeterDefinition.model_fields))
        )

    def concurrency_key(self) -> str:
        return f"{self.app_id}/meter_catalog"


def define_meter(command: DefineMeter, uow: UnitOfWork) -> dict[str, Any]:
    definition = command.definition()
    catalog = load_meter_catalog(uow, command.app_id)
    if catalog is None:
        catalog = uow.add(MeterCatalog.start(command.app_id, definition, uow.cause))
        created = True
    else:
        created = catalog.define(definition, uow.cause)
    return {**meter_view(definition), "duplicate": not created, "version": catalog.version}
