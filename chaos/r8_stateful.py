"""R8: the hypothesis state machines of the test suite run longer: the billing engine
(tests/unit/test_billing_stateful.py: every invoice = lines - discounts + tax, numbers
without gaps, revenue recognized = invoiced net of discounts, replayed read models = live
ones) and the quota (tests/unit/test_quota.py: never above its limit, a replay equals the
live state). Each machine's examples are counted as they end."""

from __future__ import annotations

import time
import traceback
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from chaos.result import Result

TITLE = "hypothesis state machines: subscriptions, invoices, quotas"


def machines() -> dict[str, type[Any]]:
    from tests.unit.test_billing_stateful import BillingMachine
    from tests.unit.test_quota import QuotaMachine

    return {"billing": BillingMachine, "quota": QuotaMachine}


def counted(machine: type[Any], runs: list[int]) -> type[Any]:
    """The machine, counting each example that ran to its end."""

    class Counted(machine):  # type: ignore[misc]
        def teardown(self) -> None:
            super().teardown()
            runs[0] += 1

    Counted.__name__ = machine.__name__
    return Counted


def run(billing: int = 60, quota: int = 300, steps: int = 40) -> Result:
    began = time.monotonic()
    result = Result("R8", TITLE)
    for name, examples in (("billing", billing), ("quota", quota)):
        runs = [0]
        chosen = settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        try:
            run_state_machine_as_test(counted(machines()[name], runs), settings=chosen)
        except Exception:
            result.problems.append(f"{name}: {traceback.format_exc(limit=3)[-600:]}")
        result.figures[f"{name}_examples"] = runs[0]
    result.figures["steps_per_example"] = steps
    result.seconds = time.monotonic() - began
    return result
