"""`tally chaos stack`: run the real-stack scenarios (all, or the ones chosen), print one
line per scenario with its figures and PASS/FAIL, and write every verdict as JSON."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos.result import Result
from chaos.stack import LOGS

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Scenario:
    """A scenario: its runner, TARGETS.md's size, and a small size for a quick look."""

    module: str
    full: dict[str, Any]
    quick: dict[str, Any]

    def run(self, quick: bool) -> Result:
        from importlib import import_module

        runner: Callable[..., Result] = import_module(f"chaos.{self.module}").run
        return runner(**(self.quick if quick else self.full))


SCENARIOS: dict[str, Scenario] = {
    "R1": Scenario(
        "r1_quota", {"clients": 32, "attempts": 10_000}, {"clients": 4, "attempts": 200}
    ),
    "R2": Scenario("r2_triple", {"events": 1000, "commands": 1000}, {"events": 40, "commands": 40}),
    "R3": Scenario("r3_kills", {"kills": 20}, {"kills": 3, "gap": (1.0, 2.0)}),
    "R4": Scenario("r4_nats", {"outage": 30.0}, {"outage": 5.0, "before": 2.0, "after": 2.0}),
    "R5": Scenario("r5_postgres", {"outage": 20.0}, {"outage": 4.0, "before": 2.0, "after": 2.0}),
    "R6": Scenario("r6_fuzz", {"examples": 10}, {"examples": 2, "command_examples": 3}),
    "R7": Scenario("r7_isolation", {}, {}),
    "R8": Scenario("r8_stateful", {}, {"billing": 3, "quota": 20, "steps": 10}),
    "R10": Scenario("r10_scale_out", {}, {"before": 4.0, "after": 6.0}),
}


def run(chosen: Sequence[str], report: Path, *, quick: bool, echo: Echo = print) -> bool:
    """Run the chosen scenarios in order; True when every one passed."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    shutil.rmtree(LOGS, ignore_errors=True)  # the last run's process logs only
    began, results = time.monotonic(), []
    for name in chosen:
        result = guarded(name, quick)
        echo(result.line())
        for problem in result.problems:
            echo(f"  {name}: {problem}")
        if not result.passed:
            echo(f"  {name}: the processes' logs are in var/chaos/logs/")
        results.append(result)
    passed = all(r.passed for r in results)
    total = time.monotonic() - began
    echo(f"chaos stack: {sum(r.passed for r in results)}/{len(results)} passed ({total:.0f} s)")
    write(report, results, total, quick)
    return passed


def guarded(name: str, quick: bool) -> Result:
    """The scenario's result; a scenario that raised is a FAIL naming the error."""
    began = time.monotonic()
    try:
        return SCENARIOS[name].run(quick)
    except Exception as error:  # the suite goes on to the next scenario
        result = Result(name, SCENARIOS[name].module, problems=[f"raised {error!r}"])
        result.seconds = time.monotonic() - began
        return result


def write(report: Path, results: list[Result], seconds: float, quick: bool) -> None:
    report.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": "quick" if quick else "full",
        "seconds": round(seconds, 1),
        "passed": all(r.passed for r in results),
        "scenarios": [r.as_json() for r in results],
    }
    report.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
