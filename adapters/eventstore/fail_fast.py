"""The eventsourcing library's PostgreSQL persistence, bounded so an outage fails fast.

Left as the library makes it, a store that is down answers after a minute: each recorder
call is tried 10 times, each try waits for the pool (an integer timeout; no libpq connect or
statement timeout is set), and concurrent loads of one aggregate wait one after another
behind the library's fast-forward lock, each waiting out the pool again. Here:
- a recorder call is tried again only when the server answered with an error worth another
  try (a pipeline aborted by a conflicting statement, a serialization failure, a deadlock),
  never when the store could not be reached or a timeout passed (`fail_fast_retries`);
- the pool waits `pool` seconds for a connection, connects within `connect`, runs each
  statement within `statement`, checks a connection that sat idle before lending it (one
  that died in an outage is dropped, not handed to a request: adapters/pg_pool.py), and
  gives a failed reconnect up after `reconnect` seconds so it tries again as soon as a
  request needs a connection;
- once the server cannot be reached, the pool refuses at once for a moment (FailFastPool).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import (
    ConnectionPool,
    PostgresAggregateRecorder,
    PostgresFactory,
    PostgresTrackingRecorder,
)
from eventsourcing.utils import Environment, EnvType, retry
from psycopg_pool import PoolTimeout

from adapters.eventstore.usage_keys import KeyedPostgresRecorder
from adapters.pg_pool import IdleChecked
from adapters.settings import PostgresTimeouts

T = TypeVar("T")
LIBRARY_RETRY_LOOP = retry(Exception)(lambda: None).__code__  # the library's retry wrapper
ATTEMPTS, RETRY_WAIT = 10, 0.2  # the library's, for errors worth another try
TIMED_OUT = frozenset({"57014", "55P03"})  # statement and lock timeouts: never multiplied
SERVER_GONE = ("08", "57P01", "57P02", "57P03")  # connection lost; shutdown, crash, starting

# Tally's own keys in the library's environment (ledger_env writes them from settings)
POOL_TIMEOUT = "POSTGRES_POOL_TIMEOUT_SECONDS"
CONNECT_TIMEOUT = "POSTGRES_LIBPQ_CONNECT_TIMEOUT_SECONDS"
STATEMENT_TIMEOUT = "POSTGRES_STATEMENT_TIMEOUT_SECONDS"


def unreachable(error: BaseException) -> bool:
    """The store could not be reached, or the connection broke: nothing the statement did."""
    cause = error.__cause__ if isinstance(error, OperationalError | InterfaceError) else error
    if isinstance(cause, PoolTimeout | psycopg.InterfaceError):
        return True
    if not isinstance(cause, psycopg.OperationalError):
        return False
    if cause.sqlstate is None:  # a client-side failure: the connection, unless a pipeline
        return not isinstance(cause, psycopg.errors.PipelineAborted)
    return cause.sqlstate.startswith(SERVER_GONE)


def worth_another_try(error: BaseException) -> bool:
    """An error the server answered at once (a conflict aborted the pipeline, a deadlock):
    another try may succeed, and costs no timeout."""
    if unreachable(error):
        return False
    cause = error.__cause__
    return not (isinstance(cause, psycopg.Error) and cause.sqlstate in TIMED_OUT)


def retried_if_worth_it(func: Callable[..., T]) -> Callable[..., T]:
    """`func`, tried up to ATTEMPTS times while its error is `worth_another_try`."""

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> T:
        attempt = 1
        while True:
            try:
                return func(*args, **kwargs)
            except (OperationalError, InterfaceError) as error:
                if attempt >= ATTEMPTS or not worth_another_try(error):
                    raise
            attempt += 1
            time.sleep(RETRY_WAIT)

    return call


def fail_fast_retries(cls: type[T]) -> type[T]:
    """Every method of `cls` that the library wrapped in its retry loop (10 tries of any
    OperationalError, each waiting for the pool again) retried only if worth it."""
    for name in dir(cls):
        member = inspect.getattr_static(cls, name)
        if getattr(member, "__code__", None) is LIBRARY_RETRY_LOOP:
            setattr(cls, name, retried_if_worth_it(member.__wrapped__))
    return cls


@fail_fast_retries
class FailFastPostgresRecorder(KeyedPostgresRecorder):
    """The keyed PostgreSQL recorder (events and usage keys), failing fast."""


@fail_fast_retries
class FailFastSnapshotRecorder(PostgresAggregateRecorder):
    """The library's recorder of snapshots, failing fast."""


