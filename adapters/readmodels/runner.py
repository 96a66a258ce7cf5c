"""Feeds projectors from the event store: in-process delivery (embedded default) and replay."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import structlog
from eventsourcing.persistence import InterfaceError, OperationalError

from adapters.eventstore.envelopes import iter_envelopes
from adapters.observability.tracing import batch_span
from adapters.readmodels.sql_store import ViewStore
from projections.base import Projector
from projections.envelope import EventEnvelope

log = structlog.get_logger(__name__)

# the stores did not answer (PostgreSQL down): retried like any failure, logged briefly
STORE_DOWN = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


class ProjectionRunner:
    """Brings every projector up to the head of the event store, in position order."""

    def __init__(self, recorder: Any, views: ViewStore, projectors: Sequence[Projector]) -> None:
        self.recorder, self.views, self.projectors = recorder, views, list(projectors)
        self._lock = threading.Lock()

    def ensure_tables(self) -> None:
        for projector in self.projectors:
            self.views.ensure(projector)

    def catch_up(self, batch: int = 1000) -> int:
        """Apply everything committed so far; returns the lowest position reached."""
        with self._lock:
            positions = {p.NAME: self.views.position(p.NAME) for p in self.projectors}
            start = min(positions.values(), default=0)
            for envelopes in iter_envelopes(self.recorder, start, batch):
                with batch_span(
                    "projector.batch",
                    [e.trace_parent for e in envelopes],
                    {"tally.projectors": len(self.projectors), "tally.events": len(envelopes)},
                ):
                    self._apply(envelopes, positions)
            return min(positions.values(), default=0)

    def _apply(self, envelopes: Sequence[EventEnvelope], positions: dict[str, int]) -> None:
        for projector in self.projectors:
            if envelopes[-1].position > positions[projector.NAME]:
                positions[projector.NAME] = self.views.apply(projector, envelopes)


class CatchUpThread:
    """A thread that calls `catch_up` after each commit (`poke`), or every `idle_seconds`;
    a failing round is handled by `_failed` and tried again, never skipped."""

    NAME = "catch-up"

    def __init__(self, catch_up: Callable[[], object], idle_seconds: float = 0.5) -> None:
        self.catch_up, self.idle_seconds = catch_up, idle_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.NAME, daemon=True)
            self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def _join(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.idle_seconds)
            self._wake.clear()
            try:
                self.catch_up()
            except Exception as error:
                if not self._failed(error):
                    return
                self._stop.wait(1.0)

    def _failed(self, error: Exception) -> bool:
        """Log a failed round; False ends the thread."""
        raise NotImplementedError


class LocalDelivery(CatchUpThread):
    """In-process event delivery: a thread that catches projectors up after each commit."""

    NAME = "local-delivery"

    def __init__(self, runner: ProjectionRunner, idle_seconds: float = 0.5) -> None:
        super().__init__(runner.catch_up, idle_seconds)
        self.runner = runner

    def stop(self) -> None:
        self._join()
        self.runner.catch_up()  # lose nothing on shutdown

    def _failed(self, error: Exception) -> bool:
        if isinstance(error, STORE_DOWN):  # one line, not a traceback a second while it lasts
            log.warning("projection_store_unavailable_will_retry", error=repr(error))
        else:  # a failing event stops progress; it is retried, never skipped
            log.exception("projection_failed_will_retry")
        return True
