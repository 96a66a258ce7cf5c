"""Each HTTP request observed (pure ASGI middleware, the outermost): its request id (the
client's `X-Request-Id` when it is a sane token, else a fresh one, echoed on the response),
bound to every log line written while it runs; a span (when tracing is on, continuing the
caller's `traceparent`); its count and latency by route template for /metrics; and one access
log line (`http_request`) unless TALLY_ACCESS_LOG=false."""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.http.metrics import Metrics
from adapters.observability import tracing
from adapters.observability.correlation import REQUEST_ID_HEADER, sane_request_id
from adapters.observability.logs import bound

log = structlog.get_logger("tally.access")


def request_id_of(scope: Scope) -> tuple[str, bool]:
    """The request's id, and whether the client sent it (a malformed one is replaced)."""
    sent = sane_request_id(_header(scope, b"x-request-id"))
    return (sent, True) if sent else (uuid.uuid4().hex, False)


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


class ObservedRequests:
    """Request id, log context, span, metrics and the access log line of each request."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = True) -> None:
        self.app, self.metrics, self.access_log = app, metrics, access_log
        self.log = log.bind()  # resolved once (the process configured its logs by now)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id, sent = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = (request_id, sent)
        status = 500
        echo = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", ()), echo]
            await send(message)

        parent = _header(scope, b"traceparent") if tracing.enabled() else None
        context = bound(request_id=request_id, correlation_id=request_id)
        with context, tracing.span("HTTP", parent=parent) as span:
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                self._done(scope, status, time.perf_counter() - started, span)

    def _done(self, scope: Scope, status: int, took: float, span: Any) -> None:
        route = _route_template(scope)
        method = str(scope.get("method", "GET"))
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(took)
        if span is not None:
            span.update_name(f"{method} {route}")
            attributes = {"http.request.method": method, "http.route": route}
            tracing.set_attributes(span, attributes | {"http.response.status_code": status})
        if self.access_log:
            self.log.info(
                "http_request",
                method=method,
                path=str(scope.get("path", "")),
                route=route,
                status=status,
                ms=round(took * 1000, 2),
            )


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
