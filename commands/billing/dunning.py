"""Dunning: what a payment attempt's failure or success does to the invoice and its
subscription (docs/dunning.md).

The invoice handlers call these in the same unit of work as the payment event, so the
invoice and its subscription change together or not at all:

- a failed attempt on an open invoice of a subscription is scheduled for a retry by the app's
  `dunning_retry_days`, counted from the first failure (unless the caller names the time);
  an active subscription becomes past_due;
- when no retry is left, the invoice is marked uncollectible and the subscription is canceled
  ("dunning exhausted") or marked unpaid, by the app's `dunning_final_action`;
- a payment returns a past_due or unpaid subscription to active, unless another of its
  invoices is still open with failed attempts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from commands.billing.compose import settings_of
from commands.unit_of_work import UnitOfWork
from domain.billing_settings import BillingSettingsTerms, DunningAction
from domain.invoice import Invoice, InvoiceStatus
from domain.subscription import LIVE, Status, Subscription

DUNNING_EXHAUSTED = "dunning exhausted"
RECOVERABLE = frozenset({Status.PAST_DUE, Status.UNPAID})
CANCELABLE = LIVE | {Status.PAUSED, Status.UNPAID}
MARKABLE_UNPAID = frozenset({Status.ACTIVE, Status.PAST_DUE})


class InvoiceIndex(Protocol):
    """Port: the ids of an app's aggregates of a kind, oldest first, optionally one tenant's
    (adapters.eventstore.index.OwnershipIndex answers it)."""

    def ids(self, app_id: str, kind: str, tenant_id: str | None = None) -> list[UUID]: ...


def record_failure(
    uow: UnitOfWork, invoice: Invoice, reason: str, next_retry_at: datetime | None = None
) -> int:
    """Record a failed attempt (returns its number); on a subscription's open invoice also
    schedule the retry, mark the subscription past_due and give up when none is left."""
    subscription = subscription_of(uow, invoice)
    if subscription is None or invoice.status is not InvoiceStatus.OPEN:
        return invoice.fail_payment(reason, uow.cause, next_retry_at)
    terms = settings_of(uow, invoice.state.app_id)
    retry_at = next_retry_at or next_scheduled_retry(uow, invoice, terms)
    attempt = invoice.fail_payment(reason, uow.cause, retry_at)
    if subscription.status is Status.ACTIVE:
        subscription.mark_past_due(
            uow.cause, reason=f"payment of {invoice.state.number_text} failed: {reason}"
        )
    if retry_at is None:
        give_up(uow, invoice, subscription, terms.dunning_final_action)
    return attempt


def next_scheduled_retry(
    uow: UnitOfWork, invoice: Invoice, terms: BillingSettingsTerms
) -> datetime | None:
    """The retry after the attempt failing now, by the app's schedule (None: give up)."""
    attempt = invoice.state.payment_attempts + 1
    now = uow.cause.occurred_at
    return scheduled_retry(terms, first_failure_at(uow, invoice), attempt, now)


def scheduled_retry(
    terms: BillingSettingsTerms, first_failed_at: datetime, attempt: int, now: datetime
) -> datetime | None:
    """When to retry after failed attempt `attempt`: its slot in the schedule counted from the
    first failure, or the first later slot still ahead of `now` (a late attempt skips the
    slots already past); None when no slot is left."""
    retry_at = terms.next_retry(first_failed_at, attempt)
    while retry_at is not None and retry_at <= now:
        attempt += 1
        retry_at = terms.next_retry(first_failed_at, attempt)
    return retry_at


def first_failure_at(uow: UnitOfWork, invoice: Invoice) -> datetime:
    """When the invoice's first payment attempt failed (now, for the first failure).

    The invoice state keeps no such time, so it is the time of the earliest stored version
    with a failed attempt (attempts only grow: a binary search over the versions); a first
    failure not stored yet (earlier in the same batch) counts as now."""
    if invoice.state.payment_attempts == 0:
        return uow.cause.occurred_at
    low, high = 1, invoice.version
    while low < high:
        middle = (low + high) // 2
        earlier = uow.store.get(invoice.id, version=middle)
        if isinstance(earlier, Invoice) and earlier.state.payment_attempts > 0:
            high = middle
        else:
            low = middle + 1
    found = uow.store.get(invoice.id, version=low)
    if isinstance(found, Invoice) and found.version == low and found.state.payment_attempts:
        return found.modified_on
    return uow.cause.occurred_at


def give_up(
    uow: UnitOfWork, invoice: Invoice, subscription: Subscription, action: DunningAction
) -> None:
    """The last retry failed: the invoice is uncollectible; the subscription is canceled or
    marked unpaid (when its status allows it)."""
    invoice.mark_uncollectible(uow.cause)
    if action == "cancel" and subscription.status in CANCELABLE:
        subscription.cancel(uow.cause, reason=DUNNING_EXHAUSTED)
    elif action == "unpaid" and subscription.status in MARKABLE_UNPAID:
        subscription.mark_unpaid(uow.cause, reason=DUNNING_EXHAUSTED)


def settle(uow: UnitOfWork, invoice: Invoice, invoices: InvoiceIndex | None) -> bool:
    """After the invoice was paid: recover its past_due or unpaid subscription unless another
    of its invoices is still open with failed attempts. Returns whether it recovered.

    Without an index no other invoice is known, so the payment alone decides."""
    subscription = subscription_of(uow, invoice)
    if subscription is None or subscription.status not in RECOVERABLE:
        return False
    if invoices is not None and other_invoice_failing(uow, invoice, invoices):
        return False
    subscription.recover_payment(uow.cause)
    return True


def other_invoice_failing(uow: UnitOfWork, invoice: Invoice, invoices: InvoiceIndex) -> bool:
    """Whether another invoice of the same subscription is open with failed attempts."""
    state = invoice.state
    for other_id in invoices.ids(state.app_id, Invoice.TYPE, state.tenant_id):
        if other_id == invoice.id:
            continue
        other = uow.find(Invoice, other_id)
        if other is not None and is_failing(other, state.subscription_id):
            return True
    return False


def is_failing(invoice: Invoice, subscription_id: UUID | None) -> bool:
    state = invoice.state
    return (
        state.subscription_id == subscription_id
        and invoice.status is InvoiceStatus.OPEN
        and state.payment_attempts > 0
    )


def subscription_of(uow: UnitOfWork, invoice: Invoice) -> Subscription | None:
    """The subscription the invoice bills (of the same app), if any."""
    subscription_id = invoice.state.subscription_id
    if subscription_id is None:
        return None
    found = uow.find(Subscription, subscription_id)
    if found is None or found.state.app_id != invoice.state.app_id:
        return None
    return found
