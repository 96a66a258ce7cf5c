"""Versioned migrations on real PostgreSQL (issue 13, R3b): applied once under the advisory
lock however many processes start together, recorded in `tally_migrations`, a no-op the
second time, a new one applied on top of an existing database, a failed one leaving nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from adapters.bootstrap import bootstrap, open_stores
from adapters.eventstore.ledger import Ledger, ledger_env
from adapters.migrations.runner import migrate
from adapters.migrations.versions import MIGRATIONS, Migration, tables_of
from adapters.readmodels.sql_store import ViewStore
from adapters.settings import Settings
from commands.plans.define_plan import DefinePlan
from projections.registry import build_projectors
from tests.integration.test_postgres_outage import PrivatePostgres

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 8
EXPECTED = [(m.version, m.name) for m in MIGRATIONS]

# What serve and every worker run first: bootstrap (which migrates), here on a schema of
# the test's own, each process waiting for the others before it starts.
START = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from adapters.bootstrap import bootstrap, open_stores
    from adapters.settings import Settings

    url, schema, ready, go = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    settings = Settings(database_url=url)
    ready.touch()
    while not go.exists():
        time.sleep(0.002)
    ledger, views, run = open_stores(settings, schema)  # the migration step of a start
    views.close()
    ledger.close()
    system = bootstrap(settings, schema=schema, deliver_in_process=False)  # a whole start
    system.sync()
    system.close()
    print(json.dumps([migration.version for migration in run.applied]))
    """
)


def wait_for(paths: list[Path], seconds: float) -> None:
    """Until every path exists (each process imported everything), or fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not all(path.exists() for path in paths):
        assert time.monotonic() < deadline, "the processes did not get ready"
        time.sleep(0.05)


def define_plan() -> DefinePlan:
    return DefinePlan(
        app_id="acme", plan_key="pro", name="Pro", base_price={"amount": 1000, "currency": "USD"}
    )


class RoomyPostgres(PrivatePostgres):
    """A private cluster with room for eight processes' pools (each holds about ten
    connections; the shared server's 100 are shared with every other test running)."""

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=300"
        )
        self._pg_ctl("-l", str(self.log), "-o", options, "-w", "start")


@pytest.fixture
def roomy_pg() -> Iterator[str]:
    postgres = RoomyPostgres()
    try:
        postgres.init()
        yield postgres.url
    finally:
        postgres.cleanup()


def recorded(url: str, schema: str) -> list[tuple[int, str]]:
    """The versions table, in version order."""
    with psycopg.connect(url) as conn:
        query = sql.SQL("SELECT version, name FROM {}.tally_migrations ORDER BY version")
        return [(int(v), str(n)) for v, n in conn.execute(query.format(sql.Identifier(schema)))]


def tables(url: str, schema: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        )
        return {str(name) for (name,) in rows}


def expected_tables() -> set[str]:
    """Every table the code defines: the event store's, and each read model's."""
    views = ViewStore("sqlite", ":memory:", prefix="rm_")
    made = {"tally_events", "tally_snapshots", "usage_keys", "usage_refusals"}
    made |= {"event_seals", "stripe_webhooks", "tally_migrations", "rm_tracking"}
    for projector in build_projectors():
        made |= {views.physical(logical) for logical in projector.TABLES}
    return made


def test_eight_processes_start_at_once_and_each_migration_applies_once(
    roomy_pg: str, tmp_path: Path
) -> None:
    pg_url, fresh_schema = roomy_pg, "tally"  # a schema nobody made: the migrations make it
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{n}" for n in range(PROCESSES)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", START, pg_url, fresh_schema, str(mark), str(go)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mark in ready
    ]
    wait_for(ready, 180)
    go.touch()  # all eight start now
    outcomes = [process.communicate(timeout=240) for process in starts]
    failed = [err[-2000:] for (_, err), p in zip(outcomes, starts, strict=True) if p.returncode]
    assert not failed, f"{len(failed)} of {PROCESSES} starts failed:\n" + "\n---\n".join(failed)
    applied = [v for out, _ in outcomes for v in json.loads(out.strip().splitlines()[-1])]
    assert sorted(applied) == [m.version for m in MIGRATIONS]  # each exactly once, in all
    assert recorded(pg_url, fresh_schema) == EXPECTED
    assert expected_tables() <= tables(pg_url, fresh_schema)