@fail_fast_retries
class FailFastTrackingRecorder(PostgresTrackingRecorder):
    """The library's tracking recorder, failing fast."""


class FailFastPool(IdleChecked, ConnectionPool[Any]):
    """A pool that stops making requests wait while the server cannot be reached.

    When connecting fails and a request got no connection within the pool timeout, requests
    of the next `hold` seconds are refused at once (PoolTimeout, a 503), instead of each
    waiting out the timeout again (idle connections do not count: after a crash they are
    dead). The first request after `hold` waits again, which also makes the pool connect
    again: recovery needs no restart."""

    def __init__(self, *args: Any, hold: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold = hold
        self._unreachable = False  # the last connection attempt failed
        self._refusing_until = 0.0

    def getconn(self, timeout: float | None = None) -> Any:
        if self._refusing():
            raise PoolTimeout("the database could not be reached moments ago; retry shortly")
        try:
            return super().getconn(timeout)
        except PoolTimeout:
            if self._unreachable:
                self._refusing_until = time.monotonic() + self.hold
            raise

    def _refusing(self) -> bool:
        return self._unreachable and time.monotonic() < self._refusing_until

    def _connect(self, timeout: float | None = None) -> Any:
        try:
            connection = super()._connect(timeout)
        except Exception:
            self._unreachable = True
            raise
        self._unreachable = False
        return connection


class FailFastPostgresFactory(PostgresFactory):
    """The library's PostgreSQL factory with fail-fast recorders and a FailFastPool."""

    aggregate_recorder_class = FailFastSnapshotRecorder
    application_recorder_class = FailFastPostgresRecorder
    tracking_recorder_class = FailFastTrackingRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        self.datastore.pool = self._bounded_pool(self._timeouts())

    def _timeouts(self) -> PostgresTimeouts:
        return PostgresTimeouts(
            connect=int(self.env.get(CONNECT_TIMEOUT) or PostgresTimeouts.connect),
            pool=float(self.env.get(POOL_TIMEOUT) or PostgresTimeouts.pool),
            statement=float(self.env.get(STATEMENT_TIMEOUT) or PostgresTimeouts.statement),
        )

    def _bounded_pool(self, timeouts: PostgresTimeouts) -> FailFastPool:
        """The library's pool (never opened) again, with Tally's bounds."""
        library = self.datastore.pool
        assert isinstance(library.kwargs, dict)  # the library passes a dict
        return FailFastPool(
            connection_class=library.connection_class,
            # no prepared statements: an optimistic conflict aborting the library's insert
            # pipeline could leave psycopg believing a statement prepared that the server
            # skipped, and the next insert on that connection failed with `prepared
            # statement "_pg3_N" does not exist` (seen about once in a few thousand
            # concurrent commits by the chaos suite)
            kwargs={**library.kwargs, **timeouts.connection_kwargs(), "prepare_threshold": None},
            min_size=library.min_size,
            max_size=library.max_size,
            open=False,
            configure=self.datastore.after_connect_func(),
            check=FailFastPool.check_if_idle,
            timeout=timeouts.pool,
            max_waiting=library.max_waiting,
            max_lifetime=library.max_lifetime,
            reconnect_timeout=timeouts.reconnect,
            hold=timeouts.pool,
        )
