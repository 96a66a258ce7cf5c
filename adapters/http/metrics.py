"""Prometheus metrics of the API: request counts and latencies by route template (counted
by adapters/http/observe.py), then the System's (commands, usage, checks, lag) and the
plugins'. Each app gets its own registry (several apps in one test process do not collide);
/metrics exposes them in the Prometheus text format.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from adapters.observability.metrics import SystemMetrics

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


class Metrics:
    def __init__(self, system_metrics: SystemMetrics | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tally_http_requests_total",
            "HTTP requests by method, route template and status",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "tally_http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sources: list[Callable[[], bytes]] = []  # more exposition text (plugins)
        self.system = system_metrics or SystemMetrics()
        self.sources.append(self.system.render)

    def command(self, name: str, outcome: str) -> None:
        """A command refused before it reached the bus (validation_error)."""
        self.system.command(name, outcome)

    def render(self) -> bytes:
        return generate_latest(self.registry) + b"".join(source() for source in self.sources)
