"""Keep a tenant's quotas in line with its plan terms: one Quota per metered feature.

Called by the subscription commands in their own unit of work, so the subscription's event
and the quota changes are saved in one transaction.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from commands.unit_of_work import UnitOfWork
from domain.catalog import FeatureKind, PlanTerms
from domain.quota import Quota, quota_id


def sync_quotas_from_plan(
    uow: UnitOfWork,
    *,
    app_id: str,
    tenant_id: str,
    subscription_id: UUID,
    terms: PlanTerms,
    anchor: datetime,
    previous: PlanTerms | None = None,
) -> None:
    """Configure quotas for new metered features (windows from `anchor`), reconfigure the
    ones that already exist (keeping their anchor and window usage), and disable the ones
    metered in `previous` that are no longer metered in `terms`."""
    metered = {f.key: f for f in terms.features if f.kind is FeatureKind.METERED}
    for spec in metered.values():
        quota = uow.find(Quota, quota_id(app_id, tenant_id, spec.key))
        if quota is None:
            uow.add(Quota.configure(app_id, tenant_id, spec, subscription_id, anchor, uow.cause))
        else:
            quota.reconfigure(spec, subscription_id, uow.cause)
    if previous is None:
        return
    for feature in previous.features:
        if feature.kind is not FeatureKind.METERED or feature.key in metered:
            continue
        quota = uow.find(Quota, quota_id(app_id, tenant_id, feature.key))
        if quota is not None and quota.state.enabled:
            quota.disable(uow.cause)
