"""Revenue read model: MRR/ARR per currency, subscriptions per plan and status, churn,
recognized revenue and paid/failed invoice counts.

Built from event data and this projector's own rows only (never from aggregates):

- `revenue_subscriptions`: one row per subscription (plan, status, currency, billing
  interval, price and the ARR it contributes now), so events that carry no price
  (trial ended, past due, payment recovered) can still be interpreted.
- `revenue_arr` per (app, currency): the exact sum of annualized prices in minor units of
  the subscriptions that pay now: ACTIVE and PAST_DUE only (not trialing, paused, canceled
  or expired). Annualized = price x 12 for monthly plans, x 1 for yearly plans, x 365 for
  daily plans. MRR = ARR / 12 rounded half-up, computed at read time, so no rounding error
  accumulates.
- `revenue_plan_status` per (app, plan, status): how many subscriptions are in that state
  (every status is counted; the queries show the live ones as "active subscriptions").
- `revenue_churn` per (app, month, currency): subscriptions canceled or expired while
  paying (previous status ACTIVE or PAST_DUE; a trial that is canceled, or a paused
  subscription, was not contributing to MRR and is not churn), with the ARR they took away.
  The month is the UTC calendar month of the cancel or expiry.
- `revenue_recognized` per (app, currency, day): revenue is RECOGNIZED ON THE DAY THE
  INVOICE IS PAID (InvoicePaid.paid_at, UTC), for its whole paid amount; it is not spread
  over the invoice's service period.
- `revenue_invoices` per (app, currency): paid invoices (and their amount), invoices with at
  least one failed payment attempt (`failed`, counted at attempt 1) and all failed attempts.
"""

from __future__ import annotations

from typing import Any, ClassVar

import structlog

