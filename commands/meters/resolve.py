"""What a metered feature's meter key stands for: the app's MeterCatalog decides the
aggregation (`meter`) of every feature that names a meter key, when a plan is saved."""

from __future__ import annotations

from commands.unit_of_work import UnitOfWork
from domain.catalog import FeatureSpec, PlanTerms
from domain.errors import InvalidValue
from domain.meter_catalog import MeterCatalog, meter_catalog_id


def load_meter_catalog(uow: UnitOfWork, app_id: str) -> MeterCatalog | None:
    """The app's meter catalog, or None before its first meter."""
    catalog = uow.find(MeterCatalog, meter_catalog_id(app_id))
    return catalog if catalog is not None and catalog.state.app_id == app_id else None


def resolve_feature_meters(uow: UnitOfWork, app_id: str, terms: PlanTerms) -> PlanTerms:
    """The terms with each feature's `meter` set to the aggregation of the meter its
    `meter_key` names in the app's catalog (see resolve_terms)."""
    if all(feature.meter_key is None for feature in terms.features):
        return terms  # the catalog is not even loaded
    return resolve_terms(load_meter_catalog(uow, app_id), terms)


def resolve_terms(catalog: MeterCatalog | None, terms: PlanTerms) -> PlanTerms:
    """The terms with every meter key resolved against `catalog`; InvalidValue naming
    `features.<key>.meter` for a key the catalog does not have."""
    if all(feature.meter_key is None for feature in terms.features):
        return terms
    features = [resolve_feature(catalog, feature) for feature in terms.features]
    return terms.model_copy(update={"features": features})


def resolve_feature(catalog: MeterCatalog | None, feature: FeatureSpec) -> FeatureSpec:
    """One feature with its meter resolved (unchanged when it names no meter key)."""
    if feature.meter_key is None:
        return feature
    definition = catalog.get(feature.meter_key) if catalog is not None else None
    if definition is None:
        raise InvalidValue(
            f"unknown meter {feature.meter_key!r}: define it first with POST /v1/meters",
            field=f"features.{feature.key}.meter",
            rule="unknown_meter",
        )
    return feature.model_copy(update={"meter": definition.aggregation})
