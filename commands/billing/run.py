"""The billing run: move a settable clock to `until` and do, for one app, what fell due.

In time order across the app's subscriptions, quotas and invoices (the clock is set to each
due instant before acting, so every event carries the time it fell due):
- a billing point of a subscription not invoiced yet: `invoice_subscription` (the invoice is
  drafted and, without a grace period, finalized; see domain/billing.py for the points);
- a trialing subscription whose trial ended: `end_trial` (the first paid period starts);
- an active or past-due subscription whose period ended: `renew_subscription`, which carries
  out a cancel scheduled for the period end or applies a plan change scheduled for it;
- a quota whose window ended: `reset_quota`;
- a draft whose grace period ended: `finalize_invoice`;
- an open invoice whose `next_retry_at` came: `retry_invoice_payment` (dunning);
- a tenant's credit grant whose `expires_at` came: `expire_credit_grants` (what is left
  lapses, CreditExpired).
An invoice due at an instant comes before a renewal at the same instant. Paused, canceled
and expired subscriptions have nothing due but their final invoice. Usage is counted up to
`cutoff`, the log position the usage read model had applied when the run started (the
caller waits for it), so a lagging projector never under-bills. A run stops after
`max_actions` commands with `complete: false` (call it again to go on). Used by
`POST /v1/billing-runs` and `tally clock advance`.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from commands.base import Command
from commands.billing.invoice_subscription import InvoiceSubscription
from commands.bus import CommandResult
from commands.credits.expire_credit_grants import ExpireCreditGrants
from commands.invoices.finalize_invoice import FinalizeInvoice
from commands.invoices.retry_invoice_payment import RetryInvoicePayment
from commands.quotas.reset_quota import ResetQuota
from commands.subscriptions.end_trial import EndTrial
from commands.subscriptions.renew_subscription import RenewSubscription
from domain.balance import balance_id
from domain.billing import next_billing_point
from domain.billing_settings import billing_settings_id
from domain.catalog import FeatureKind
from domain.clock import SettableClock
from domain.credit_grant import TenantCredits, tenant_credits_id
from domain.discount import subscription_discounts_id
from domain.errors import DomainError
from domain.invoice import Invoice, InvoiceStatus
from domain.profile import billing_profile_id
from domain.quota import Quota, quota_id
from domain.subscription import Status, Subscription

MAX_ACTIONS = 10_000
ACTOR = "billing-run"
# what a run looks at: every subscription, the quotas no renewal resets, and the invoices
# that may need something (drafts, payment retries); see the ownership index
KINDS = ("subscription", "quota_standalone", "invoice_attention", "credit_ledger")

Due = tuple[datetime, int, str, UUID]  # (instant, order at that instant, action, id)
Owned = Callable[[str, str], list[UUID]]  # (app_id, kind) -> aggregate ids
Execute = Callable[[Command], CommandResult]
Build = Callable[[str, str, Any], Command]
LoadMany = Callable[[Sequence[UUID]], dict[UUID, Any]]  # ids -> those that exist
LOAD_CHUNK = 1000  # aggregates per bulk load of the run's start-up scan

COUNTED = {
    "invoice": "invoiced",
    "end_trial": "trials_ended",
    "renew": "renewed",
    "reset_quota": "quotas_reset",
    "finalize": "finalized",
    "retry_payment": "payments_retried",
    "expire_credits": "credits_expired",
}


def subscription_due(subscription: Any) -> Due | None:
    """What a subscription needs next: an invoice first, then its trial end or renewal."""
    if not isinstance(subscription, Subscription):
        return None
    state = subscription.state
    point = next_billing_point(state)
    if point is not None:  # due when it fell due, or when a later change made it due
        return max(point.at, subscription.modified_on), 0, "invoice", subscription.id
    if state.status is Status.TRIALING and state.trial_end is not None:
        return state.trial_end, 1, "end_trial", subscription.id
    if state.status in (Status.ACTIVE, Status.PAST_DUE):
        return state.current_period.end, 1, "renew", subscription.id
    return None


def quota_due(quota: Any) -> Due | None:
    if not isinstance(quota, Quota) or not quota.state.enabled or quota.state.window is None:
        return None
    return quota.state.window.end, 2, "reset_quota", quota.id


def invoice_due(invoice: Any) -> Due | None:
    """A draft whose grace period has an end finalizes by itself then."""
    if not isinstance(invoice, Invoice) or invoice.status is not InvoiceStatus.DRAFT:
        return None
    state = invoice.state
    if state.finalize_at is None or state.origin == "manual" or not state.lines:
        return None
    return state.finalize_at, 3, "finalize", invoice.id


def payment_retry_due(invoice: Any) -> Due | None:
    """An open invoice whose payment failed is tried again at its next_retry_at."""
    if not isinstance(invoice, Invoice) or invoice.status is not InvoiceStatus.OPEN:
        return None
    if invoice.state.next_retry_at is None:
        return None
    return invoice.state.next_retry_at, 3, "retry_payment", invoice.id


def credits_due(ledger: Any) -> Due | None:
    """A tenant's credit grants lapse at the earliest expires_at of one with something left."""
    if not isinstance(ledger, TenantCredits):
        return None
    instant = ledger.due_expiry()
    return None if instant is None else (instant, 2, "expire_credits", ledger.id)


