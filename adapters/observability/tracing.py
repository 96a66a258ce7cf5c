"""OpenTelemetry spans, off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (or a test installs a
provider): then HTTP requests, commands, event-store writes, relay publishes and projector
batches are spans, exported by OTLP over HTTP.

OpenTelemetry is imported only when tracing is on, so `tally serve` starts as fast as before
when it is off; every helper here is then a cheap no-op. The trace context of the command
that wrote an event is stored with the event (`trace_parent`, beside `recorded_at`), sent
as the W3C `traceparent` header of its NATS message, and continued by the projector that
applies it: one trace from the request to the read model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACEPARENT = "traceparent"
Attributes = Mapping[str, str | int | float | bool]

_state: dict[str, Any] = {"tracer": None, "provider": None}


def enabled() -> bool:
    return _state["tracer"] is not None


def install(provider: Any) -> None:
    """Trace with this TracerProvider (tests: one with an in-memory exporter); None: off."""
    _state["provider"] = provider
    _state["tracer"] = provider.get_tracer("tally") if provider is not None else None


def install_from_environment() -> bool:
    """Turn tracing on, exporting by OTLP/HTTP, when OTEL_EXPORTER_OTLP_ENDPOINT is set
    (once per process); True when tracing is on."""
    if enabled() or not os.environ.get(ENDPOINT_VARIABLE):
        return enabled()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    service = os.environ.get("OTEL_SERVICE_NAME", "tally")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)
    return True


def flush() -> None:
    """Export the spans still buffered (at shutdown)."""
    provider = _state["provider"]
    if provider is not None and hasattr(provider, "force_flush"):
        provider.force_flush()


@contextmanager
def span(
    name: str, attributes: Attributes | None = None, parent: str | None = None
) -> Iterator[Any]:
    """A span around the block (None when tracing is off); `parent`: a traceparent to
    continue instead of the current span."""
    tracer = _state["tracer"]
    if tracer is None:
        yield None
        return
    context = _context_of(parent) if parent else None
    with tracer.start_as_current_span(name, context=context, attributes=attributes) as current:
        yield current


@contextmanager
def batch_span(
    name: str, parents: Sequence[str | None], attributes: Attributes | None = None
) -> Iterator[Any]:
    """A span for a batch of events: a child of the first event's trace, linked to the
    traces of the others."""
    tracer = _state["tracer"]
    if tracer is None:
        yield None
        return
    known = list(dict.fromkeys(p for p in parents if p))
    context = _context_of(known[0]) if known else None
    links = [_link(p) for p in known[1:]]
    with tracer.start_as_current_span(
        name, context=context, links=[link for link in links if link], attributes=attributes
    ) as current:
        yield current


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span (None when tracing is off or no span)."""
    if _state["tracer"] is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get(TRACEPARENT)


def traceparent_of(headers: Mapping[str, str] | None) -> str | None:
    """The traceparent header among message or request headers, if any."""
    if not headers or _state["tracer"] is None:
        return None
    return headers.get(TRACEPARENT)


def _context_of(traceparent: str) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({TRACEPARENT: traceparent})


def _link(traceparent: str) -> Any:
    from opentelemetry import trace

    span_context = trace.get_current_span(_context_of(traceparent)).get_span_context()
    return trace.Link(span_context) if span_context.is_valid else None


def set_attributes(current: Any, attributes: Attributes) -> None:
    """Set attributes on a span from `span()` (nothing when tracing is off)."""
    if current is not None:
        current.set_attributes(attributes)
