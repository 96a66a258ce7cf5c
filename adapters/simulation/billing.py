"""Clock moves: only billing runs move the simulated clock (as `tally clock advance` does), so
nothing that fell due on the way is skipped. A run meets no refusal, and a second run to the
same instant records nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapters.billing.runs import run_billing
from adapters.simulation.world import APP, World

FIGURES = (
    "invoiced",
    "finalized",
    "renewed",
    "trials_ended",
    "canceled",
    "quotas_reset",
    "payments_retried",
    "credits_expired",
)
RERUN_CHANCE = 0.3  # how often a run is repeated to the same instant (it must record nothing)


def bill(world: World, until: datetime) -> None:
    """A billing run up to `until`, run again until complete; sometimes the same run again."""
    report = run(world, until)
    if report is None:
        return
    figures = " ".join(f"{k}={report[k]}" for k in FIGURES if report[k])
    world.log(f"bill until={until:%Y-%m-%dT%H:%M:%S}", figures or "nothing due")
    if world.rng.random() > RERUN_CHANCE:
        return
    world.system.sync()  # alerts on what the run recorded are evaluated (and recorded) here
    head = world.head()
    again = run(world, world.clock.now())
    world.expect(
        "billing_runs_clean",
        again is not None and world.head() == head,
        f"a second run to {until:%Y-%m-%d} recorded {world.head() - head} events",
    )


def run(world: World, until: datetime) -> dict[str, Any] | None:
    system = world.system
    try:
        report = run_billing(system, system.index.ids, APP, world.clock, until)
        while not report["complete"]:
            report = run_billing(system, system.index.ids, APP, world.clock, until)
    except Exception as error:
        world.crashed(f"billing run to {until:%Y-%m-%d}", error)
        return None
    errors = [f"{e.get('action')}: {e.get('code')} {e.get('message')}" for e in report["errors"]]
    world.expect("billing_runs_clean", not errors, "; ".join(errors))
    return report