def due_of(aggregate: Any) -> Due | None:
    for rule in (subscription_due, quota_due, invoice_due, payment_retry_due, credits_due):
        found = rule(aggregate)
        if found is not None:
            return found
    return None


def due_command(
    app_id: str, action: str, aggregate: Any, actor: str = ACTOR, cutoff: int | None = None
) -> Command:
    if action == "reset_quota":
        return ResetQuota(
            app_id=app_id,
            actor=actor,
            tenant_id=aggregate.state.tenant_id,
            feature_key=aggregate.state.feature_key,
            only_if_ended=True,
        )
    if action == "expire_credits":
        return ExpireCreditGrants(app_id=app_id, actor=actor, tenant_id=aggregate.state.tenant_id)
    if action == "finalize":
        return FinalizeInvoice(app_id=app_id, actor=actor, invoice_id=aggregate.id)
    if action == "retry_payment":
        attempt = aggregate.state.payment_attempts + 1
        return RetryInvoicePayment(
            app_id=app_id, actor=actor, invoice_id=aggregate.id, attempt=attempt
        )
    if action == "invoice":
        return InvoiceSubscription(
            app_id=app_id, actor=actor, subscription_id=aggregate.id, usage_cutoff=cutoff
        )
    if action == "renew":
        return RenewSubscription(
            app_id=app_id, actor=actor, subscription_id=aggregate.id, usage_cutoff=cutoff
        )
    return EndTrial(app_id=app_id, actor=actor, subscription_id=aggregate.id)


ExecuteMany = Callable[
    [list[Command], list[datetime], set[UUID], dict[UUID, Any]],
    list[CommandResult | DomainError],
]


def lookups_of(aggregate: Any) -> list[UUID]:
    """Aggregates a due item's command looks up that often do not exist (the caller may
    check them all at once before the batch)."""
    if not isinstance(aggregate, Subscription):
        return []
    state = aggregate.state
    return [
        subscription_discounts_id(state.app_id, aggregate.id),
        billing_profile_id(state.app_id, state.tenant_id),
        balance_id(state.app_id, state.tenant_id, state.price.currency),
        tenant_credits_id(state.app_id, state.tenant_id),
        billing_settings_id(state.app_id),
    ]


def quotas_of(item: Due, aggregate: Any) -> list[UUID]:
    """The quotas a renewal finds (those of the subscription's metered features: it resets
    them or, canceling, suspends them), loaded with the batch. The renewal finds them right
    after the subscription, so the order the batch records events in is kept: the
    subscription's, its quotas', then its invoice's."""
    if item[2] != "renew" or not isinstance(aggregate, Subscription):
        return []
    state = aggregate.state
    return [
        quota_id(state.app_id, state.tenant_id, feature.key)
        for feature in state.terms.features
        if feature.kind is FeatureKind.METERED
    ]


