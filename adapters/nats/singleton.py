"""One active instance per worker name: a PostgreSQL advisory lock on a dedicated connection
(released by the server the moment that connection dies), or an fcntl lock on a file beside
the SQLite database. Waiting instances poll and take over."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import threading
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)


class InstanceLock(Protocol):
    """Blocking calls (run them in a thread from async code)."""

    name: str

    def try_acquire(self) -> bool:
        """Take the lock if free; True when this instance holds it (again or already)."""
        ...

    def still_held(self) -> bool:
        """False once the lock may have passed to someone else (e.g. its connection died)."""
        ...

    def release(self) -> None: ...


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PgAdvisoryLock:
    """`pg_try_advisory_lock` held by one session for the holder's lifetime."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name, self.key = url, name, lock_key(name)
        self.conn: Any = None
        self._held = False

    def try_acquire(self) -> bool:
        if self._held and self.still_held():
            return True
        self._drop()
        import psycopg

        conn = psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=5,
            application_name=f"tally-{self.name}"[:63],
            # notice a dead peer within seconds, so the lock is not held by a ghost
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except BaseException:
            conn.close()
            raise
        if row is None or not row[0]:
            conn.close()
            return False
        self.conn, self._held = conn, True
        log.info("instance_lock_acquired", lock=self.name)
        return True

    def still_held(self) -> bool:
        if not self._held or self.conn is None or self.conn.closed:
            self._held = False
            return False
        try:
            self.conn.execute("SELECT 1")
        except Exception:
            log.warning("instance_lock_lost", lock=self.name)
            self._drop()
            return False
        return True

    def release(self) -> None:
        if self._held and self.conn is not None and not self.conn.closed:
            # the connection is closed next anyway, which releases the lock too
            with contextlib.suppress(Exception):
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        self._drop()

    def _drop(self) -> None:
        self._held = False
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


class FileLock:
    """An exclusive, non-blocking fcntl lock on a file (released when the process dies)."""

    def __init__(self, path: str, name: str) -> None:
        self.path, self.name = path, name
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        log.info("instance_lock_acquired", lock=self.name, path=self.path)
        return True

    def still_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


_LOCAL: dict[str, threading.Lock] = {}
_LOCAL_GUARD = threading.Lock()


class LocalLock:
    """For an in-memory database: only this process can see it, so a process-wide lock."""

    def __init__(self, name: str) -> None:
        self.name = name
        with _LOCAL_GUARD:
            self._lock = _LOCAL.setdefault(name, threading.Lock())
        self._held = False

    def try_acquire(self) -> bool:
        if not self._held:
            self._held = self._lock.acquire(blocking=False)
        return self._held

    def still_held(self) -> bool:
        return self._held

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()


def instance_lock(dialect: str, target: str, name: str) -> InstanceLock:
    """The lock for `name` where the tracking positions live (`Settings.views_target`)."""
    if dialect == "postgres":
        return PgAdvisoryLock(target, name)
    if target in (":memory:", "") or target.startswith("file:"):
        return LocalLock(name)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return FileLock(f"{target}.{safe}.lock", name)


async def wait_for_lock(lock: InstanceLock, stop: asyncio.Event, poll_seconds: float = 0.5) -> bool:
    """Poll until the lock is ours (True) or `stop` is set (False)."""
    waiting_logged = False
    while not stop.is_set():
        try:
            if await asyncio.to_thread(lock.try_acquire):
                return True
            if not waiting_logged:
                log.info("instance_lock_busy_waiting", lock=lock.name)
                waiting_logged = True
        except Exception as error:
            log.warning("instance_lock_error", lock=lock.name, error=str(error))
        await sleep_unless(stop, poll_seconds)
    return False


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, returning early when `stop` is set. (asyncio.wait, not
    wait_for: Python 3.11's wait_for can swallow a cancellation that races its timeout.)"""
    if seconds <= 0 or stop.is_set():
        return
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()
