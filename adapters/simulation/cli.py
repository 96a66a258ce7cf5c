"""`tally chaos`: the project's own fault suite. `--seed N` or `--seeds A..B` selects the
deterministic simulation (TARGETS.md R9) on the embedded store; `tally chaos stack
[--scenario R3]` runs the scenarios against the real stack (R1-R8, the top-level chaos/
package of a source checkout, imported only by that subcommand)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import structlog
import typer

if TYPE_CHECKING:  # the simulation loads the whole system: only when a seed runs
    from adapters.simulation.scenario import Report

chaos_app = typer.Typer(
    help="The project's own fault suite: --seed N / --seeds A..B run the deterministic "
    "simulation (R9) in process on in-memory SQLite; `stack` runs R1-R8 on the real stack.",
)

NO_SCENARIO = (
    "tally chaos: give --seed N or --seeds A..B (the deterministic simulation), or run "
    "`tally chaos stack` (the real-stack scenarios R1-R8)"
)
STACK_SCENARIOS = ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R10")
T = TypeVar("T")


def parse_seeds(text: str) -> list[int]:
    """`A..B` (inclusive) or a single number."""
    first, sep, last = text.partition("..")
    try:
        low, high = int(first), int(last if sep else first)
    except ValueError:
        raise typer.BadParameter("seeds are A..B, e.g. 1..50", param_hint="--seeds") from None
    if high < low:
        raise typer.BadParameter("A..B needs A <= B", param_hint="--seeds")
    return list(range(low, high + 1))


def replay_command(seed: int, steps: int, months: int) -> str:
    return f"tally chaos --seed {seed} --steps {steps} --months {months} --trace sim-{seed}.trace"


@chaos_app.callback(invoke_without_command=True)
def chaos(
    ctx: typer.Context,
    seed: Annotated[int | None, typer.Option("--seed", help="run one seed")] = None,
    seeds: Annotated[str | None, typer.Option("--seeds", help="run seeds A..B")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="steps per seed")] = 1000,
    months: Annotated[int, typer.Option("--months", min=1, help="simulated months")] = 24,
    trace: Annotated[
        Path | None, typer.Option("--trace", help="trace file ({seed} is replaced)")
    ] = None,
    report: Annotated[Path | None, typer.Option("--json", help="write the verdicts")] = None,
) -> None:
    """Run the simulation; one line per invariant (PASS/FAIL and its figures); exit 1 on any
    failure, with the command that replays the failing seed."""
    if ctx.invoked_subcommand is not None:
        return
    if seed is None and seeds is None:
        typer.echo(NO_SCENARIO, err=True)
        raise typer.Exit(2)
    chosen = [seed] if seed is not None else parse_seeds(seeds or "")
    failed = quietly(run_seeds, chosen, steps, months, trace, report, verbose=len(chosen) == 1)
    if len(chosen) > 1:
        passed = len(chosen) - len(failed)
        typer.echo(
            f"seeds {chosen[0]}..{chosen[-1]}: {passed} passed, {len(failed)} failed"
            + (f": {' '.join(map(str, failed))}" if failed else "")
        )
    raise typer.Exit(1 if failed else 0)


def quietly(run: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run with warnings and errors logged only (the product logs a lot at debug level);
    the logging configuration is put back afterwards."""
    previous = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        return run(*args, **kwargs)
    finally:
        structlog.configure(**previous)


@chaos_app.command("stack")
def stack(
    scenario: Annotated[
        list[str] | None,
        typer.Option("--scenario", help="R1..R8, R10 (repeat it; default: every one)"),
    ] = None,
    report: Annotated[Path, typer.Option("--json", help="write the verdicts")] = Path(
        "var/chaos/stack.json"
    ),
    quick: Annotated[bool, typer.Option(help="every scenario at a small size")] = False,
) -> None:
    """The scenarios R1-R8 and R10 against the real stack each starts itself (`tally
    serve`, its workers, private NATS/PostgreSQL where one is stopped): one line per
    scenario with its figures and PASS/FAIL; exit 1 on any failure."""
    chosen = [name.upper() for name in scenario or STACK_SCENARIOS]
    unknown = [name for name in chosen if name not in STACK_SCENARIOS]
    if unknown:
        raise typer.BadParameter(f"unknown {', '.join(unknown)}", param_hint="--scenario")
    try:  # the top-level chaos/ package: in a source checkout, never in the wheel
        from chaos import run as chaos_run
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] != "chaos":
            raise
        typer.echo(
            "tally chaos stack needs the chaos/ package of a source checkout (it is not in "
            "the wheel or the image): run it from a clone, e.g. `make chaos`",
            err=True,
        )
        raise typer.Exit(2) from None
    passed = quietly(chaos_run.run, chosen, report, quick=quick, echo=typer.echo)
    raise typer.Exit(0 if passed else 1)


def run_seeds(
    seeds: list[int],
    steps: int,
    months: int,
    trace: Path | None,
    report: Path | None,
    *,
    verbose: bool,
) -> list[int]:
    """Run each seed and print its verdicts; returns the seeds that failed."""
    from adapters.simulation.scenario import simulate

    failed: list[int] = []
    verdicts: list[dict[str, object]] = []
    for seed in seeds:
        path = Path(str(trace).replace("{seed}", str(seed))) if trace else None
        began = time.monotonic()
        result = simulate(seed, steps, months, path)
        print_result(result, time.monotonic() - began, path, verbose)
        verdicts.append(as_json(result))
        if not result.passed:
            failed.append(seed)
    if report is not None:
        report.write_text(json.dumps(verdicts, indent=2) + "\n", encoding="utf-8")
    return failed


def print_result(result: Report, seconds: float, path: Path | None, verbose: bool) -> None:
    for check in result.checks:
        if verbose or not check.passed:
            typer.echo(check.line())
    verdict = "PASS" if result.passed else "FAIL"
    written = f", trace {path}" if path else ""
    typer.echo(
        f"seed {result.seed}: {verdict} ({result.steps} steps, {result.months} months, "
        f"{seconds:.1f} s{written})"
    )
    if not result.passed:
        for text in result.tracebacks[:1]:
            typer.echo(text.rstrip(), err=True)
        typer.echo(f"replay: {replay_command(result.seed, result.steps, result.months)}")


def as_json(result: Report) -> dict[str, object]:
    return {
        "seed": result.seed,
        "steps": result.steps,
        "months": result.months,
        "passed": result.passed,
        "checks": [
            {"name": c.name, "passed": c.passed, "figures": c.figures, "problems": c.problems}
            for c in result.checks
        ],
    }