@dataclass
class BillingRun:
    """One app's run up to `until` (see the module docstring).

    With `execute_many` (a group commit taking each command's instant) the due items are run
    `batch` at a time in one transaction, in time order, never two of one aggregate at once;
    `touched` is where that commit leaves the aggregates it saved, read instead of reloading.
    With `load_many` the start-up scan loads the app's aggregates LOAD_CHUNK at a time.
    """

    load: Callable[[UUID], Any]
    owned: Owned
    execute: Execute
    clock: SettableClock
    build: Build
    max_actions: int = MAX_ACTIONS
    execute_many: ExecuteMany | None = None
    batch: int = 200
    load_many: LoadMany | None = None
    touched: dict[UUID, Any] = field(default_factory=dict)
    _known: dict[UUID, Any] = field(default_factory=dict)
    _queued: dict[UUID, Due] = field(default_factory=dict)  # each aggregate's current item

    def run(self, app_id: str, until: datetime) -> dict[str, Any]:
        due = self._initial(app_id, until)
        self._queued = {item[3]: item for item in due}
        counts: Counter[str] = Counter()
        errors: list[dict[str, Any]] = []
        actions = 0
        while due and actions < self.max_actions:
            items = self._pop(due, min(self._size(), self.max_actions - actions))
            if not items:
                break
            actions += len(items)
            outcomes = self._perform(app_id, items)
            for item, outcome in zip(items, outcomes, strict=True):
                _count(item, outcome, counts, errors)
            self._unfound(items, outcomes)
            self._requeue(due, items, until)
        if not self._queued:
            self.clock.set(max(until, self.clock.now()))
        return _report(until, self.clock.now(), counts, errors, complete=not self._queued)

    def _pop(self, due: list[Due], size: int) -> list[Due]:
        """The next items still current (one an earlier batch changed was queued again with
        what it needs now), at most one per tenant: a tenant's aggregates act on each other
        (a payment retry may cancel the subscription), so they never share a batch."""
        items: list[Due] = []
        later: list[Due] = []
        tenants: set[str | None] = set()
        while due and len(items) < size:
            item = heapq.heappop(due)
            if self._queued.get(item[3]) != item:
                continue
            tenant = getattr(self._known[item[3]].state, "tenant_id", None)
            if tenant in tenants:
                later.append(item)
                continue
            tenants.add(tenant)
            del self._queued[item[3]]
            items.append(item)
        for item in later:
            heapq.heappush(due, item)
        return items

    def _requeue(self, due: list[Due], done: list[Due], until: datetime) -> None:
        """Queue what the acted-on aggregates, and any other the batch changed or made,
        need next (a subscription dunning canceled no longer renews; a draft made by the
        batch finalizes when its grace period ends, in this run if that is before `until`)."""
        for item in done:
            following = due_of(self._reload(item[3]))
            if following is not None and _later(following, item, until):
                self._queue(due, following)
        acted = {item[3] for item in done}
        for aggregate_id in [i for i in self.touched if i not in acted]:
            following = due_of(self._reload(aggregate_id))
            queued = self._queued.get(aggregate_id)
            if following is None or following[0] > until:
                self._queued.pop(aggregate_id, None)
            elif following != queued:  # changed by the batch, or new (a draft in its grace)
                self._queue(due, following)

    def _queue(self, due: list[Due], item: Due) -> None:
        self._queued[item[3]] = item
        heapq.heappush(due, item)

    def _size(self) -> int:
        return self.batch if self.execute_many is not None else 1

    def _perform(self, app_id: str, items: list[Due]) -> list[CommandResult | DomainError]:
        latest = items[-1][0]
        if latest > self.clock.now():
            self.clock.set(latest)
        commands = [self.build(app_id, item[2], self._known[item[3]]) for item in items]
        self.touched.clear()
        if self.execute_many is not None:
            lookups = {i for item in items for i in lookups_of(self._known[item[3]])}
            loaded = {item[3]: self._known[item[3]] for item in items}
            loaded |= self._quotas(items, loaded)
            return self.execute_many(commands, [item[0] for item in items], lookups, loaded)
        try:
            return [self.execute(commands[0])]
        except DomainError as error:
            return [error]

    def _initial(self, app_id: str, until: datetime) -> list[Due]:
        due: list[Due] = []
        for kind in KINDS:
            for aggregate_id, aggregate in self._load_all(self.owned(app_id, kind)):
                item = due_of(self._remember(aggregate_id, aggregate))
                if item is not None and item[0] <= until:
                    due.append(item)
        heapq.heapify(due)
        return due

    def _quotas(self, items: list[Due], loaded: dict[UUID, Any]) -> dict[UUID, Any]:
        """The batch's renewals' quotas, in one bulk load (none without `load_many`)."""
        wanted = [i for item in items for i in quotas_of(item, self._known[item[3]])]
        wanted = [i for i in wanted if i not in loaded]
        return self.load_many(wanted) if self.load_many is not None and wanted else {}

    def _unfound(self, items: list[Due], outcomes: list[CommandResult | DomainError]) -> None:
        """A refused renewal found none of the quotas loaded for it: they leave `touched`
        (as a renewal that loaded them itself would have left them out), so they are not
        looked at again. A tenant's quotas are in no other item of the batch."""
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, DomainError):
                for quota in quotas_of(item, self._known[item[3]]):
                    self.touched.pop(quota, None)

    def _load_all(self, ids: list[UUID]) -> list[tuple[UUID, Any]]:
        """(id, aggregate or None) for each id, in bulk loads when the run has them."""
        if self.load_many is None:
            return [(i, self.load(i)) for i in ids]
        loaded: list[tuple[UUID, Any]] = []
        for start in range(0, len(ids), LOAD_CHUNK):
            chunk = ids[start : start + LOAD_CHUNK]
            found = self.load_many(chunk)
            loaded += [(i, found.get(i)) for i in chunk]
        return loaded

    def _reload(self, aggregate_id: UUID) -> Any:
        found = self.touched.get(aggregate_id)
        return self._remember(aggregate_id, found or self.load(aggregate_id))

    def _remember(self, aggregate_id: UUID, aggregate: Any) -> Any:
        self._known[aggregate_id] = aggregate
        return aggregate