from domain.invoice import InvoicePaid, InvoicePaymentFailed
from domain.subscription import (
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
from projections.base import Projector, Row, ViewTx
from projections.envelope import EventEnvelope
from projections.usage.projector import parse_instant

log = structlog.get_logger(__name__)

SUBSCRIPTIONS = "revenue_subscriptions"
ARR = "revenue_arr"
PLAN_STATUS = "revenue_plan_status"
CHURN = "revenue_churn"
RECOGNIZED = "revenue_recognized"
INVOICES = "revenue_invoices"

PAYING = frozenset({Status.ACTIVE.value, Status.PAST_DUE.value})
"""Statuses whose subscriptions count in MRR/ARR and whose end is churn."""
LIVE = frozenset(
    {Status.TRIALING.value, Status.ACTIVE.value, Status.PAST_DUE.value, Status.PAUSED.value}
)
"""Statuses of subscriptions that have not ended."""

ANNUAL_FACTOR = {"day": 365, "month": 12, "year": 1}


def annualized(price: int, interval: str) -> int:
    """A price per billing interval as a yearly amount, exactly, in minor units."""
    return price * ANNUAL_FACTOR[interval]


_SUBSCRIPTION_EVENTS = frozenset(
    {
        SubscriptionStarted.NAME,
        TrialEnded.NAME,
        PlanChanged.NAME,
        SubscriptionRenewed.NAME,
        SubscriptionPaused.NAME,
        SubscriptionResumed.NAME,
        SubscriptionCanceled.NAME,
        SubscriptionExpired.NAME,
        MarkedPastDue.NAME,
        PaymentRecovered.NAME,
    }
)
_STATUS_AFTER = {
    TrialEnded.NAME: Status.ACTIVE.value,
    SubscriptionPaused.NAME: Status.PAUSED.value,
    SubscriptionResumed.NAME: Status.ACTIVE.value,
    SubscriptionCanceled.NAME: Status.CANCELED.value,
    SubscriptionExpired.NAME: Status.EXPIRED.value,
    MarkedPastDue.NAME: Status.PAST_DUE.value,
    PaymentRecovered.NAME: Status.ACTIVE.value,
}
_ENDING = frozenset({SubscriptionCanceled.NAME, SubscriptionExpired.NAME})
_STATE_COLUMNS = (
    "tenant_id",
    "plan_key",
    "plan_version",
    "status",
    "currency",
    "billing_interval",
    "price",
    "started_at",
    "ended_at",
)


class RevenueProjector(Projector):
    """Builds the revenue tables from subscription and invoice events."""

    NAME: ClassVar[str] = "revenue"
    TABLES: ClassVar[dict[str, tuple[list[str], list[str]]]] = {  # type: ignore[assignment]
        SUBSCRIPTIONS: (
            [
                "app_id TEXT NOT NULL",
                "subscription_id TEXT NOT NULL",
                "tenant_id TEXT NOT NULL",
                "plan_key TEXT NOT NULL",
                "plan_version BIGINT NOT NULL",
                "status TEXT NOT NULL",
                "currency TEXT NOT NULL",
                "billing_interval TEXT NOT NULL",
                "price BIGINT NOT NULL",
                "arr BIGINT NOT NULL",
                "started_at TEXT NOT NULL",
                "ended_at TEXT",
                "updated_at TEXT NOT NULL",
            ],
            ["app_id", "subscription_id"],
        ),
        ARR: (
            [
                "app_id TEXT NOT NULL",
                "currency TEXT NOT NULL",
                "arr BIGINT NOT NULL DEFAULT 0",
                "subscriptions BIGINT NOT NULL DEFAULT 0",
            ],
            ["app_id", "currency"],
        ),
        PLAN_STATUS: (
            [
                "app_id TEXT NOT NULL",
                "plan_key TEXT NOT NULL",
                "status TEXT NOT NULL",
                "subscriptions BIGINT NOT NULL DEFAULT 0",
            ],
            ["app_id", "plan_key", "status"],
        ),
        CHURN: (
            [
                "app_id TEXT NOT NULL",
                "month TEXT NOT NULL",
                "currency TEXT NOT NULL",
                "subscriptions BIGINT NOT NULL DEFAULT 0",
                "arr BIGINT NOT NULL DEFAULT 0",
            ],
            ["app_id", "month", "currency"],
        ),
        RECOGNIZED: (
            [
                "app_id TEXT NOT NULL",
                "currency TEXT NOT NULL",
                "day TEXT NOT NULL",
                "amount BIGINT NOT NULL DEFAULT 0",
                "invoices BIGINT NOT NULL DEFAULT 0",
            ],
            ["app_id", "currency", "day"],
        ),
        INVOICES: (
            [
                "app_id TEXT NOT NULL",
                "currency TEXT NOT NULL",
                "paid BIGINT NOT NULL DEFAULT 0",
                "paid_amount BIGINT NOT NULL DEFAULT 0",
                "failed BIGINT NOT NULL DEFAULT 0",
                "failed_attempts BIGINT NOT NULL DEFAULT 0",
            ],
            ["app_id", "currency"],
        ),
    }
    HANDLES: ClassVar[frozenset[str]] = _SUBSCRIPTION_EVENTS | {
        InvoicePaid.NAME,
        InvoicePaymentFailed.NAME,
    }

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        if event.type == InvoicePaid.NAME:
            self._invoice_paid(event, tx)
        elif event.type == InvoicePaymentFailed.NAME:
            self._invoice_failed(event, tx)
        else:
            self._subscription(event, tx)

    # --- invoices ---------------------------------------------------------------------

    @staticmethod
    def _invoice_paid(event: EventEnvelope, tx: ViewTx) -> None:
        amount = event.data["amount"]
        currency, minor = str(amount["currency"]), int(amount["amount"])
        day = parse_instant(str(event.data["paid_at"]), "paid_at").strftime("%Y-%m-%d")
        tx.increment(
            RECOGNIZED,
            {"app_id": event.app_id, "currency": currency, "day": day},
            {"amount": minor, "invoices": 1},
        )
        tx.increment(
            INVOICES,
            {"app_id": event.app_id, "currency": currency},
            {"paid": 1, "paid_amount": minor},
        )

    @staticmethod
    def _invoice_failed(event: EventEnvelope, tx: ViewTx) -> None:
        first = int(event.data["attempt"]) == 1
        tx.increment(
            INVOICES,
            {"app_id": event.app_id, "currency": str(event.data["currency"])},
            {"failed": 1 if first else 0, "failed_attempts": 1},
        )

    # --- subscriptions ----------------------------------------------------------------

    def _subscription(self, event: EventEnvelope, tx: ViewTx) -> None:
        key = {"app_id": event.app_id, "subscription_id": str(event.aggregate_id)}
        before = tx.get(SUBSCRIPTIONS, key)
        after = self._next_state(event, before)
        if after is None:
            return
        after["arr"] = (
            annualized(int(after["price"]), str(after["billing_interval"]))
            if after["status"] in PAYING
            else 0
        )
        after["updated_at"] = event.occurred_at
        self._move(tx, event.app_id, before, after)
        tx.upsert(SUBSCRIPTIONS, key, after)
        if (
            event.type in _ENDING
            and before is not None
            and event.data.get("previous_status", before["status"]) in PAYING
        ):
            month = parse_instant(event.occurred_at, "occurred_at").strftime("%Y-%m")
            tx.increment(
                CHURN,
                {"app_id": event.app_id, "month": month, "currency": str(before["currency"])},
                {"subscriptions": 1, "arr": int(before["arr"])},
            )

    @staticmethod
    def _next_state(event: EventEnvelope, before: Row | None) -> dict[str, Any] | None:
        data = event.data
        if event.type == SubscriptionStarted.NAME:
            terms, price = data["terms"], data["price"]
            return {
                "tenant_id": event.tenant_id or "",
                "plan_key": str(terms["plan_key"]),
                "plan_version": int(terms["version"]),
                "status": str(data["status"]),
                "currency": str(price["currency"]),
                "billing_interval": str(terms["interval"]),
                "price": int(price["amount"]),
                "started_at": event.occurred_at,
                "ended_at": None,
            }
        if before is None:
            # Only an event log that starts after the subscription's start gets here; the
            # event alone does not say which plan it is on, so it cannot be counted.
            log.warning(
                "revenue_unknown_subscription",
                subscription_id=str(event.aggregate_id),
                event_type=event.type,
                position=event.position,
            )
            return None
        state = {column: before[column] for column in _STATE_COLUMNS}
        terms = data.get("to_terms") or data.get("terms")  # PlanChanged / Renewed
        if terms is not None:
            state.update(
                plan_key=str(terms["plan_key"]),
                plan_version=int(terms["version"]),
                billing_interval=str(terms["interval"]),
            )
        price = data.get("new_price") or data.get("price")
        if price is not None:
            state.update(price=int(price["amount"]), currency=str(price["currency"]))
        if event.type in _STATUS_AFTER:
            state["status"] = _STATUS_AFTER[event.type]
        if event.type in _ENDING:
            state["ended_at"] = event.occurred_at
        return state

    @staticmethod
    def _move(tx: ViewTx, app_id: str, before: Row | None, after: Row) -> None:
        """Move the subscription's contribution from its old state to its new one."""
        if before is not None:
            if (before["plan_key"], before["status"]) != (after["plan_key"], after["status"]):
                _count(tx, app_id, before, -1)
                _count(tx, app_id, after, +1)
            if _contribution(before) != _contribution(after):
                _arr(tx, app_id, before, -1)
                _arr(tx, app_id, after, +1)
        else:
            _count(tx, app_id, after, +1)
            _arr(tx, app_id, after, +1)


def _contribution(row: Row) -> tuple[bool, str, int]:
    return row["status"] in PAYING, str(row["currency"]), int(row["arr"])


def _count(tx: ViewTx, app_id: str, row: Row, sign: int) -> None:
    tx.increment(
        PLAN_STATUS,
        {"app_id": app_id, "plan_key": row["plan_key"], "status": row["status"]},
        {"subscriptions": sign},
    )


def _arr(tx: ViewTx, app_id: str, row: Row, sign: int) -> None:
    if row["status"] in PAYING:
        tx.increment(
            ARR,
            {"app_id": app_id, "currency": row["currency"]},
            {"arr": sign * int(row["arr"]), "subscriptions": sign},
        )
