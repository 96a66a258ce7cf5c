"""Which events the entitlements projector reads, and what each does to a tenant's status."""

from __future__ import annotations

from domain.entitlement_grant import FeatureGranted, FeatureGrantRevoked
from domain.quota import (
    AllowanceGranted,
    GrantRevoked,
    QuotaConfigured,
    QuotaConsumed,
    QuotaDisabled,
    QuotaExceeded,
    QuotaReconfigured,
    QuotaReset,
    SoftLimitReached,
    UsageRecorded,
)
from domain.subscription import (
    CancellationScheduled,
    CancellationUndone,
    MarkedPastDue,
    PaymentRecovered,
    PlanChanged,
    Status,
    SubscriptionCanceled,
    SubscriptionExpired,
    SubscriptionPaused,
    SubscriptionRenewed,
    SubscriptionResumed,
    SubscriptionStarted,
    TrialEnded,
)

SUBSCRIPTION_TERMS = frozenset(
    {SubscriptionStarted.NAME, PlanChanged.NAME, SubscriptionRenewed.NAME}
)
"""Events that carry the plan's terms (its features)."""

SUBSCRIPTION_STATUS: dict[str, str] = {
    TrialEnded.NAME: Status.ACTIVE.value,
    SubscriptionCanceled.NAME: Status.CANCELED.value,
    SubscriptionPaused.NAME: Status.PAUSED.value,
    SubscriptionResumed.NAME: Status.ACTIVE.value,
    MarkedPastDue.NAME: Status.PAST_DUE.value,
    PaymentRecovered.NAME: Status.ACTIVE.value,
    SubscriptionExpired.NAME: Status.EXPIRED.value,
}
"""The status a subscription event leaves the subscription in."""

SUBSCRIPTION_EVENTS = (
    SUBSCRIPTION_TERMS
    | frozenset(SUBSCRIPTION_STATUS)
    | {CancellationScheduled.NAME, CancellationUndone.NAME}
)
QUOTA_EVENTS = frozenset(
    {
        QuotaConfigured.NAME,
        QuotaReconfigured.NAME,
        QuotaDisabled.NAME,
        QuotaConsumed.NAME,
        UsageRecorded.NAME,
        QuotaExceeded.NAME,
        SoftLimitReached.NAME,
        AllowanceGranted.NAME,
        GrantRevoked.NAME,
        QuotaReset.NAME,
    }
)
GRANT_EVENTS = frozenset({FeatureGranted.NAME, FeatureGrantRevoked.NAME})
