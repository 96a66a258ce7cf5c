"""Stripe sync tasks: what the Stripe worker must bring in step with the ledger, one row per
object (a later event of the same object moves its row's position on; the worker always
acts on the object's current state, so one run covers every event before it).

- BillingProfileCreated / BillingProfileUpdated: the tenant's customer (created, or updated);
- PlanDefined / PlanRevised / PlanArchived: the plan's product and prices;
- a subscription's start, plan change, scheduled cancel (and its undoing), cancel, expiry:
  its mirror;
- InvoiceFinalized, InvoicePaid, InvoiceVoided, InvoiceCredited: the invoice's collection
  (pushed once, charged once; dunning retries go through the billing run), and its Stripe
  side following the ledger (voided, paid out of band, replaced when a credit note changed
  the amount due).

What the worker did lives in `stripe_task_runs`, its own table (not rebuilt by a replay, so
a rebuilt task list does nothing twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from projections.base import Projector, ViewTx
from projections.envelope import EventEnvelope

TASKS = "stripe_tasks"
RUNS = "stripe_task_runs"

CUSTOMER_EVENTS = frozenset({"BillingProfileCreated", "BillingProfileUpdated"})
PLAN_EVENTS = frozenset({"PlanDefined", "PlanRevised", "PlanArchived"})
SUBSCRIPTION_EVENTS = frozenset(
    {
        "SubscriptionStarted",
        "SubscriptionPlanChanged",
        "SubscriptionCancellationScheduled",
        "SubscriptionCancellationUndone",
        "SubscriptionCanceled",
        "SubscriptionExpired",
    }
)
INVOICE_EVENTS = frozenset({"InvoiceFinalized", "InvoicePaid", "InvoiceVoided", "InvoiceCredited"})


def task_of(event: EventEnvelope) -> tuple[str, str]:
    """(kind, target) of the task an event asks for."""
    if event.type in CUSTOMER_EVENTS:
        return "customer", event.tenant_id or ""
    if event.type in PLAN_EVENTS:
        return "plan", str(event.aggregate_id)
    if event.type in SUBSCRIPTION_EVENTS:
        return "subscription", str(event.aggregate_id)
    return "invoice", str(event.aggregate_id)


class StripeSyncProjector(Projector):
    """Writes what the Stripe worker must do; never calls Stripe."""

    NAME: ClassVar[str] = "stripe_sync"
    TABLES: ClassVar[dict[str, tuple[Sequence[str], Sequence[str]]]] = {
        TASKS: (
            [
                "task_id TEXT NOT NULL",
                "app_id TEXT NOT NULL",
                "tenant_id TEXT",
                "kind TEXT NOT NULL",  # customer, plan, subscription, invoice
                "target TEXT NOT NULL",
                "position BIGINT NOT NULL",
                "event_type TEXT NOT NULL",
                "occurred_at TEXT NOT NULL",
            ],
            ["task_id"],
        ),
    }
    HANDLES: ClassVar[frozenset[str]] = (
        CUSTOMER_EVENTS | PLAN_EVENTS | SUBSCRIPTION_EVENTS | INVOICE_EVENTS
    )

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        kind, target = task_of(event)
        tx.upsert(
            TASKS,
            {"task_id": f"{event.app_id}/{kind}/{target}"},
            {
                "app_id": event.app_id,
                "tenant_id": event.tenant_id,
                "kind": kind,
                "target": target,
                "position": event.position,
                "event_type": event.type,
                "occurred_at": event.occurred_at,
            },
        )


class TaskRunTables(Projector):
    """The Stripe worker's own record of each task (not a read model: never replayed)."""

    NAME: ClassVar[str] = "stripe_task_runner"
    TABLES: ClassVar[dict[str, tuple[Sequence[str], Sequence[str]]]] = {
        RUNS: (
            [
                "task_id TEXT NOT NULL",
                "done_position BIGINT NOT NULL",  # the task's position when last done
                "status TEXT NOT NULL",  # done, retrying or failed
                "attempts BIGINT NOT NULL",
                "outcome TEXT",
                "next_attempt_at TEXT",
            ],
            ["task_id"],
        ),
    }
