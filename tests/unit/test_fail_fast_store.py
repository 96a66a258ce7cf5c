"""The event store's PostgreSQL parts fail fast: a recorder call is tried again only for an
error the server answered at once (never when the store cannot be reached, never after a
timeout), and a pool that cannot reach its server refuses at once for a moment after a
request timed out, then waits again (so it reconnects by itself). No server is needed: the
pool points at a port nothing listens on."""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from psycopg_pool import PoolTimeout

from adapters.eventstore import fail_fast
from adapters.eventstore.fail_fast import (
    LIBRARY_RETRY_LOOP,
    FailFastPool,
    FailFastPostgresRecorder,
    FailFastSnapshotRecorder,
    FailFastTrackingRecorder,
    retried_if_worth_it,
    unreachable,
    worth_another_try,
)
from adapters.eventstore.usage_keys import KeyedPostgresRecorder
from tests.factories import free_port

WAIT = 0.3  # the pool timeout and the hold, here


def retried(cls: type) -> list[str]:
    return [
        name
        for name in dir(cls)
        if getattr(inspect.getattr_static(cls, name), "__code__", None) is LIBRARY_RETRY_LOOP
    ]


def test_no_recorder_method_keeps_the_library_retry_loop() -> None:
    assert retried(KeyedPostgresRecorder)  # the library's recorders do (10 tries each)
    for recorder in (FailFastPostgresRecorder, FailFastSnapshotRecorder, FailFastTrackingRecorder):
        assert retried(recorder) == [], recorder


def as_recorded(cause: Exception) -> OperationalError:
    """The error as the library's recorders raise it: their own type, psycopg's as cause."""
    error = OperationalError(str(cause))
    error.__cause__ = cause
    return error


UNREACHABLE = [
    PoolTimeout("couldn't get a connection after 1.00 sec"),
    psycopg.OperationalError("consuming input failed: server closed the connection"),
    psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
    psycopg.errors.CannotConnectNow("the database system is starting up"),
]
TIMED_OUT = [psycopg.errors.QueryCanceled("statement timeout"), psycopg.errors.LockNotAvailable()]
ANSWERED = [psycopg.errors.PipelineAborted(), psycopg.errors.DeadlockDetected()]


@pytest.mark.parametrize("cause", UNREACHABLE + TIMED_OUT + ANSWERED, ids=repr)
def test_which_errors_are_worth_another_try(cause: Exception) -> None:
    assert unreachable(as_recorded(cause)) is (cause in UNREACHABLE)
    assert worth_another_try(as_recorded(cause)) is (cause in ANSWERED)


@pytest.mark.parametrize("cause", [UNREACHABLE[0], TIMED_OUT[0]], ids=repr)
def test_an_unreachable_store_or_a_timeout_is_tried_once(
    cause: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fail_fast, "RETRY_WAIT", 0.0)
    tries = []

    def call() -> None:
        tries.append(1)
        raise as_recorded(cause)

    with pytest.raises(OperationalError):
        retried_if_worth_it(call)()
    assert len(tries) == 1


def test_an_error_the_server_answered_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fail_fast, "RETRY_WAIT", 0.0)
    tries = []

    def call() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise as_recorded(psycopg.errors.PipelineAborted())
        return "saved"

    assert retried_if_worth_it(call)() == "saved" and len(tries) == 3


@pytest.fixture
def unreachable_pool() -> Iterator[FailFastPool]:
    pool = FailFastPool(
        kwargs={"host": "127.0.0.1", "port": free_port(), "connect_timeout": 2},
        min_size=1,
        max_size=2,
        open=False,
        timeout=WAIT,
        reconnect_timeout=WAIT / 2,
        hold=WAIT,
    )
    pool.open(wait=False)
    try:
        yield pool
    finally:
        pool.close()


def failing_after(pool: FailFastPool) -> float:
    started = time.monotonic()
    with pytest.raises(PoolTimeout):
        pool.getconn()
    return time.monotonic() - started


def test_an_unreachable_server_is_refused_at_once_then_tried_again(
    unreachable_pool: FailFastPool,
) -> None:
    assert failing_after(unreachable_pool) >= WAIT * 0.9  # the first request waits it out
    assert failing_after(unreachable_pool) < 0.05  # the next ones are refused at once
    time.sleep(WAIT)
    assert failing_after(unreachable_pool) >= WAIT * 0.9  # after the hold: it tries again
