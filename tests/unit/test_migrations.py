"""The migration list itself: numbered once each, in order, and covering every table the
code defines (a projector or worker table left out of every migration fails here)."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator

import adapters
import projections
from adapters.migrations.lock import lock_key
from adapters.migrations.versions import MIGRATIONS, Stores
from adapters.readmodels.sql_store import ViewStore
from projections.base import Projector

ONLY_IN_THE_SIMULATION = {"DeliveryAudit"}  # its in-memory store, never a deployment's
CREATED = re.compile(r"CREATE TABLE IF NOT EXISTS (\S+)")


def every_projector() -> Iterator[type[Projector]]:
    """Every Projector subclass in adapters/ and projections/ (imported here)."""
    for package in (adapters, projections):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    pending = list(Projector.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith(("adapters.", "projections.")):  # not the tests' own
            yield cls


def view_tables_migrated(views: ViewStore) -> set[str]:
    stores = Stores(recorders=[None], views=views)
    statements = (s for m in MIGRATIONS if m.store == "views" for s in m.statements(stores))
    return {match.group(1) for s in statements if (match := CREATED.match(str(s)))}


def test_versions_are_one_two_three_with_a_name_each() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert all(m.name and m.store in ("events", "views") for m in MIGRATIONS)


def test_every_table_of_every_projector_is_created_by_a_migration() -> None:
    views = ViewStore("sqlite", ":memory:", prefix="rm_")
    migrated = view_tables_migrated(views)
    wanted = {
        views.physical(logical): cls.__name__
        for cls in every_projector()
        if cls.__name__ not in ONLY_IN_THE_SIMULATION
        for logical in cls.TABLES
    }
    missing = {table: owner for table, owner in wanted.items() if table not in migrated}
    assert not missing, f"tables in no migration (append one to MIGRATIONS): {missing}"
    assert "rm_tracking" in migrated
    assert len(wanted) >= 30  # the walk found the projectors (31 tables today)


def test_the_view_tables_follow_the_store_prefix() -> None:
    views = ViewStore("postgres", "postgresql://unused/x", prefix="tenant_a.rm_")
    assert all(t.startswith("tenant_a.rm_") for t in view_tables_migrated(views))
    assert views.schema == "tenant_a"
    assert ViewStore("postgres", "postgresql://unused/x").schema == "public"


def test_one_lock_per_schema() -> None:
    assert lock_key("public") == lock_key("public")
    assert lock_key("public") != lock_key("test_0123")
    assert -(2**63) <= lock_key("public") < 2**63  # a bigint, as pg_advisory_lock takes
