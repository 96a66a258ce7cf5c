"""The event store's PostgreSQL connections (adapters/eventstore/fail_fast.py): no prepared
statements, and the connections that met an optimistic conflict keep inserting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from eventsourcing.persistence import IntegrityError

from adapters.bootstrap import bootstrap
from adapters.settings import Settings
from domain.base import Cause
from domain.clock import SettableClock
from domain.plan import plan_id

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BASE = {"amount": 1000, "currency": "USD"}


def test_conflicts_leave_the_connections_able_to_insert_again(pg_url: str, pg_schema: str) -> None:
    """An optimistic conflict aborts the library's insert pipeline; with psycopg's prepared
    statements that could leave a connection naming a statement the server never prepared
    (`prepared statement "_pg3_N" does not exist` on its next insert). The store prepares
    none, so every insert after a conflict works."""
    system = bootstrap(
        Settings(database_url=pg_url), SettableClock(T0), schema=pg_schema, deliver_in_process=False
    )
    try:
        with system.ledger.recorder.datastore.pool.connection() as conn:
            assert conn.prepare_threshold is None
        for n in range(12):
            define(system, f"p{n}")
            first, second = (system.ledger.get(plan_id("acme", f"p{n}")) for _ in range(2))
            first.archive(Cause(occurred_at=T0))
            second.archive(Cause(occurred_at=T0))
            system.ledger.save(first)
            with pytest.raises(IntegrityError):  # the same version again: a conflict
                system.ledger.save(second)
            define(system, f"q{n}")  # the next inserts go through, on whichever connection
    finally:
        system.close()


def define(system: object, key: str) -> None:
    body = {"app_id": "acme", "plan_key": key, "name": key, "base_price": BASE}
    reply = system.dispatch("define_plan", body)  # type: ignore[attr-defined]
    assert reply["ok"], reply
