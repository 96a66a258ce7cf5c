"""Cross-process locks by tenant on PostgreSQL (session advisory locks), for writers that
keep conflicting: the usage ingest retries a conflicted batch under them, so writers in
several processes on the same tenants take turns instead of colliding again."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from psycopg.sql import SQL


def lock_number(app_id: str, tenant_id: str) -> int:
    """A stable signed 64-bit number for (app, tenant), the same in every process."""
    digest = hashlib.blake2b(f"tally-tenant\x1f{app_id}\x1f{tenant_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class AdvisoryLocks:
    """Port adapter: hold the tenants' advisory locks on a connection of the pool."""

    def __init__(self, recorder: Any) -> None:
        self.datastore = recorder.datastore

    @contextmanager
    def held(self, app_id: str, tenants: Sequence[str]) -> Iterator[None]:
        numbers = sorted({lock_number(app_id, tenant) for tenant in tenants})
        with self.datastore.get_connection() as conn:
            conn.autocommit = True
            conn.execute(
                SQL("SELECT pg_advisory_lock(n) FROM unnest(%s::bigint[]) AS n"), (numbers,)
            )
            try:
                yield
            finally:
                conn.execute(SQL("SELECT pg_advisory_unlock_all()"))
