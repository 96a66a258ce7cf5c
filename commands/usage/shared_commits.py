"""Concurrent requests share commits: whoever arrives while no group is running leads it.

A request joins the queue; if no leader is running, it leads: it takes every request queued
so far (itself first, up to `max_size` in all), runs them as ONE group (one decision, one
transaction), answers each, and hands the lead to the oldest request still waiting, which
then runs the next group. So a burst of concurrent requests costs a few transactions, not one
each, and no leader serves more than the one group its own request is in.

A failure that `shares_failure` accepts (the store is down) also answers every request that
waited meanwhile: they would only meet the same failure one group after another, each
waiting out the store's timeout again.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Waiting(Generic[T]):
    item: T
    size: int
    signal: threading.Event = field(default_factory=threading.Event)
    finished: bool = False
    error: BaseException | None = None


class SharedCommits(Generic[T]):
    """Runs submitted items in groups, `run(items)` once per group, in arrival order."""

    def __init__(
        self,
        run: Callable[[Sequence[T]], None],
        max_size: int = 10_000,
        shares_failure: Callable[[BaseException], bool] = lambda error: False,
    ) -> None:
        self.run, self.max_size, self.shares_failure = run, max_size, shares_failure
        self._lock = threading.Lock()
        self._queue: deque[_Waiting[T]] = deque()
        self._leading = False

    def submit(self, item: T, size: int = 1) -> None:
        """Run `item` in the next group; returns once it ran, raising what its group raised."""
        me = _Waiting(item, size)
        with self._lock:
            self._queue.append(me)
            leads = not self._leading
            self._leading = True
        if not leads:
            me.signal.wait()  # finished, or promoted to lead the next group
        if not me.finished:
            self._lead()
        if me.error is not None:
            raise me.error

    def _lead(self) -> None:
        with self._lock:
            group = self._take()
        try:
            self.run([waiting.item for waiting in group])
        except BaseException as error:
            if self.shares_failure(error):
                with self._lock:
                    group.extend(self._queue)
                    self._queue.clear()
            for waiting in group:
                waiting.error = error
        for waiting in group:
            waiting.finished = True
            waiting.signal.set()
        with self._lock:
            if self._queue:
                self._queue[0].signal.set()  # the oldest waiting leads the next group
            else:
                self._leading = False

    def _take(self) -> list[_Waiting[T]]:
        group = [self._queue.popleft()]
        total = group[0].size
        while self._queue and total + self._queue[0].size <= self.max_size:
            total += self._queue[0].size
            group.append(self._queue.popleft())
        return group
