"""Typed usage events resolved against the app's meter catalog and the tenants' features.

Per batch: the app's MeterCatalog is loaded once, each event is checked and read by its
meters (domain/usage_events.py), and each reading goes to every feature of the event's
tenant that names that meter (the quotas' `meter_key`, from the ownership index).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.eventstore.index import OwnershipIndex
from commands.usage.ports import MeterResolver, Reading, TypedEvent
from domain.meter_catalog import MeterCatalog, meter_catalog_id
from domain.usage_events import fact_value, readings


class CatalogMeters(MeterResolver):
    """Port adapter: the meters of the event store's MeterCatalog per app."""

    def __init__(self, ledger: Any, index: OwnershipIndex) -> None:
        self.ledger, self.index = ledger, index

    def resolve(self, app_id: str, events: Sequence[TypedEvent]) -> list[list[Reading]]:
        catalog = self.ledger.get(meter_catalog_id(app_id))
        meters = catalog.all() if isinstance(catalog, MeterCatalog) else []
        self.index.refresh()
        return [self._readings(app_id, event, meters) for event in events]

    def _readings(self, app_id: str, event: TypedEvent, meters: Any) -> list[Reading]:
        found: list[Reading] = []
        for reading in readings(event.event_type, event.properties, meters, event.field):
            features = self.index.fed_by(app_id, event.tenant_id, reading.meter_key, False)
            group = dict(reading.group) or None
            found += [(feature, fact_value(reading), group) for feature in features]
        return found
