"""The System's Prometheus metrics (its own registry; the API's /metrics renders it):
commands by name and outcome and their latency, usage events by outcome (the ingest rate),
entitlement checks allowed and denied, events the relay published, and, read at each
scrape, how far each projector and the relay are behind the head of the event store."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = structlog.get_logger(__name__)

COMMAND_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
USAGE_OUTCOMES = ("accepted", "duplicates", "refused", "failed")


class SystemMetrics:
    """Counters and histograms one System moves, and the lag gauges it reads on a scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "tally_commands_total",
            "Commands run by name and outcome (ok, duplicate, validation_error or error code)",
            ("command", "outcome"),
            registry=self.registry,
        )
        self.command_seconds = Histogram(
            "tally_command_duration_seconds",
            "Time to decide and commit a command (a group commit's time for each of its own)",
            ("command",),
            buckets=COMMAND_BUCKETS,
            registry=self.registry,
        )
        self._counted: dict[tuple[str, str], Any] = {}
        self._timed: dict[str, Any] = {}
        self._usage_and_checks()
        self.incoming_webhooks = Counter(
            "tally_incoming_webhooks_total",
            "Webhook deliveries received, by provider and outcome (processed, pending, failed, "
            "unrouted, duplicate, or the refusal's code)",
            ("provider", "outcome"),
            registry=self.registry,
        )
        self.relay_published = Counter(
            "tally_relay_published_total",
            "Events the relay published to JetStream and saw acknowledged",
            registry=self.registry,
        )

    def _usage_and_checks(self) -> None:
        self.usage_events = Counter(
            "tally_usage_events_total",
            "Usage events received by outcome (accepted, duplicates, refused, failed)",
            ("outcome",),
            registry=self.registry,
        )
        self.entitlement_checks = Counter(
            "tally_entitlement_checks_total",
            "Entitlement checks answered over the API by result (allowed, denied)",
            ("result",),
            registry=self.registry,
        )

    def command(self, name: str, outcome: str, seconds: float | None = None) -> None:
        counted = self._counted.get((name, outcome))
        if counted is None:  # labels() is slow: each child is looked up once
            counted = self._counted[name, outcome] = self.commands.labels(name, outcome)
        counted.inc()
        if seconds is not None:
            timed = self._timed.get(name)
            if timed is None:
                timed = self._timed[name] = self.command_seconds.labels(name)
            timed.observe(seconds)

    def webhook(self, provider: str, outcome: str) -> None:
        """Count one incoming webhook delivery."""
        self.incoming_webhooks.labels(provider, outcome).inc()

    def usage(self, answer: dict[str, Any]) -> None:
        """Count a usage answer's events by outcome."""
        for outcome in USAGE_OUTCOMES:
            count = int(answer.get(outcome) or 0)
            if count:
                self.usage_events.labels(outcome).inc(count)

    def checks(self, allowed: Iterable[bool]) -> None:
        """Count entitlement answers (one check or a bulk check's)."""
        answers = list(allowed)
        granted = sum(1 for a in answers if a)
        if granted:
            self.entitlement_checks.labels("allowed").inc(granted)
        if len(answers) > granted:
            self.entitlement_checks.labels("denied").inc(len(answers) - granted)

    def watch_lag(
        self,
        head: Callable[[], int],
        positions: Callable[[], dict[str, int]],
        projectors: Sequence[str],
        relay: bool,
    ) -> None:
        """Report the lag gauges from these readings at each scrape."""
        self.registry.register(LagCollector(head, positions, projectors, relay))

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value, 0 when absent (tests, tools)."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)


class LagCollector(Collector):
    """Events between the head of the event store and each reader's tracked position."""

    def __init__(
        self,
        head: Callable[[], int],
        positions: Callable[[], dict[str, int]],
        projectors: Sequence[str],
        relay: bool,
    ) -> None:
        self.head, self.positions = head, positions
        self.projectors, self.relay = list(projectors), relay

    def describe(self) -> list[Any]:
        return []  # read at collect time only (a registry must not query at registration)

    def collect(self) -> Iterable[Any]:
        try:
            head, tracked = self.head(), self.positions()
        except Exception as error:  # the store is down: /metrics still answers
            log.warning("metrics_lag_unavailable", error=repr(error))
            return []
        lag = GaugeMetricFamily(
            "tally_projection_lag_events",
            "Events committed that the projector has not applied yet",
            labels=("projector",),
        )
        for name in self.projectors:
            lag.add_metric((name,), max(0, head - tracked.get(name, 0)))
        families: list[Any] = [
            lag,
            _gauge("tally_event_store_head_position", "Position of the last event committed", head),
        ]
        if self.relay:
            families.append(
                _gauge(
                    "tally_relay_lag_events",
                    "Events committed that the relay has not published yet",
                    max(0, head - tracked.get("relay", 0)),
                )
            )
        return families


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