def _count(
    item: Due,
    outcome: CommandResult | DomainError,
    counts: Counter[str],
    errors: list[dict[str, Any]],
) -> None:
    action, aggregate_id = item[2], item[3]
    if isinstance(outcome, DomainError):
        errors.append({"aggregate_id": str(aggregate_id), "action": action, **outcome.as_dict()})
        return
    result = outcome.result
    if action == "renew" and result.get("status") == Status.CANCELED.value:
        counts["canceled"] += 1
    elif action == "expire_credits":
        counts["credits_expired"] += int(result.get("expired", 0))
    elif action not in ("invoice", "reset_quota") or result.get("invoiced") or result.get("reset"):
        counts[COUNTED[action]] += 1
    counts["quotas_reset"] += int(result.get("quotas_reset", 0)) if action == "renew" else 0
    invoice = result.get("invoice") if action in ("invoice", "renew") else None
    if invoice is not None:
        counts["invoiced"] += 1 if action == "renew" else 0
        counts["finalized"] += invoice.get("status") != InvoiceStatus.DRAFT.value


def _later(following: Due, done: Due, until: datetime) -> bool:
    """Whether an aggregate's next due item is new and in the run (a refused item is not
    retried in the same run)."""
    return following != done and done[0] <= following[0] <= until


def _report(
    until: datetime,
    clock: datetime,
    counts: Counter[str],
    errors: list[dict[str, Any]],
    *,
    complete: bool,
) -> dict[str, Any]:
    return {
        "until": until.isoformat(),
        "clock": clock.isoformat(),
        "trials_ended": counts["trials_ended"],
        "renewed": counts["renewed"],
        "canceled": counts["canceled"],
        "quotas_reset": counts["quotas_reset"],
        "invoiced": counts["invoiced"],
        "finalized": counts["finalized"],
        "payments_retried": counts["payments_retried"],
        "credits_expired": counts["credits_expired"],
        "errors": errors,
        "complete": complete,
    }
