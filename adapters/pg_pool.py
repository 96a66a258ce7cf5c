"""Psycopg pools that check a connection before lending it only when it sat idle.

psycopg_pool's `check_connection` costs a round trip on every checkout: on a busy process that
doubles the round trips of every statement (a load of one aggregate is two queries, and was
four). A connection given back moments ago was working then; one that sat idle for
`IDLE_CHECK_SECONDS` may have been killed by an outage or a restart since, and is checked (and
dropped if dead) before a request gets it. A connection that broke while in use is marked bad
by psycopg and discarded when it comes back, so the next checkout never sees it.
"""

from __future__ import annotations

import time
from typing import Any

from psycopg_pool import ConnectionPool

IDLE_CHECK_SECONDS = 1.0
_RETURNED = "_tally_returned_at"


class IdleChecked:
    """Pool mixin: stamp connections as they come back; `check_if_idle` is the check."""

    def putconn(self, conn: Any) -> None:
        setattr(conn, _RETURNED, time.monotonic())
        super().putconn(conn)  # type: ignore[misc]

    @staticmethod
    def check_if_idle(conn: Any) -> None:
        """The pool's `check`: ping a connection unused for IDLE_CHECK_SECONDS or more."""
        returned = getattr(conn, _RETURNED, None)
        if returned is None or time.monotonic() - returned >= IDLE_CHECK_SECONDS:
            ConnectionPool.check_connection(conn)


class IdleCheckedPool(IdleChecked, ConnectionPool[Any]):
    """psycopg_pool's pool with the idle-only check (pass check=IdleCheckedPool.check_if_idle)."""
