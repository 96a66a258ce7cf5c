"""Run the billing engine on a System: the cut-off, the candidates and the commands.

The cut-off is the event log's head when the run starts; the usage read model is caught up
to it first (in process: synchronously; on the real stack: waited for, bounded), so every
usage event recorded before the run is billed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import structlog

from adapters.billing.collector import young_collections_only
from adapters.billing.usage_reader import Wanted
from adapters.eventstore.positions import existing
from adapters.eventstore.usage_keys import KEY_RETENTION, UsageKeyStore
from commands.base import Command
from commands.billing.invoice_thresholds import InvoiceThresholds
from commands.billing.run import ACTOR, BillingRun, Execute, Owned, due_command
from commands.bus import CommandResult
from domain.billing import next_billing_point, priced_features
from domain.clock import SettableClock
from domain.errors import DomainError
from domain.subscription import Subscription

if TYPE_CHECKING:
    from adapters.bootstrap import System

log = structlog.get_logger(__name__)

CATCH_UP_SECONDS = 10.0

Build = Callable[[str, str, Any, int], Command]  # (app, action, aggregate, cutoff)
Outcome = CommandResult | DomainError
Observe = Callable[[Command, Outcome], None]


def usage_cutoff(system: System, timeout: float = CATCH_UP_SECONDS) -> int:
    """The log head now, once the usage read model has applied it."""
    head = system.ledger.recorder.max_notification_id() or 0
    if system.delivery is not None or system.settings.nats_url is None:
        system.sync()
    return system.usage_reader.wait_for(head, timeout)


def usage_wanted(aggregate: Any) -> list[Wanted]:
    """The usage a subscription's next invoice will read: that of its due billing point,
    else (a renewal is due) of the period ending, under the terms in force; and that of the
    periods it already billed, which the invoice re-reads for late usage."""
    if not isinstance(aggregate, Subscription):
        return []
    state = aggregate.state
    point = next_billing_point(state)
    period = point.usage_period if point is not None else state.current_period
    terms = point.usage_terms if point is not None else state.terms
    features = [(f.key, f.meter.value) for f in priced_features(terms)]
    wanted: list[Wanted] = (
        [] if period is None or not features else [(state.tenant_id, features, period)]
    )
    billed = [(state.tenant_id, [(b.feature_key, b.meter)], b.period) for b in state.billed_usage]
    return wanted + billed


def run_billing(
    system: System,
    owned: Owned,
    app_id: str,
    clock: SettableClock,
    until: datetime,
    *,
    execute: Execute | None = None,
    observe: Observe | None = None,
    build: Build | None = None,
    max_actions: int | None = None,
    batch: int = 200,
) -> dict[str, Any]:
    """One app's billing run up to `until` (commands/billing/run.py), in group commits of
    `batch` commands unless `execute` is given (then one command at a time). A batched
    run puts off full garbage collections until it is done (adapters/billing/collector.py):
    what it loaded is freed by then, never walked."""
    hold = young_collections_only() if execute is None else nullcontext()
    with hold:
        return _run_billing(
            system, owned, app_id, clock, until, execute, observe, build, max_actions, batch
        )


def _run_billing(
    system: System,
    owned: Owned,
    app_id: str,
    clock: SettableClock,
    until: datetime,
    execute: Execute | None,
    observe: Observe | None,
    build: Build | None,
    max_actions: int | None,
    batch: int,
) -> dict[str, Any]:
    cutoff = usage_cutoff(system)
    make = build or (
        lambda app, action, aggregate, cut: due_command(app, action, aggregate, cutoff=cut)
    )
    run = BillingRun(
        load=system.aggregate,
        owned=owned,
        execute=execute or system.handle,
        clock=clock,
        build=lambda app, action, aggregate: make(app, action, aggregate, cutoff),
        batch=batch,
        load_many=system.ledger.get_many,
    )
    touched = run.touched  # not `run` itself: a closure on it would make a cycle
    if execute is None:

        def execute_many(
            commands: list[Command],
            at: list[datetime],
            lookups: set[UUID],
            loaded: dict[UUID, Any],
        ) -> list[Outcome]:
            absent = lookups - existing(system.ledger.recorder, lookups)
            wanted = [w for aggregate in loaded.values() for w in usage_wanted(aggregate)]
            system.usage_reader.prefetch(app_id, wanted, cutoff)
            try:
                outcomes = system.bus.handle_many(commands, at, touched, absent, loaded)
            finally:
                system.usage_reader.forget()
            for command, outcome in zip(commands, outcomes, strict=True):
                if observe is not None:
                    observe(command, outcome)
            return outcomes

        run.execute_many = execute_many
    if max_actions is not None:
        run.max_actions = max_actions
    report = {**run.run(app_id, until), "usage_cutoff": cutoff}
    if report.get("complete", True):
        report["interim_invoiced"] = invoice_thresholds(system, app_id, cutoff, execute)
    prune_usage_keys(system, until)
    report["stripe_reconciliation"] = reconcile_daily(system, app_id)
    return report


def reconcile_daily(system: System, app_id: str) -> dict[str, Any] | None:
    """Stripe against the ledger once a day by the clock (reporting only; the report is
    served by GET /v1/stripe/reconciliation): a summary, or None when not due or no Stripe."""
    if system.stripe is None:
        return None
    try:
        report = system.stripe.reconciler.daily(app_id)
    except Exception as error:  # Stripe unreachable: the billing run itself went fine
        log.warning("stripe_reconciliation_failed", app_id=app_id, error=str(error))
        return {"error": f"{type(error).__name__}: {error}"}
    if report is None:
        return None
    return {"ran_at": report["ran_at"], "drift_count": report["drift_count"]}


def invoice_thresholds(
    system: System, app_id: str, cutoff: int | None, execute: Execute | None = None
) -> int:
    """Progressive billing by the clock: each subscription whose plan has thresholds gets an
    interim invoice if its accrued usage crossed one (commands/billing/invoice_thresholds.py)."""
    send = execute or system.handle
    invoiced = 0
    for subscription_id in system.index.ids(app_id, "subscription_progressive"):
        command = InvoiceThresholds(
            app_id=app_id, subscription_id=subscription_id, usage_cutoff=cutoff, actor=ACTOR
        )
        try:
            invoiced += bool(send(command).result.get("invoiced"))
        except DomainError:
            continue  # e.g. canceled meanwhile: nothing to bill in advance
    return invoiced


def prune_usage_keys(system: System, now: datetime) -> int:
    """Forget usage idempotency keys older than KEY_RETENTION plus a day's margin (billing
    runs do it, by the ledger's clock)."""
    keys = system.usage.keys
    if not isinstance(keys, UsageKeyStore):
        return 0
    return keys.prune(now - KEY_RETENTION - timedelta(days=1))
