"""Which aggregates each app owns, from the creation events in the event log (one per System).

The API lists plans and invoices and the billing run finds the subscriptions and quotas due
with it, until read models answer those lists. It reads only the creation events (a topic
filter in the database), incrementally: each refresh reads what was committed since the last
one, re-reading a trailing overlap of positions because a PostgreSQL position can commit after
a higher one. It keeps ids (and each one's tenant) in memory, per app and kind, in creation
order.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any
from uuid import UUID

import orjson

CREATION_TOPICS: dict[str, str] = {
    "PlanDefined": "plan",
    "SubscriptionStarted": "subscription",
    "InvoiceDrafted": "invoice",
    "QuotaConfigured": "quota",
    "CouponCreated": "coupon",
    "BillingProfileCreated": "billing_profile",
    "TaxRateSet": "tax_rate",  # also each later change of the rate: ids are kept once
    "CreditLedgerOpened": "credit_ledger",  # a tenant's prepaid credit grants
    "PaymentCustomerLinked": "payment_account",  # a tenant's Stripe customer
}

# Invoice events that decide whether a billing run must look at an invoice: a draft (its
# grace period may end) or a failed payment with a retry scheduled needs attention; a
# finalized, paid, void or uncollectible one does not (until a payment fails).
ATTENTION_TOPICS = (
    "InvoiceDrafted",
    "InvoiceFinalized",
    "InvoicePaymentFailed",
    "InvoicePaid",
    "InvoiceVoided",
    "InvoiceMarkedUncollectible",
)


# Quota events that say which catalog meter feeds a tenant's feature (typed usage events).
METER_TOPICS = ("QuotaConfigured", "QuotaReconfigured")
# Subscription events that set its terms: whose plan bills progressively (thresholds).
TERMS_TOPICS = {
    "SubscriptionStarted": "terms",
    "SubscriptionRenewed": "terms",
    "SubscriptionPlanChanged": "to_terms",
}


def _needs_attention(topic: str, state: dict[str, Any]) -> bool:
    if topic == "InvoiceDrafted":
        return True
    return topic == "InvoicePaymentFailed" and state.get("next_retry_at") is not None


class OwnershipIndex:
    def __init__(self, recorder: Any, overlap: int = 1000, batch: int = 5000) -> None:
        self.recorder, self.overlap, self.batch = recorder, overlap, batch
        self._position = 0
        self._ids: dict[tuple[str, str], dict[UUID, str | None]] = defaultdict(dict)
        self._attention: dict[UUID, tuple[int, bool]] = {}  # invoice -> (position, needs it)
        self._monthly_quotas: set[UUID] = set()
        self._fed: dict[tuple[str, str], dict[str, str | None]] = defaultdict(dict)
        self._progressive: dict[UUID, bool] = {}  # subscription -> its plan has thresholds
        self._lock = threading.Lock()

    def apps(self) -> list[str]:
        """Every app that owns something, in first-seen order."""
        self.refresh()
        with self._lock:
            return list(dict.fromkeys(app for app, _ in self._ids))

    def ids(self, app_id: str, kind: str, tenant_id: str | None = None) -> list[UUID]:
        """The app's aggregates of a kind, oldest first (optionally one tenant's). Two
        kinds for billing runs: "invoice_attention" (drafts, and invoices with a payment
        retry scheduled) and "quota_standalone" (the quotas no renewal resets: of tenants
        without a subscription, or counted by day; a consume resets an ended window anyway)."""
        self.refresh()
        with self._lock:
            if kind == "invoice_attention":
                owned = self._ids.get((app_id, "invoice"), {})
                owned = {i: t for i, t in owned.items() if self._attention.get(i, (0, True))[1]}
            elif kind == "subscription_progressive":
                owned = self._ids.get((app_id, "subscription"), {})
                owned = {i: t for i, t in owned.items() if self._progressive.get(i)}
            elif kind == "quota_standalone":
                subscribed = set(self._ids.get((app_id, "subscription"), {}).values())
                owned = self._ids.get((app_id, "quota"), {})
                owned = {
                    i: t
                    for i, t in owned.items()
                    if t not in subscribed or i not in self._monthly_quotas
                }
            else:
                owned = self._ids.get((app_id, kind), {})
            return [i for i, tenant in owned.items() if tenant_id is None or tenant == tenant_id]

    def refresh(self) -> None:
        with self._lock:
            head = self.recorder.max_notification_id() or 0
            start = max(0, self._position - self.overlap)
            topics = tuple(
                dict.fromkeys((*CREATION_TOPICS, *ATTENTION_TOPICS, *METER_TOPICS, *TERMS_TOPICS))
            )
            while start < head:
                notes = self.recorder.select_notifications(
                    start=start + 1, limit=self.batch, stop=head, topics=topics
                )
                if not notes:
                    break
                for note in notes:
                    self._note(note, orjson.loads(note.state))
                start = notes[-1].id
            self._position = max(self._position, head)

    def tenant_of(self, app_id: str, kind: str, aggregate_id: UUID) -> str | None:
        """The tenant owning an aggregate of a kind (as of the last refresh)."""
        with self._lock:
            return self._ids.get((app_id, kind), {}).get(aggregate_id)

    def fed_by(
        self, app_id: str, tenant_id: str, meter_key: str, refresh: bool = True
    ) -> list[str]:
        """The tenant's metered features that a catalog meter feeds, by feature key
        (`refresh=False`: as of the last refresh, for many lookups in a row)."""
        if refresh:
            self.refresh()
        with self._lock:
            fed = self._fed.get((app_id, tenant_id), {})
            return sorted(feature for feature, key in fed.items() if key == meter_key)

    def _note(self, note: Any, state: dict[str, Any]) -> None:
        if note.topic in TERMS_TOPICS:
            terms = state.get(TERMS_TOPICS[note.topic]) or {}
            self._progressive[note.originator_id] = bool(terms.get("progressive_thresholds"))
        if note.topic in METER_TOPICS:
            fed = self._fed[(str(state.get("app_id")), str(state.get("tenant_id")))]
            fed[str(state.get("feature_key"))] = state.get("meter_key")
        if note.topic in ATTENTION_TOPICS:
            seen = self._attention.get(note.originator_id)
            if seen is None or seen[0] <= note.id:
                self._attention[note.originator_id] = (note.id, _needs_attention(note.topic, state))
        if note.topic not in CREATION_TOPICS:
            return
        if note.topic == "QuotaConfigured" and state.get("period") == "month":
            self._monthly_quotas.add(note.originator_id)
        owned = self._ids[(str(state.get("app_id")), CREATION_TOPICS[note.topic])]
        if note.originator_id not in owned:
            owned[note.originator_id] = state.get("tenant_id")
