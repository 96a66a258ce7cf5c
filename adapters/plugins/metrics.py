"""Prometheus counters of plugin hook calls (rendered on the API's /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest


class PluginMetrics:
    """Hook calls by plugin, hook and outcome (ok, error, timeout), and dead letters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "tally_plugin_calls_total",
            "Plugin hook calls by plugin, hook and outcome (ok, error, timeout)",
            ("plugin", "hook", "outcome"),
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "tally_plugin_dead_letters_total",
            "Events a plugin hook failed on every attempt (skipped, recorded as dead letters)",
            ("plugin", "hook"),
            registry=self.registry,
        )

    def call(self, plugin: str, hook: str, outcome: str) -> None:
        self.calls.labels(plugin, hook, outcome).inc()

    def value(self, plugin: str, hook: str, outcome: str) -> float:
        """The current count (tests, `tally plugins list`)."""
        found = self.registry.get_sample_value(
            "tally_plugin_calls_total", {"plugin": plugin, "hook": hook, "outcome": outcome}
        )
        return found or 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)
