"""The dashboard (revenue and subscription charts) and the operations page (readiness, the
projectors' and the relay's positions against the head of the event log)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from adapters.console import charts
from adapters.console.guard import ConsolePage, Op, Operator, attempt
from adapters.console.render import page
from adapters.http import health, revenue
from adapters.http.common import system_of

if TYPE_CHECKING:
    from adapters.bootstrap import System

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsolePage)

RELAY = "relay"  # the relay's tracking name (adapters/nats/relay.py's default)


def _revenue(request: Request, op: Operator) -> dict[str, Any]:
    found: dict[str, Any] = revenue.revenue(
        request, op.principal, granularity="month", currency=None, from_=None, to=None, as_of=None
    )
    return found


@router.get("")
def dashboard(request: Request, op: Op) -> Response:
    money, error = attempt(lambda: _revenue(request, op))
    metrics, metrics_error = attempt(lambda: revenue.subscription_metrics(request, op.principal))
    context: dict[str, Any] = {
        "title": "Dashboard",
        "nav": "dashboard",
        "op": op,
        "error": error or metrics_error,
        "revenue": money,
        "metrics": metrics,
        "charts": _dashboard_charts(money, metrics),
    }
    return page(request, "dashboard.html", context)


def _dashboard_charts(
    money: dict[str, Any] | None, metrics: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    if money is not None:
        found |= {
            "mrr": charts.mrr_arr(money),
            "mrr_history": charts.mrr_history(money["history"]),
            "recognized": charts.recognized(money["recognized"]),
            "invoices": charts.invoices(money),
        }
    if metrics is not None:
        found |= {"plans": charts.plans(metrics), "churn": charts.churn(metrics)}
    return found


def positions(system: System) -> dict[str, Any]:
    """The log's head, each projector's position and lag, and the relay's (with NATS)."""
    head = system.ledger.recorder.max_notification_id() or 0
    projectors = []
    for projector in system.runner.projectors:
        position = system.views.position(projector.NAME)
        projectors.append({"name": projector.NAME, "position": position, "lag": head - position})
    relay = None
    if system.settings.nats_url:
        position = system.views.position(RELAY)
        relay = {"name": RELAY, "position": position, "lag": head - position}
    return {"head": head, "projectors": projectors, "relay": relay}


async def _operations(request: Request) -> dict[str, Any]:
    readiness = await health.ready(request)
    system = system_of(request)
    return {
        "readiness": orjson.loads(bytes(readiness.body)),
        "ready_status": readiness.status_code,
        "positions": await run_in_threadpool(positions, system),
        "settings": system.settings,
    }


@router.get("/operations")
async def operations(request: Request, op: Op) -> Response:
    context = {"title": "Operations", "nav": "operations", "op": op}
    return page(request, "operations.html", context | await _operations(request))


@router.get("/operations/panel")
async def operations_panel(request: Request, op: Op) -> Response:
    """The operations figures alone, refreshed by htmx every few seconds."""
    context = {"op": op} | await _operations(request)
    return page(request, "_operations_panel.html", context)
