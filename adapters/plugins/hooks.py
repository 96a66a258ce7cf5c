"""Lifecycle hooks, delivered off the command path: a runner that follows the event log
with its own tracking position (`plugins` in the read-model store), calls each matching hook
under a timeout, retries a failing call with backoff a bounded number of times, then records
it as a dead letter and moves on. At least once: the position moves only after the event's
hooks are done, so a crash delivers an event again."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import structlog

from adapters.eventstore.envelopes import iter_envelopes
from adapters.plugins.metrics import PluginMetrics
from adapters.plugins.registry import Hook, PluginInfo, PluginRegistry
from adapters.readmodels.runner import CatchUpThread
from adapters.readmodels.sql_store import ViewStore
from projections.base import Projector
from projections.envelope import EventEnvelope

log = structlog.get_logger(__name__)

TRACKING_NAME = "plugins"


class PluginTables(Projector):
    """The hook runner's tables (dead letters) and tracking name; applies no events."""

    NAME: ClassVar[str] = TRACKING_NAME
    TABLES: ClassVar[dict[str, tuple[Sequence[str], Sequence[str]]]] = {
        "plugin_dead_letters": (
            [
                "position BIGINT NOT NULL",
                "plugin TEXT NOT NULL",
                "hook TEXT NOT NULL",
                "event_id TEXT NOT NULL",
                "event_type TEXT NOT NULL",
                "attempts BIGINT NOT NULL",
                "error TEXT NOT NULL",
                "failed_at TEXT NOT NULL",
            ],
            ["position", "plugin", "hook"],
        )
    }


class Interrupted(Exception):
    """Stopping while a call waits for its retry: the event is delivered again later."""


@dataclass(frozen=True)
class RetryPolicy:
    """Each call's timeout, the attempts per event and the first backoff (doubling)."""

    timeout_seconds: float = 5.0
    max_attempts: int = 3
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds))


class HookCaller:
    """Calls one hook under the timeout, with bounded retries; counts every outcome."""

    def __init__(self, metrics: PluginMetrics, policy: RetryPolicy) -> None:
        self.metrics, self.policy = metrics, policy
        # a timed-out call keeps its thread (Python cannot kill one); the pool bounds them
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="plugin-hook")
        self.stopping = threading.Event()

    def call(
        self, info: PluginInfo, hook_name: str, hook: Hook, event: EventEnvelope
    ) -> str | None:
        """None when a call succeeded, else the last error (the event is dead-lettered)."""
        error = ""
        for attempt in range(1, self.policy.max_attempts + 1):
            outcome, error = self._once(hook, event)
            self.metrics.call(info.name, hook_name, outcome)
            if outcome == "ok":
                return None
            log.warning(
                "plugin_hook_failed",
                plugin=info.name,
                hook=hook_name,
                position=event.position,
                attempt=attempt,
                outcome=outcome,
                error=error,
            )
            if attempt < self.policy.max_attempts and self.stopping.wait(
                self.policy.delay(attempt)
            ):
                raise Interrupted
        return error

    def _once(self, hook: Hook, event: EventEnvelope) -> tuple[str, str]:
        future = self._pool.submit(_invoke, hook, event)
        try:
            future.result(timeout=self.policy.timeout_seconds)
        except FutureTimeout:
            future.cancel()
            return "timeout", f"no answer within {self.policy.timeout_seconds} s"
        except Exception as error:
            return "error", repr(error)
        return "ok", ""

    def close(self) -> None:
        self.stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _invoke(hook: Hook, event: EventEnvelope) -> None:
    result = hook(event)
    if inspect.isawaitable(result):  # an async hook runs in this worker thread's own loop
        asyncio.run(_awaited(result))


async def _awaited(result: Awaitable[Any]) -> None:
    await result


class HookRunner:
    """Delivers committed events to the registry's hooks, in position order."""

    def __init__(
        self,
        registry: PluginRegistry,
        views: ViewStore,
        recorder: Any,
        caller: HookCaller,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry, self.views, self.recorder, self.caller = registry, views, recorder, caller
        self.now = now
        self.tables = PluginTables()
        self._lock = threading.Lock()

    def ensure_tables(self) -> None:
        self.views.ensure(self.tables)

    def position(self) -> int:
        return self.views.position(TRACKING_NAME)

    def catch_up(self, batch: int = 500) -> int:
        """Deliver everything committed after the tracked position; returns the position."""
        with self._lock:
            position = self.position()
            for envelopes in iter_envelopes(self.recorder, position, batch):
                position = self._deliver(envelopes, position)
            return position

    def deliver(self, envelopes: Sequence[EventEnvelope]) -> int:
        """Deliver these events (from JetStream; any already delivered are skipped)."""
        with self._lock:
            return self._deliver(envelopes, self.position())

    def _deliver(self, envelopes: Sequence[EventEnvelope], position: int) -> int:
        reached = position
        try:
            for event in envelopes:
                if event.position <= position:
                    continue
                if self._run_hooks(event):
                    self._save(event.position)  # hooks ran: never call them again for it
                reached = event.position
        finally:
            if reached > position:
                self._save(reached)
        return reached

    def _run_hooks(self, event: EventEnvelope) -> bool:
        calls = self.registry.hooks_for(event.type)
        for info, hook_name, hook in calls:
            error = self.caller.call(info, hook_name, hook, event)
            if error is not None:
                self._dead_letter(info, hook_name, event, error)
        return bool(calls)

    def _dead_letter(self, info: PluginInfo, hook: str, event: EventEnvelope, error: str) -> None:
        log.error(
            "plugin_hook_dead_lettered",
            plugin=info.name,
            hook=hook,
            position=event.position,
            event_id=str(event.id),
            error=error,
        )
        self.caller.metrics.dead_letters.labels(info.name, hook).inc()
        row = {
            "event_id": str(event.id),
            "event_type": event.type,
            "attempts": self.caller.policy.max_attempts,
            "error": error[:2000],
            "failed_at": self.now().isoformat(),
        }
        key = {"position": event.position, "plugin": info.name, "hook": hook}
        self._upsert("plugin_dead_letters", key, row)

    def _upsert(self, table: str, key: dict[str, Any], row: dict[str, Any]) -> None:
        from adapters.readmodels.sql_store import SqlViewTx

        with self.views.transaction() as conn:
            tx = SqlViewTx(self.views, conn)
            tx.upsert(table, key, row)
            tx.flush()

    def _save(self, position: int) -> None:
        with self.views.transaction() as conn:
            self.views.set_position(conn, TRACKING_NAME, position)

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.views.query("SELECT * FROM {plugin_dead_letters} ORDER BY position")


class HookDelivery(CatchUpThread):
    """In-process delivery (embedded default): a thread that runs the hooks after commits."""

    NAME = "plugin-hooks"

    def __init__(self, runner: HookRunner, idle_seconds: float = 0.5) -> None:
        super().__init__(runner.catch_up, idle_seconds)
        self.runner = runner

    def stop(self) -> None:
        """Stops at once; what was not delivered yet is delivered at the next start."""
        self.runner.caller.stopping.set()
        self._join()

    def _failed(self, error: Exception) -> bool:
        if isinstance(error, Interrupted):
            return False
        # the store is down: the position is kept, try again
        log.warning("plugin_delivery_failed_will_retry", error=repr(error))
        return True


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `check` until it holds or the timeout passes (tests and the CLI)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()
