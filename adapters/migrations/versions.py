"""The numbered migrations, in the order they apply. Each one's DDL is asked of the code that
owns its tables (the recorders, SealStore, StripeInbox, ViewStore with a projector's TABLES),
so a table's definition stays in one place.

Adding a table: append a Migration with the next number (never renumber or edit one that
shipped: a database that applied it will not run it again). tests/unit/test_migrations.py
fails when a projector's tables are in no migration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from adapters.alerts.evaluator import EvaluatorTables
from adapters.eventstore.schema import Statement, event_store_statements
from adapters.eventstore.seal import SealStore
from adapters.plugins.hooks import PluginTables
from adapters.readmodels.sql_store import ViewStore
from adapters.stripe.inbox import StripeInbox
from adapters.stripe.reports import ReportTables
from projections.alerts.projector import AlertsProjector
from projections.base import Projector
from projections.credits.projector import CreditsProjector
from projections.entitlements.projector import EntitlementsProjector
from projections.outbox.projector import DeliveryTables, OutboxProjector
from projections.revenue.projector import ARR_CHANGES, RevenueProjector
from projections.stripe_sync.projector import StripeSyncProjector, TaskRunTables
from projections.usage.projector import UsageProjector

Store = Literal["events", "views"]  # the event store's database, or the read models'


@dataclass(frozen=True)
class Stores:
    """What the DDL is asked of: the ledger's recorders (events first) and the view store."""

    recorders: Sequence[Any]
    views: ViewStore

    @property
    def events(self) -> Any:
        return self.recorders[0]


@dataclass(frozen=True)
class Migration:
    """One numbered schema change, applied once per database and schema."""

    version: int
    name: str
    store: Store
    statements: Callable[[Stores], Sequence[Statement]]


def tables_of(*projectors: type[Projector]) -> Callable[[Stores], list[Statement]]:
    """The DDL of these projectors' tables (and the tracking table), as ViewStore makes it."""

    def statements(stores: Stores) -> list[Statement]:
        made = (s for p in projectors for s in stores.views.create_statements(p))
        return list(dict.fromkeys(made))

    return statements


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "event store: events, snapshots, usage keys and refusals",
        "events",
        lambda stores: event_store_statements(stores.recorders),
    ),
    Migration(
        2, "event seals (tamper evidence)", "events", lambda s: SealStore(s.events).statements()
    ),
    Migration(3, "stripe webhook inbox", "events", lambda s: StripeInbox(s.events).statements()),
    Migration(
        4,
        "read models and their tracking",
        "views",
        tables_of(
            EntitlementsProjector,
            UsageProjector,
            RevenueProjector,
            AlertsProjector,
            OutboxProjector,
            CreditsProjector,
            StripeSyncProjector,
        ),
    ),
    Migration(
        5,
        "worker tables: mail deliveries, stripe task runs and reports, alert rules, plugins",
        "views",
        tables_of(DeliveryTables, TaskRunTables, ReportTables, EvaluatorTables, PluginTables),
    ),
    Migration(
        6,
        "revenue: ARR changes per day (MRR and ARR over time; a replay of revenue fills the past)",
        "views",
        lambda s: [
            statement
            for statement in s.views.create_statements(RevenueProjector)
            if s.views.physical(ARR_CHANGES) + " " in statement
        ],
    ),
)
