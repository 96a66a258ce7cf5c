"""The Stripe sync: does the due tasks of the stripe_sync read model and records each outcome.

A task acts on its object's current state (the customer from the profile, the plan's prices,
the subscription's mirror, the invoice's collection), so doing it again is harmless: each
step checks the ledger's links first and creates at Stripe with an idempotency key. A task
is done for the position it was asked at; a later event asks again. Stripe unreachable
(ProviderUnavailable): the task is retried after a backoff (30 s doubling to an hour); a
refusal by Stripe or the ledger: `failed` with the reason, tried again after 6 hours or when a
later event of the object (or the tenant's customer) asks again; the reconciliation reports
what that leaves apart meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any
from uuid import UUID

import structlog

from adapters.readmodels.sql_store import SqlViewTx, ViewStore
from commands.payments.catalog_sync import sync_plan
from commands.payments.collect import collect_invoice
from commands.payments.context import PaymentContext
from commands.payments.customers import ensure_customer
from commands.payments.mirror import mirror_subscription
from commands.payments.ports import ProviderRefused, ProviderUnavailable
from domain.clock import Clock
from domain.errors import DomainError
from domain.invoice import Invoice
from domain.plan import Plan
from domain.subscription import Subscription
from projections.stripe_sync.projector import RUNS, TASKS, TaskRunTables

log = structlog.get_logger(__name__)

FIRST_RETRY = timedelta(seconds=30)
LAST_RETRY = timedelta(hours=1)
FAILED_RETRY = timedelta(hours=6)  # a refused task, asked again later (and by any new event)

Task = dict[str, Any]


def backoff(attempts: int) -> timedelta:
    delay: timedelta = FIRST_RETRY * 2 ** max(attempts - 1, 0)
    return min(delay, LAST_RETRY)


@dataclass
class SyncReport:
    done: int = 0
    retrying: int = 0
    failed: int = 0
    outcomes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.done + self.retrying + self.failed


@dataclass
class StripeSync:
    """Runs due Stripe tasks in log order and records what each did."""

    views: ViewStore
    ctx: PaymentContext
    clock: Clock
    batch: int = 100

    def ensure_tables(self) -> None:
        self.views.ensure(TaskRunTables())

    def due(self) -> list[Task]:
        return self.views.query(
            f"SELECT t.*, COALESCE(r.attempts, 0) AS attempts FROM {{{TASKS}}} t "
            f"LEFT JOIN {{{RUNS}}} r ON r.task_id = t.task_id "
            "WHERE r.task_id IS NULL "
            "OR (r.status <> 'retrying' AND r.done_position < t.position) "
            "OR (r.status IN ('retrying', 'failed') AND r.next_attempt_at <= :now) "
            f"ORDER BY t.position LIMIT {int(self.batch)}",
            {"now": self._now()},
        )

    def run_due(self) -> SyncReport:
        report = SyncReport()
        for task in self.due():
            status, outcome = self._perform(task)
            self._record(task, status, outcome)
            if task["kind"] == "customer" and status == "done":
                self._ask_again(task)
            setattr(report, status, getattr(report, status) + 1)
            report.outcomes.append(f"{task['kind']} {task['target']}: {outcome}")
            if status == "retrying":
                break  # Stripe is unreachable: the rest waits for the next round
        return report

    def _perform(self, task: Task) -> tuple[str, str]:
        try:
            return "done", self._act(task)
        except ProviderUnavailable as error:
            log.warning("stripe_unavailable", task=task["task_id"], error=str(error))
            return "retrying", f"Stripe unavailable: {error}"
        except (ProviderRefused, DomainError) as error:
            log.warning("stripe_task_failed", task=task["task_id"], error=str(error))
            return "failed", f"{type(error).__name__}: {error}"

    def _act(self, task: Task) -> str:
        act = ACTIONS[task["kind"]]
        return act(self.ctx, task)

    def _record(self, task: Task, status: str, outcome: str) -> None:
        attempts = int(task["attempts"]) + 1 if status != "done" else 0
        retry_at = None
        if status != "done":  # a refusal too: what refused it (a missing profile) may change
            delay = backoff(attempts) if status == "retrying" else FAILED_RETRY
            retry_at = (self.clock.now() + delay).astimezone(UTC).isoformat()
        with self.views.transaction() as conn:
            tx = SqlViewTx(self.views, conn)
            tx.upsert(
                RUNS,
                {"task_id": task["task_id"]},
                {
                    "done_position": task["position"] if status != "retrying" else -1,
                    "status": status,
                    "attempts": attempts,
                    "outcome": outcome[:1000],
                    "next_attempt_at": retry_at,
                },
            )
            tx.flush()

    def _ask_again(self, customer_task: Task) -> None:
        """The tenant's tasks that failed (no customer could exist yet) are due again."""
        with self.views.transaction() as conn:
            self.views.execute(
                conn,
                self.views.expand(
                    f"UPDATE {{{RUNS}}} SET done_position = -1 WHERE status = 'failed' AND "
                    f"task_id IN (SELECT task_id FROM {{{TASKS}}} "
                    "WHERE app_id = :app AND tenant_id = :tenant)"
                ),
                {"app": customer_task["app_id"], "tenant": customer_task["target"]},
            )

    def _now(self) -> str:
        return str(self.clock.now().astimezone(UTC).isoformat())


def _customer(ctx: PaymentContext, task: Task) -> str:
    ensure_customer(ctx, task["app_id"], task["target"])
    return "customer in step"


def _plan(ctx: PaymentContext, task: Task) -> str:
    plan = ctx.find(Plan, UUID(task["target"]), task["app_id"])
    return "plan not found" if plan is None else sync_plan(ctx, task["app_id"], plan.state.key)


def _subscription(ctx: PaymentContext, task: Task) -> str:
    subscription = ctx.find(Subscription, UUID(task["target"]), task["app_id"])
    return (
        "subscription not found" if subscription is None else mirror_subscription(ctx, subscription)
    )


def _invoice(ctx: PaymentContext, task: Task) -> str:
    invoice = ctx.find(Invoice, UUID(task["target"]), task["app_id"])
    return "invoice not found" if invoice is None else collect_invoice(ctx, invoice)


ACTIONS: dict[str, Callable[[PaymentContext, Task], str]] = {
    "customer": _customer,
    "plan": _plan,
    "subscription": _subscription,
    "invoice": _invoice,
}
