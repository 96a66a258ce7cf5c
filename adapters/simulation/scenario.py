"""One seeded run: the opening, then `steps` steps (a weighted random action or fault, or a
billing run that moves the clock) spread over `months` simulated months, delivery after each
step, replay comparisons at checkpoints, and every invariant checked at the end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from adapters.simulation import checks, faults, invoicing, money, subscriptions, usage
from adapters.simulation.billing import bill
from adapters.simulation.catalog import open_catalog, revise
from adapters.simulation.checks import Check
from adapters.simulation.world import START, World, open_world

Action = Callable[[World], None]
BILL_AT_THE_LATEST = timedelta(days=7)  # the clock never lags its schedule by more
BILL_CHANCE = 0.12

ACTIONS: list[tuple[str, Action, int]] = [
    ("start", subscriptions.start, 6),
    ("change_plan", subscriptions.change_plan, 5),
    ("change_seats", subscriptions.change_seats, 3),
    ("cancel", subscriptions.cancel, 2),
    ("pause", partial(subscriptions.simple, action="pause"), 1),
    ("resume", partial(subscriptions.simple, action="resume"), 2),
    ("undo_cancel", partial(subscriptions.simple, action="undo_cancel"), 1),
    ("end_trial", partial(subscriptions.simple, action="end_trial"), 1),
    ("attach_coupon", subscriptions.attach_coupon, 1),
    ("consume", usage.consume, 16),
    ("usage_batch", usage.usage_batch, 7),
    ("consume_group", usage.consume_group, 3),
    ("grant_allowance", usage.grant_allowance, 2),
    ("grant_feature", usage.grant_feature, 1),
    ("revoke_feature", usage.revoke_feature, 1),
    ("create_alert", usage.create_alert, 1),
    ("manual_invoice", invoicing.manual_invoice, 3),
    ("finalize", invoicing.finalize, 1),
    ("pay", invoicing.pay, 7),
    ("fail_payment", invoicing.fail_payment, 4),
    ("void", invoicing.void, 1),
    ("uncollectible", invoicing.uncollectible, 1),
    ("credit_note", invoicing.credit_note, 3),
    ("grant_credit", invoicing.grant_credit, 2),
    ("void_credit_grant", invoicing.void_credit_grant, 1),
    ("revise", revise, 1),
    ("conflict", faults.conflict, 4),
    ("ingest_conflict", faults.ingest_conflict, 1),
    ("billing_conflict", faults.billing_conflict, 2),
    ("crash_mid_batch", faults.crash_mid_batch, 2),
    ("lost_ack", faults.lost_ack, 4),
    ("lost_usage_ack", faults.lost_usage_ack, 2),
    ("crash_before_publish", faults.crash_before_publish, 2),
    ("redeliver", faults.redeliver, 2),
    ("restart_projector", faults.restart_projector, 1),
    ("rebuild_projector", faults.rebuild_projector, 1),
]


@dataclass(frozen=True)
class Report:
    """A run's verdicts and its trace."""

    seed: int
    steps: int
    months: int
    checks: list[Check]
    trace: str
    tracebacks: list[str]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


def months_after(start: datetime, months: int) -> datetime:
    month = start.month - 1 + months
    return start.replace(year=start.year + month // 12, month=month % 12 + 1)


def simulate(seed: int, steps: int = 1000, months: int = 24, trace: Path | None = None) -> Report:
    """Run one seed; the trace is written to `trace` when given."""
    world = open_world(seed)
    try:
        open_catalog(world)
        world.delivery.pump(world.rng)
        run_steps(world, steps, months_after(START, months))
        verdicts = final_checks(world)
    finally:
        world.system.close()
    for check in verdicts:
        world.trace.note(f"check {check.line()}")
    if trace is not None:
        world.trace.write(trace)
    tracebacks = world.failures.get("tracebacks", [])
    return Report(seed, steps, months, verdicts, world.trace.text(), tracebacks)


def run_steps(world: World, steps: int, end: datetime) -> None:
    checkpoints = {steps // 3, 2 * steps // 3}
    weights = [weight for _, _, weight in ACTIONS]
    for step in range(1, steps + 1):
        world.trace.step = step
        due = START + (end - START) * step / steps
        lag = due - world.clock.now()
        if lag > BILL_AT_THE_LATEST or (lag > timedelta(0) and world.rng.random() < BILL_CHANCE):
            bill(world, due)
        else:
            act(world, *world.rng.choices(ACTIONS, weights)[0][:2])
        world.delivery.pump(world.rng)
        if step in checkpoints:
            differ = checks.compare_with_replay(world, f"checkpoint at step {step}")
            world.trace.note(
                f"checkpoint replay {'differs: ' + ','.join(differ) if differ else 'equal'}"
            )
    bill(world, end)


def act(world: World, name: str, action: Action) -> None:
    """One action; a step that found nothing to act on says so in the trace."""
    before = len(world.trace.lines)
    action(world)
    if len(world.trace.lines) == before:
        world.log(name, "nothing to act on")


def final_checks(world: World) -> list[Check]:
    """Everything delivered (held delivery resumes), then every invariant."""
    world.delivery.held = 0
    world.delivery.pump(world.rng)
    world.system.sync()
    return [
        checks.events_exactly_once(world),
        checks.delivered_exactly_once(world),
        checks.read_models_equal_replay(world),
        checks.quotas_within_limits(world),
        checks.entitlements_match_quotas(world),
        money.invoice_totals(world),
        money.money_conserved(world),
        money.voids_return_balance(world),
        money.revenue_matches_invoices(world),
        *(checks.observed(world, name) for name in checks.OBSERVED),
        checks.no_unexpected_errors(world),
    ]
