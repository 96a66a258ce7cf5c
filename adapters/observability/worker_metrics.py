"""/metrics for a worker process (`tally worker ...`), which has no HTTP API of its own: with
TALLY_METRICS_PORT set, a small HTTP server in a thread answers GET /metrics with the
System's figures (commands run by the NATS command bus, the relay's published count, the
lag gauges) and the plugins' (hook calls, webhook outcomes)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from adapters.bootstrap import System


class _Joined(Collector):
    """The samples of several registries, read at each scrape."""

    def __init__(self, registries: Callable[[], Iterable[CollectorRegistry]]) -> None:
        self.registries = registries

    def collect(self) -> Iterable[Any]:
        for registry in self.registries():
            yield from registry.collect()


def registries_of(system: System) -> list[CollectorRegistry]:
    """The System's registry, the plugin hooks' and each plugin's own."""
    found = [system.metrics.registry, system.plugins.metrics.registry]
    for info in system.plugins.registry.plugins():
        extra = getattr(info.plugin, "collector_registry", None)
        if isinstance(extra, CollectorRegistry):
            found.append(extra)
    return found


def serve_worker_metrics(system: System) -> Callable[[], None]:
    """Start the server when TALLY_METRICS_PORT is set; returns what stops it."""
    port = system.settings.metrics_port
    if port is None:
        return lambda: None
    from prometheus_client import start_http_server

    joined = CollectorRegistry(auto_describe=False)
    joined.register(_Joined(lambda: registries_of(system)))
    server, thread = start_http_server(port, system.settings.metrics_host, registry=joined)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
