"""The FastAPI application: `create_app(system)` wires every route group onto a System.

Handlers are synchronous (the event store is) and run in FastAPI's thread pool.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI

from adapters.console import install_console
from adapters.http import (
    alerts,
    audit,
    billing_runs,
    billing_settings,
    commands,
    coupons,
    credit_notes,
    credits,
    entitlements,
    errors,
    events,
    explain,
    health,
    invoices,
    meters,
    planned,
    plans,
    pricing,
    profiles,
    quotas,
    recompute,
    revenue,
    simulations,
    stripe,
    stripe_webhooks,
    subscriptions,
    tax,
    usage,
)
from adapters.http.auth import KEY_CACHE_SECONDS, KeyVerifier
from adapters.http.consistency import ReadYourWrites, document_min_position
from adapters.http.limits import BodyLimits
from adapters.http.metrics import Metrics
from adapters.http.observe import ObservedRequests
from adapters.http.rate_limit import RateLimiter

if TYPE_CHECKING:
    from adapters.bootstrap import System

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]

DESCRIPTION = """Tally's HTTP API (docs/http-api.md). Every `/v1` route needs
`Authorization: Bearer <api key>` (`tally keys create`); the key's app is the only app a request
sees or changes: app_id comes from the key (a body app_id is refused), another app's ids answer
404. Scopes: read < write < admin. Revoked keys stop working within 5 seconds (key cache).
Errors: `{"error": {"code", "message", "details"}}`; 422 details name the field and the rule.
Commands retry safely with `command_id` (or `Idempotency-Key`): a replay answers the first
result with `Idempotent-Replayed: true`."""


def create_app(
    system: System,
    *,
    lifespan: Lifespan | None = None,
    key_cache_seconds: float = KEY_CACHE_SECONDS,
) -> FastAPI:
    app = FastAPI(
        title="Tally",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from local assets (adapters/console/docs.py)
        redoc_url=None,
    )
    app.state.system = system
    app.state.keys = KeyVerifier(system.aggregate, ttl=key_cache_seconds)
    settings = system.settings
    app.state.rate_limit = RateLimiter.from_settings(
        settings.rate_limit_per_key, settings.rate_limit_burst
    )
    app.state.index = system.index
    metrics = Metrics(system.metrics)
    metrics.sources.append(system.plugins.render_metrics)  # plugin hooks and collectors
    app.state.metrics = metrics
    errors.install(app)
    for module in (
        plans,
        meters,
        subscriptions,
        usage,
        entitlements,
        quotas,
        alerts,
        credits,
        invoices,
        credit_notes,
        explain,
        recompute,
        coupons,
        profiles,
        tax,
        billing_runs,
        billing_settings,
        pricing,
        simulations,
        revenue,
        events,
        audit,
        commands,
        stripe,
        stripe_webhooks,
        health,
    ):
        add_routes(app, module.router)
    add_routes(app, planned.planned_router())  # named in the docs, not built: 501
    install_console(app, system.settings)
    app.add_middleware(ReadYourWrites, system=system)  # Tally-Position, ?min_position=
    errors.document_errors(app)  # the schema ERROR_RESPONSES refer to
    document_min_position(app)
    app.add_middleware(
        BodyLimits,
        max_bytes=system.settings.max_body_bytes,
        max_depth=system.settings.max_json_depth,
    )
    # outermost: request id, log context, span, metrics and access log, refusals included
    app.add_middleware(ObservedRequests, metrics=metrics, access_log=settings.access_log)
    return app


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes on the app as they were built. `app.include_router` would build
    each one's models and dependencies once more, lazily, on the first request (P9: 0.15 s
    of CPU the first /health paid). The routers carry no include-time options, startup
    handlers or lifespan, and the app uses no dependency_overrides."""
    app.router.routes.extend(router.routes)


__all__ = ["add_routes", "create_app"]
