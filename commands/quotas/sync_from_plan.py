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
from domain.subscription import Status, Subscription


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


def suspend_quotas(
    uow: UnitOfWork, *, app_id: str, tenant_id: str, terms: PlanTerms, reason: str
) -> None:
    """The subscription stopped (paused, canceled, expired): refuse its metered features
    until a resume or a new subscription configures them again."""
    for feature in terms.features:
        if feature.kind is not FeatureKind.METERED:
            continue
        quota = uow.find(Quota, quota_id(app_id, tenant_id, feature.key))
        if quota is not None and quota.state.enabled:
            quota.disable(uow.cause, reason)


def follow_subscription(uow: UnitOfWork, subscription: Subscription, previous: PlanTerms) -> None:
    """After a subscription command: quotas follow its status and plan, in the same unit of
    work (so in the same transaction)."""
    state = subscription.state
    if state.status in (Status.PAUSED, Status.CANCELED, Status.EXPIRED, Status.UNPAID):
        reason = f"subscription_{state.status.value}"
        suspend_quotas(
            uow, app_id=state.app_id, tenant_id=state.tenant_id, terms=previous, reason=reason
        )
        return
    sync_quotas_from_plan(
        uow,
        app_id=state.app_id,
        tenant_id=state.tenant_id,
        subscription_id=subscription.id,
        terms=state.terms,
        anchor=state.current_period.start,
        previous=previous,
    )


def reset_ended_windows(uow: UnitOfWork, subscription: Subscription) -> int:
    """At a renewal: every enabled quota of the plan whose window ended starts its next one
    (in the same transaction as the renewal, instead of a reset of its own later); returns
    how many did."""
    state = subscription.state
    reset = 0
    for feature in state.terms.features:
        if feature.kind is not FeatureKind.METERED:
            continue
        quota = uow.find(Quota, quota_id(state.app_id, state.tenant_id, feature.key))
        if quota is not None and quota.state.enabled and quota.window_ended(uow.now):
            quota.reset(uow.cause)
            reset += 1
    return reset
