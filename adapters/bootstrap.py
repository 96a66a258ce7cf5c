"""The composition root: builds the whole system from settings. Opens nothing at import."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from adapters.alerts.evaluator import AlertEvaluator
from adapters.alerts.runner import EvaluatingRunner
from adapters.billing.progressive import ProgressiveTrigger
from adapters.billing.usage_reader import ViewUsageReader
from adapters.eventstore.advisory import AdvisoryLocks
from adapters.eventstore.current import CurrentAggregates
from adapters.eventstore.fail_fast import unreachable
from adapters.eventstore.history import state_as_of
from adapters.eventstore.index import OwnershipIndex
from adapters.eventstore.ledger import Ledger, open_ledger
from adapters.eventstore.usage_keys import UsageKeyStore
from adapters.migrations.runner import MigrationRun, migrate
from adapters.observability.metrics import SystemMetrics
from adapters.observability.setup import flush_traces, observe_system, start_observing
from adapters.plugins import wiring as plugin_wiring
from adapters.plugins.samples import FactSamples
from adapters.readmodels.runner import LocalDelivery, ProjectionRunner
from adapters.readmodels.sql_store import ViewStore
from adapters.settings import Settings
from adapters.stripe.wiring import build_stripe, collector_for, provider_from
from adapters.usage.meters import CatalogMeters
from commands.base import Command
from commands.bus import CommandBus, CommandResult
from commands.registry import build_handlers
from commands.usage.record_usage import UsageIngest
from domain.clock import Clock, SettableClock, SystemClock
from projections.outbox.projector import DeliveryTables
from projections.ports import EntitlementCache
from projections.queries import QueryContext, run_query
from projections.registry import build_projectors, load_queries


@dataclass
class System:
    """Tally in one process: `handle` runs commands, `query` reads."""

    settings: Settings
    clock: Clock
    ledger: Ledger
    bus: CommandBus
    views: ViewStore
    runner: ProjectionRunner
    usage_reader: ViewUsageReader
    index: OwnershipIndex
    usage: UsageIngest
    progressive: ProgressiveTrigger | None = None
    cache: EntitlementCache | None = None
    delivery: LocalDelivery | None = None
    stripe: Any = None  # adapters.stripe.wiring.StripeServices when Stripe settings are set
    plugins: plugin_wiring.Plugins = field(default_factory=plugin_wiring.Plugins)
    _query_context: tuple[tuple[Any, ...], QueryContext] | None = field(
        default=None, init=False, repr=False
    )
    metrics: SystemMetrics = field(default_factory=SystemMetrics)  # on the API's /metrics

    def handle(self, command: Command) -> CommandResult:
        return self.bus.handle(command)

    def dispatch(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.bus.dispatch(name, payload)

    def query(self, name: str, **params: Any) -> Any:
        """Read a read model (see projections/queries.py for the names)."""
        return run_query(self.query_context(), name, **params)

    def query_context(self) -> QueryContext:
        kept = self._query_context  # built once per set of parts (the check is a hot path)
        parts = (self.views, self.clock, self.cache)
        if kept is None or any(a is not b for a, b in zip(kept[0], parts, strict=True)):
            context = QueryContext(views=self.views, now=self.clock.now, cache=self.cache)
            kept = self._query_context = (parts, context)
        return kept[1]

    def sync(self) -> int:
        """Bring every read model up to date now (tests, demo, replay); returns the position."""
        return self.runner.catch_up()

    def aggregate(
        self, aggregate_id: UUID, *, version: int | None = None, as_of: datetime | None = None
    ) -> Any:
        """An aggregate now, at a version, or as it was at a past instant (None if absent)."""
        if as_of is not None:
            return state_as_of(self.ledger, aggregate_id, as_of)
        return self.ledger.get(aggregate_id, version=version)

    def close(self) -> None:
        close_cache: Callable[[], None] | None = getattr(self.cache, "close", None)
        if close_cache is not None:
            close_cache()
        if self.progressive is not None:
            self.progressive.stop()
        if self.delivery is not None:
            self.delivery.stop()
        self.plugins.close()
        self.views.close()
        self.ledger.close()
        flush_traces()


def open_stores(
    settings: Settings, schema: str | None = None
) -> tuple[Ledger, ViewStore, MigrationRun]:
    """The event store and the read-model store, migrated first (`tally migrate` does this
    alone): every schema change runs once, under the migration lock (ADR 0017)."""
    ledger = open_ledger(settings, schema)
    dialect, target = settings.views_target
    views = ViewStore(
        dialect,  # type: ignore[arg-type]
        target,
        prefix=f"{schema}.rm_" if schema else "rm_",
        timeouts=settings.postgres_timeouts,
    )
    try:
        return ledger, views, migrate(ledger, views)
    except BaseException:
        views.close()
        ledger.close()
        raise


def bootstrap(
    settings: Settings | None = None,
    clock: Clock | None = None,
    *,
    schema: str | None = None,
    deliver_in_process: bool | None = None,
    payment_provider: Any = None,
    plugins: Sequence[object] = (),
) -> System:
    """Wire settings -> clock -> event store -> command bus -> read models.

    Without NATS, projectors are fed in process after each commit (a background thread);
    pass deliver_in_process=False to feed them only on `system.sync()`. Stripe is wired
    when TALLY_STRIPE_API_KEY is set, or with `payment_provider` (tests: a fake). `plugins`
    are registered before the entry points (docs/plugins.md).
    """
    settings = settings or Settings()
    start_observing(settings)  # logs (unless configured already) and tracing (OTEL_*)
    clock = clock or (SettableClock() if settings.clock == "settable" else SystemClock())
    ledger, views, _ = open_stores(settings, schema)
    usage_reader = ViewUsageReader(views, clock.now)
    # SQLite commits one writer at a time, in position order: no late commit to re-read
    index = OwnershipIndex(ledger.recorder, overlap=1000 if settings.is_postgres else 0)
    listeners: list[Callable[[], None]] = []
    usage = UsageIngest(
        store=ledger,
        keys=UsageKeyStore(ledger.recorder),
        meters=CatalogMeters(ledger, index),
        now=clock.now,
        on_commit=listeners,
        loader=CurrentAggregates(ledger),
        exclusive=AdvisoryLocks(ledger.recorder).held if settings.is_postgres else None,
        store_unreachable=unreachable,
    )
    provider = payment_provider or provider_from(settings)
    loaded = plugin_wiring.load_plugins(settings, plugins)
    loaded.samples = FactSamples(views)  # the usage facts a UsageAggregator plugin reads
    payments = collector_for(provider, ledger.get) if provider is not None else None
    ports = loaded.billing_ports(usage_reader, payments)
    bus = CommandBus(
        store=ledger,
        clock=clock,
        handlers=build_handlers(ports, usage.keys, invoices=index),
        on_commit=listeners,
        max_attempts=settings.command_retries,
        head_position=lambda: ledger.recorder.max_notification_id() or 0,
    )
    cache = entitlement_cache(settings, settings.redis_namespace or schema)
    alert_ports = loaded.billing_ports(usage_reader)
    alerts = AlertEvaluator(ledger, views, clock, alert_ports, bus.on_commit)
    runner = EvaluatingRunner(ledger.recorder, views, build_projectors(cache), alerts)
    load_queries()
    runner.ensure_tables()
    views.ensure(DeliveryTables())  # the mailer's record, read by the outbox query
    system = System(
        settings=settings,
        clock=clock,
        ledger=ledger,
        bus=bus,
        views=views,
        runner=runner,
        usage_reader=usage_reader,
        index=index,
        usage=usage,
        cache=cache,
        plugins=loaded,
    )
    observe_system(system)  # command metrics, spans and log context; lag gauges
    if provider is not None:
        system.stripe = build_stripe(system, provider)
    system.progressive = ProgressiveTrigger(system)
    usage.after_usage.append(system.progressive.usage_committed)
    if deliver_in_process if deliver_in_process is not None else settings.nats_url is None:
        system.delivery = LocalDelivery(runner)
        system.delivery.start()
        bus.on_commit.append(system.delivery.poke)
        plugin_wiring.deliver_in_process(system)
    return system


def entitlement_cache(settings: Settings, namespace: str | None) -> EntitlementCache | None:
    """With TALLY_REDIS_URL: a copy in this process's memory in front of the Redis hot copy,
    kept current by the invalidations Redis publishes; without it, none (checks read the read
    model)."""
    if not settings.redis_url:
        return None
    from adapters.readmodels.local_entitlements import LocalEntitlementCache
    from adapters.redis.entitlement_cache import RedisEntitlementCache
    from adapters.redis.invalidations import RedisInvalidations

    shared = RedisEntitlementCache.from_url(settings.redis_url, namespace=namespace)
    feed = RedisInvalidations(settings.redis_url, shared.channel)
    return LocalEntitlementCache(shared, invalidations=feed)
