"""Shared fixtures: a fresh event store (and a whole system) on SQLite and on real PostgreSQL.

PostgreSQL tests never skip: an unreachable server fails them, naming the URL tried
(`make test` starts the server first; TALLY_TEST_DATABASE_URL points elsewhere).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from adapters.bootstrap import System, bootstrap
from adapters.settings import Settings
from domain.clock import SettableClock

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
T0 = datetime(2026, 1, 1, tzinfo=UTC)

StoreSettings = tuple[Settings, str | None]

STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def pg_url() -> str:
    return os.environ.get("TALLY_TEST_DATABASE_URL", DEFAULT_PG_URL)


def _connect(url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        problem = str(error).strip()
    pytest.fail(
        f"PostgreSQL is not reachable at {url} ({problem}); start it with "
        "`scripts/services.sh up` or set TALLY_TEST_DATABASE_URL",
        pytrace=False,
    )


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A schema of its own for one test, dropped with everything in it afterwards.

    The eventsourcing PostgreSQL recorder creates its tables but not the schema, so the
    schema is created here.
    """
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with _connect(pg_url) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with _connect(pg_url) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=STORES)
def store_settings(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> StoreSettings:
    """Settings (and the PostgreSQL schema, or None) for a fresh, empty event store."""
    if request.param == "postgres":
        schema: str = request.getfixturevalue("pg_schema")
        return Settings(database_url=pg_url), schema
    return Settings(database_url=f"sqlite:///{tmp_path / 'events.db'}"), None


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def system(store_settings: StoreSettings, clock: SettableClock) -> Iterator[System]:
    """The whole system on a fresh store, with a settable clock at 2026-01-01 UTC."""
    settings, schema = store_settings
    built = bootstrap(settings, clock, schema=schema)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture(scope="session")
def stripe_api() -> Iterator[str]:
    """The base URL of a test Stripe server for the session (tests/stripe_server.py)."""
    from tests.stripe_server import stripe_api_fixture

    yield from stripe_api_fixture()


@pytest.fixture
def fresh_database(pg_url: str) -> Iterator[str]:
    """A database of its own (for what takes its store from TALLY_DATABASE_URL alone, with
    no schema: `tally migrate`, `tally replay`), dropped after."""
    name = f"tally_db_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield pg_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
