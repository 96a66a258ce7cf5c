"""The clock port: every time-dependent decision reads one, so time can be moved in tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from domain.errors import InvalidValue


class Clock(Protocol):
    """Tells the current instant (timezone-aware, UTC)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class SettableClock:
    """A test clock: stands still until set or advanced; never moves backwards."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = ensure_aware(start or datetime.now(UTC))
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        instant = ensure_aware(instant)
        with self._lock:
            if instant < self._now:
                raise InvalidValue("the clock never moves backwards", field="until")
            self._now = instant

    def advance(self, delta: timedelta) -> None:
        self.set(self._now + delta)


def ensure_aware(instant: datetime) -> datetime:
    """Return the instant in UTC; a naive datetime is refused."""
    if instant.tzinfo is None:
        raise InvalidValue("times must carry a timezone", field="time")
    return instant.astimezone(UTC)
