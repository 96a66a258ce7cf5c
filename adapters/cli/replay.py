"""`tally replay`: rebuild read models from position 0 with a progress bar."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from adapters.bootstrap import System, bootstrap
from adapters.readmodels.parallel_replay import default_processes, replay_in_processes
from adapters.readmodels.replay import replay
from projections.base import Projector


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
        with _bar(console) as bar:
            tasks = {p.NAME: bar.add_task(p.NAME, total=None) for p in projectors}

            def advance(name: str, done: int, total: int) -> None:
                bar.update(tasks[name], completed=done, total=max(total, 1))

            for name, position in _rebuild(system, projectors, advance):
                bar.update(tasks[name], description=f"{name} ✓ position {position}")
    finally:
        system.close()


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _rebuild(
    system: System, projectors: list[Projector], advance: Callable[[str, int, int], None]
) -> Iterator[tuple[str, int]]:
    """(name, position) of each read model rebuilt: several at once in processes of their own
    on PostgreSQL (adapters/readmodels/parallel_replay.py), one after another otherwise."""
    names = [p.NAME for p in projectors]
    if system.settings.is_postgres and default_processes(len(names)) > 1:
        # the CLI's system is on the configured store's default schema, as each child's is
        for done in replay_in_processes(system.settings, None, names, progress=advance):
            yield done.name, done.position
        return
    for projector in projectors:
        progress = functools.partial(advance, projector.NAME)
        yield projector.NAME, replay(system.views, system.ledger.recorder, projector, progress)
