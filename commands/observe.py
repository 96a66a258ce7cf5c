"""The command bus's observer port: metrics, traces and log context around each command.

The bus tells it which commands run and how each ended; it never decides anything. The
default watches nothing (adapters/observability/commands.py is the real one).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from commands.base import Command


class Watch(Protocol):
    """One watched command or group commit; `settled` names the outcomes it ended with."""

    def settled(self, outcomes: Sequence[str]) -> None: ...


class CommandObserver(Protocol):
    """Watches the commands the bus runs: one at a time or a group commit."""

    def watch(self, commands: Sequence[Command]) -> AbstractContextManager[Watch]: ...


class _Unwatched:
    def settled(self, outcomes: Sequence[str]) -> None:
        return None


class Unobserved:
    """Watches nothing."""

    @contextmanager
    def watch(self, commands: Sequence[Command]) -> Iterator[Watch]:
        yield _Unwatched()
