"""`tally replay`: rebuild read models from position 0 with a progress bar."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from adapters.bootstrap import bootstrap
from adapters.readmodels.replay import replay


def run(projection: str | None) -> None:
    console = Console()
    system = bootstrap(deliver_in_process=False)
    try:
        projectors = system.runner.projectors
        if projection is not None:
            projectors = [p for p in projectors if p.NAME == projection]
            if not projectors:
                names = ", ".join(p.NAME for p in system.runner.projectors)
                raise SystemExit(f"unknown projection {projection!r}; known: {names}")
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            for projector in projectors:
                task = bar.add_task(projector.NAME, total=None)

                def advance(done: int, total: int, task_id: TaskID = task) -> None:
                    bar.update(task_id, completed=done, total=max(total, 1))

                position = replay(system.views, system.ledger.recorder, projector, advance)
                bar.update(task, description=f"{projector.NAME} ✓ position {position}")
    finally:
        system.close()
