"""Business metrics for Prometheus, counted from events and shown on the API's /metrics:
subscriptions started and canceled per plan, invoices paid and failed, revenue paid per
currency (minor units), quota exceeded per feature. Setting: TALLY_BUSINESS_METRICS=true.

Counters restart at zero with the process and are fed at least once (a redelivered event
counts again): they are for dashboards and alerts, not for accounting.
"""

from __future__ import annotations

import os
from uuid import UUID

from prometheus_client import CollectorRegistry, Counter

from projections.envelope import EventEnvelope


class BusinessMetrics:
    """Counters from lifecycle hooks, in a registry of its own (`collector_registry`)."""

    name = "business-metrics"

    def __init__(self) -> None:
        self.collector_registry = CollectorRegistry()
        registry = self.collector_registry
        self.plans: dict[UUID, str] = {}  # subscription -> plan key (since this process began)
        self.subscriptions = Counter(
            "tally_business_subscriptions_total",
            "Subscriptions started or canceled, by app and plan",
            ("app", "plan", "change"),
            registry=registry,
        )
        self.invoices = Counter(
            "tally_business_invoices_total",
            "Invoices paid or whose payment failed, by app",
            ("app", "outcome"),
            registry=registry,
        )
        self.paid = Counter(
            "tally_business_paid_minor_units_total",
            "Amounts paid on invoices, in minor units, by app and currency",
            ("app", "currency"),
            registry=registry,
        )
        self.quota_exceeded = Counter(
            "tally_business_quota_exceeded_total",
            "Usage refused over a hard limit, by app and feature",
            ("app", "feature"),
            registry=registry,
        )

    def on_subscription_started(self, event: EventEnvelope) -> None:
        terms = event.data.get("terms")
        plan = str(terms.get("plan_key", "")) if isinstance(terms, dict) else ""
        self.plans[event.aggregate_id] = plan  # canceled events do not repeat the plan
        self.subscriptions.labels(event.app_id, plan, "started").inc()

    def on_subscription_canceled(self, event: EventEnvelope) -> None:
        plan = self.plans.get(event.aggregate_id, "")
        self.subscriptions.labels(event.app_id, plan, "canceled").inc()

    def on_invoice_paid(self, event: EventEnvelope) -> None:
        self.invoices.labels(event.app_id, "paid").inc()
        amount = event.data.get("amount")
        if isinstance(amount, dict) and isinstance(amount.get("amount"), int):
            self.paid.labels(event.app_id, str(amount.get("currency", ""))).inc(amount["amount"])

    def on_invoice_payment_failed(self, event: EventEnvelope) -> None:
        self.invoices.labels(event.app_id, "failed").inc()

    def on_quota_exceeded(self, event: EventEnvelope) -> None:
        self.quota_exceeded.labels(event.app_id, _text(event, "feature_key")).inc()


def _text(event: EventEnvelope, key: str) -> str:
    value = event.data.get(key)
    return str(value) if value is not None else ""


def plugin() -> BusinessMetrics | None:
    """The entry point: on when TALLY_BUSINESS_METRICS is true."""
    enabled = os.environ.get("TALLY_BUSINESS_METRICS", "").lower() in ("1", "true", "yes")
    return BusinessMetrics() if enabled else None
