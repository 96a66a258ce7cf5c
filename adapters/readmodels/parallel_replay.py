"""Rebuild several read models at once, one process per group of them (TARGETS.md P5).

A replay is Python work per event (decode, apply) and one process uses one core, so the read
models are shared out among `processes` child processes (spawned, each with a system of its
own on the same stores), the heaviest first: each child replays its projectors one after
another with `replay` (shadow tables, then the switch), and reports progress and the position
reached on a queue. On SQLite (one writer at a time) or with one process, the caller replays
in process instead (`replay`).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Replayed:
    """What one read model's rebuild reached, and how long it took in its process."""

    name: str
    position: int
    seconds: float


def default_processes(count: int) -> int:
    """One process per core, never more than there are read models."""
    return max(1, min(count, os.cpu_count() or 1))


def replay_in_processes(
    settings: Any,
    schema: str | None,
    names: Sequence[str],
    *,
    processes: int | None = None,
    progress: Progress | None = None,
) -> list[Replayed]:
    """Rebuild the named read models in child processes; raises if any of them failed."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    groups = _groups(names, processes or default_processes(len(names)))
    dumped = settings.model_dump()
    children = [
        context.Process(target=_child, args=(dumped, schema, group, queue), daemon=True)
        for group in groups
    ]
    for child in children:
        child.start()
    try:
        return _collect(queue, len(names), progress, children)
    finally:
        for child in children:
            child.join(timeout=30)


def _groups(names: Sequence[str], processes: int) -> list[list[str]]:
    """Round robin in the given order (the registry lists the heaviest read models first)."""
    groups: list[list[str]] = [[] for _ in range(min(processes, len(names)))]
    for i, name in enumerate(names):
        groups[i % len(groups)].append(name)
    return groups


def _collect(
    queue: Any, expected: int, progress: Progress | None, children: list[Any]
) -> list[Replayed]:
    done: list[Replayed] = []
    while len(done) < expected:
        try:
            message = queue.get(timeout=1.0)
        except Exception:
            if not any(child.is_alive() for child in children):
                raise RuntimeError("a replay process died before it finished") from None
            continue
        kind, name, *rest = message
        if kind == "error":
            raise RuntimeError(f"replaying {name} failed: {rest[0]}")
        if kind == "progress" and progress is not None:
            progress(name, rest[0], rest[1])
        elif kind == "done":
            done.append(Replayed(name, rest[0], rest[1]))
    return done


def _child(settings: dict[str, Any], schema: str | None, names: list[str], queue: Any) -> None:
    """One child: a system of its own, its read models rebuilt one after another."""
    from adapters.bootstrap import bootstrap
    from adapters.readmodels.replay import replay
    from adapters.settings import Settings

    system = bootstrap(Settings(**settings), schema=schema, deliver_in_process=False)
    try:
        projectors = {p.NAME: p for p in system.runner.projectors}
        for name in names:
            started = time.perf_counter()
            try:
                position = replay(
                    system.views, system.ledger.recorder, projectors[name], _reporter(queue, name)
                )
            except Exception as error:
                queue.put(("error", name, repr(error)))
                return
            queue.put(("done", name, position, time.perf_counter() - started))
    finally:
        system.close()


def _reporter(queue: Any, name: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        queue.put(("progress", name, done, total))

    return report
