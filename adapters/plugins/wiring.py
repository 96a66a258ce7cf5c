"""Plugins in the composition root: the registry from settings, the selected strategies and
the hook runner (in process on the embedded default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from adapters.plugins.hooks import HookCaller, HookDelivery, HookRunner, RetryPolicy
from adapters.plugins.metrics import PluginMetrics
from adapters.plugins.registry import PluginInfo, PluginRegistry
from adapters.settings import Settings
from commands.billing.compose import BillingPorts
from commands.billing.ports import NoPaymentCollector, PaymentCollector, UsageReader
from commands.billing.strategies import (
    AllowAllCoupons,
    CouponValidator,
    DomainPricing,
    InvoiceFormatter,
    JsonInvoiceFormatter,
    NamedStrategies,
    NoSamples,
    PricingStrategy,
    RateTableTax,
    StrategyPort,
    TaxCalculator,
    UsageAggregator,
    UsageSamples,
)
from domain.catalog import PlanTerms

if TYPE_CHECKING:
    from adapters.bootstrap import System

# the setting that selects each port's plugin by name (environment: TALLY_<SETTING>)
PORT_SETTINGS: dict[StrategyPort, str] = {
    "PricingStrategy": "pricing_strategy",
    "UsageAggregator": "usage_aggregator",
    "TaxCalculator": "tax_calculator",
    "InvoiceFormatter": "invoice_formatter",
    "CouponValidator": "coupon_validator",
}


@dataclass(frozen=True)
class Strategies:
    """The implementation of each strategy port (the domain's own unless selected), and the
    plugins plan terms may name instead."""

    pricing: PricingStrategy = field(default_factory=DomainPricing)
    tax: TaxCalculator = field(default_factory=RateTableTax)
    usage: UsageAggregator | None = None  # None: the built-in meters, summed by the read model
    invoices: InvoiceFormatter = field(default_factory=JsonInvoiceFormatter)
    coupons: CouponValidator = field(default_factory=AllowAllCoupons)
    named: NamedStrategies = field(default_factory=NamedStrategies)


@dataclass
class Plugins:
    """A system's plugins: the registry, its metrics, strategies and the hook runner."""

    registry: PluginRegistry = field(default_factory=PluginRegistry)
    metrics: PluginMetrics = field(default_factory=PluginMetrics)
    strategies: Strategies = field(default_factory=Strategies)
    runner: HookRunner | None = None
    delivery: HookDelivery | None = None
    samples: UsageSamples = field(default_factory=NoSamples)  # the facts aggregators read

    def register(self, plugin: object) -> PluginInfo:
        return self.registry.register(plugin)

    def pricing_for(self, terms: PlanTerms) -> PricingStrategy:
        """The PricingStrategy `terms` name, else the settings' one."""
        return self.strategies.named.pricing_for(terms, self.strategies.pricing)

    def billing_ports(
        self, usage: UsageReader, payments: PaymentCollector | None = None
    ) -> BillingPorts:
        """The billing engine's ports with the selected strategies (plan terms may override)."""
        chosen = self.strategies
        return BillingPorts(
            usage=usage,
            payments=payments or NoPaymentCollector(),
            pricing=chosen.pricing,
            tax=chosen.tax,
            aggregator=chosen.usage,
            samples=self.samples,
            named=chosen.named,
            coupons=chosen.coupons,
        )

    def render_metrics(self) -> bytes:
        """The hook counters and the registries plugins expose (`collector_registry`)."""
        from prometheus_client import CollectorRegistry, generate_latest

        parts = [self.metrics.render()]
        for info in self.registry.plugins():
            extra = getattr(info.plugin, "collector_registry", None)
            if isinstance(extra, CollectorRegistry):
                parts.append(generate_latest(extra))
        return b"".join(parts)

    def close(self) -> None:
        if self.delivery is not None:
            self.delivery.stop()
        if self.runner is not None:
            self.runner.caller.close()


def load_plugins(settings: Settings, extra: Sequence[object] = ()) -> Plugins:
    """Register `extra`, then (unless TALLY_PLUGINS_DISCOVER=false) the entry points, and
    select the strategies the settings name."""
    registry = PluginRegistry()
    for plugin in extra:
        registry.register(plugin)
    if settings.plugins_discover:
        registry.discover()
    return Plugins(registry, PluginMetrics(), select_strategies(registry, settings))


def select_strategies(registry: PluginRegistry, settings: Settings) -> Strategies:
    chosen: dict[StrategyPort, object] = {}
    for port, setting in PORT_SETTINGS.items():
        name = getattr(settings, setting)
        if name:
            chosen[port] = registry.strategy(port, name, f"TALLY_{setting.upper()}")
    defaults = Strategies()
    return Strategies(
        pricing=cast(PricingStrategy, chosen.get("PricingStrategy", defaults.pricing)),
        tax=cast(TaxCalculator, chosen.get("TaxCalculator", defaults.tax)),
        usage=cast(UsageAggregator | None, chosen.get("UsageAggregator")),
        invoices=cast(InvoiceFormatter, chosen.get("InvoiceFormatter", defaults.invoices)),
        coupons=cast(CouponValidator, chosen.get("CouponValidator", defaults.coupons)),
        named=named_strategies(registry),
    )


def named_strategies(registry: PluginRegistry) -> NamedStrategies:
    """Every registered plugin implementing a port plan terms may name, by name."""

    def named(port: StrategyPort) -> dict[str, object]:
        return {info.name: info.plugin for info in registry.plugins() if port in info.ports}

    return NamedStrategies(
        pricing=cast(dict[str, PricingStrategy], named("PricingStrategy")),
        tax=cast(dict[str, TaxCalculator], named("TaxCalculator")),
        usage=cast(dict[str, UsageAggregator], named("UsageAggregator")),
    )


def hook_runner(system: System) -> HookRunner:
    """The system's hook runner (made once), with the timeout and retries of its settings."""
    plugins = system.plugins
    if plugins.runner is None:
        settings = system.settings
        policy = RetryPolicy(
            timeout_seconds=settings.plugin_timeout_seconds,
            max_attempts=settings.plugin_max_attempts,
            backoff_seconds=settings.plugin_retry_seconds,
        )
        caller = HookCaller(plugins.metrics, policy)
        runner = HookRunner(plugins.registry, system.views, system.ledger.recorder, caller)
        runner.ensure_tables()
        plugins.runner = runner
    return plugins.runner


def deliver_in_process(system: System) -> None:
    """Run the hooks in a thread of this process, started with the first hook plugin."""
    plugins = system.plugins

    def start(info: PluginInfo | None = None) -> None:
        if plugins.delivery is None and (info is None or info.hooks):
            plugins.delivery = HookDelivery(hook_runner(system))
            plugins.delivery.start()
            system.bus.on_commit.append(plugins.delivery.poke)

    if plugins.registry.hook_plugins():
        start()
    plugins.registry.on_register.append(start)