def test_tally_migrate_applies_everything_then_nothing(fresh_database: str) -> None:
    env = {**os.environ, "TALLY_DATABASE_URL": fresh_database}
    env.pop("TALLY_VIEWS_URL", None)
    first = subprocess.run(
        [sys.executable, "-m", "adapters.cli.main", "migrate"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    second = subprocess.run(
        [sys.executable, "-m", "adapters.cli.main", "migrate"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert first.stdout.splitlines() == [
        *(f"applied {version}: {name}" for version, name in EXPECTED),
        f"migrations: {len(EXPECTED)} recorded (latest {EXPECTED[-1][0]}), "
        f"{len(EXPECTED)} applied now",
    ]
    assert second.stdout.splitlines() == [
        f"migrations: {len(EXPECTED)} recorded (latest {EXPECTED[-1][0]}), nothing to apply"
    ]
    assert recorded(fresh_database, "public") == EXPECTED
    assert expected_tables() <= tables(fresh_database, "public")


def test_a_new_migration_applies_on_top_of_an_existing_database(
    pg_url: str, pg_schema: str
) -> None:
    settings = Settings(database_url=pg_url)
    system = bootstrap(settings, schema=pg_schema, deliver_in_process=False)
    system.handle(define_plan())
    system.close()
    before = count_events(pg_url, pg_schema)
    column = Migration(
        len(MIGRATIONS) + 1,
        "a column added to a table that has rows",
        "events",
        lambda stores: [
            sql.SQL("ALTER TABLE {}.tally_events ADD COLUMN note TEXT").format(
                sql.Identifier(stores.events.datastore.schema)
            )
        ],
    )
    ledger, views, _ = open_stores(settings, pg_schema)
    try:
        run = migrate(ledger, views, (*MIGRATIONS, column))
        again = migrate(ledger, views, (*MIGRATIONS, column))
    finally:
        views.close()
        ledger.close()
    assert [m.version for m in run.applied] == [column.version]
    assert again.applied == []
    assert recorded(pg_url, pg_schema) == [*EXPECTED, (column.version, column.name)]
    assert before > 0
    assert count_events(pg_url, pg_schema, "count(note)") == 0  # the new column is there
    assert count_events(pg_url, pg_schema) == before  # and every event with it


def count_events(url: str, schema: str, what: str = "count(*)") -> int:
    with psycopg.connect(url) as conn:
        query = sql.SQL("SELECT " + what + " FROM {}.tally_events").format(sql.Identifier(schema))
        row = conn.execute(query).fetchone()
        return int(row[0]) if row else -1


def test_a_database_made_before_migrations_is_adopted(pg_url: str, pg_schema: str) -> None:
    """Tables made the old way (each process creating its own at start): migrating records
    every version without an error, and the events stay."""
    settings = Settings(database_url=pg_url)
    env = ledger_env(settings, pg_schema) | {"CREATE_TABLE": "y"}
    old = Ledger(env, settings.snapshot_interval)
    views = ViewStore("postgres", pg_url, prefix=f"{pg_schema}.rm_")
    for projector in build_projectors():
        views.ensure(projector)
    old.close()
    views.close()
    made_before = tables(pg_url, pg_schema)
    assert {"tally_events", "rm_tracking"} <= made_before
    assert "tally_migrations" not in made_before
    system = bootstrap(settings, schema=pg_schema, deliver_in_process=False)
    try:
        system.handle(define_plan())
    finally:
        system.close()
    assert recorded(pg_url, pg_schema) == EXPECTED
    assert count_events(pg_url, pg_schema) == 1


def test_a_failed_migration_records_nothing_and_releases_the_lock(
    pg_url: str, pg_schema: str
) -> None:
    settings = Settings(database_url=pg_url)
    broken = Migration(
        len(MIGRATIONS) + 1,
        "half a migration",
        "views",
        lambda stores: [f"CREATE TABLE {pg_schema}.half (id INT)", "SELECT 1 / 0"],
    )
    fixed = Migration(broken.version, "the whole migration", "views", tables_of())
    ledger, views, _ = open_stores(settings, pg_schema)
    try:
        with pytest.raises(psycopg.errors.DivisionByZero):
            migrate(ledger, views, (*MIGRATIONS, broken))
        assert "half" not in tables(pg_url, pg_schema)
        assert recorded(pg_url, pg_schema) == EXPECTED
        run = migrate(ledger, views, (*MIGRATIONS, fixed))  # the lock was let go
        assert [m.version for m in run.applied] == [fixed.version]
    finally:
        views.close()
        ledger.close()
    assert recorded(pg_url, pg_schema)[-1] == (fixed.version, fixed.name)


def test_sqlite_records_the_versions_too(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'events.db'}")
    first = open_stores(settings)
    for store in first[:2]:
        store.close()
    ledger, views, second = open_stores(settings)
    ledger.close()
    views.close()
    assert [m.version for m in first[2].applied] == [m.version for m in MIGRATIONS]
    assert second.applied == []
    assert second.recorded == {m.version for m in MIGRATIONS}


def test_read_models_in_another_database_are_migrated_and_recorded_there(
    pg_url: str, pg_schema: str, fresh_database: str
) -> None:
    settings = Settings(database_url=pg_url, views_url=fresh_database)
    system = bootstrap(settings, schema=pg_schema, deliver_in_process=False)
    try:
        system.handle(define_plan())
        system.sync()
    finally:
        system.close()
    events = [(v, n) for v, n in EXPECTED if _store_of(v) == "events"]
    views = [(v, n) for v, n in EXPECTED if _store_of(v) == "views"]
    assert recorded(pg_url, pg_schema) == events
    assert recorded(fresh_database, pg_schema) == views  # the schema made there too
    assert "rm_tracking" in tables(fresh_database, pg_schema)
    assert "rm_tracking" not in tables(pg_url, pg_schema)


def _store_of(version: int) -> str:
    return next(m.store for m in MIGRATIONS if m.version == version)
