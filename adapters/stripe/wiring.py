"""Stripe in a System: the provider, the services on it, the webhook intake and the sync.

Built by bootstrap when TALLY_STRIPE_API_KEY is set (or a provider is given, as tests do);
without it `system.stripe` is None and every Stripe route answers 503 not_configured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters.stripe.reports import ViewReportStore
from adapters.stripe.sync import StripeSync
from commands.payments.collect import ProviderCollector
from commands.payments.context import PaymentContext
from commands.payments.ports import PaymentProvider
from commands.payments.reconcile import Reconciler
from commands.payments.webhooks import StripeWebhooks

if TYPE_CHECKING:
    from adapters.bootstrap import System
    from adapters.settings import Settings
    from adapters.stripe.intake import WebhookIntake


@dataclass
class StripeServices:
    """What the Stripe routes, workers and the CLI use."""

    provider: PaymentProvider
    ctx: PaymentContext
    webhooks: StripeWebhooks
    sync: StripeSync
    reconciler: Reconciler
    intake: WebhookIntake | None  # None without TALLY_STRIPE_WEBHOOK_SECRET


def provider_from(settings: Settings) -> PaymentProvider | None:
    """The real Stripe gateway when the API key is set."""
    if not settings.stripe_configured:
        return None
    from adapters.stripe.gateway import StripeGateway

    gateway: PaymentProvider | None = StripeGateway.from_settings(settings)
    return gateway


def collector_for(provider: PaymentProvider, load: Callable[[UUID], Any]) -> ProviderCollector:
    return ProviderCollector(provider, load)


def build_stripe(system: System, provider: PaymentProvider) -> StripeServices:
    from adapters.stripe.intake import build_intake

    ctx = PaymentContext(provider=provider, load=system.ledger.get, execute=system.bus.handle)
    webhooks = StripeWebhooks(ctx)
    sync = StripeSync(system.views, ctx, system.clock)
    sync.ensure_tables()
    reconciler = Reconciler(ctx, system.index.ids, ViewReportStore(system.views), system.clock.now)
    intake = build_intake(system, webhooks) if system.settings.stripe_webhook_secret else None
    return StripeServices(provider, ctx, webhooks, sync, reconciler, intake)
