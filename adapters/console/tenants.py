"""Tenants: the list (every tenant id the app's aggregates name) with a search, and one
tenant's page: profile, subscriptions with their events, entitlements, usage charts per
feature, invoices, credits, credit notes and alerts, each read as the API reads it."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from adapters.console import charts
from adapters.console.guard import ConsolePage, Op, Operator, attempt
from adapters.console.render import page
from adapters.http import alerts, credit_notes, credits, entitlements, events, invoices, profiles
from adapters.http import subscriptions as subscription_routes
from adapters.http.common import run_query, system_of
from commands.base import ID_PATTERN
from domain.catalog import KEY_PATTERN

router = APIRouter(prefix="/console/tenants", include_in_schema=False, route_class=ConsolePage)

TENANT_KINDS = ("subscription", "billing_profile", "invoice", "quota", "credit_ledger")
MAX_LISTED = 500
TIMELINE_EVENTS = 200
Granularity = Literal["hour", "day", "month"]
BUCKETS_SHOWN: dict[str, int] = {"hour": 48, "day": 62, "month": 24}
TenantId = Annotated[str, Path(pattern=ID_PATTERN)]


def tenant_ids(request: Request, app_id: str) -> dict[str, dict[str, int]]:
    """Every tenant the app's aggregates belong to, with how many of each kind it has."""
    index = request.app.state.index
    found: dict[str, dict[str, int]] = {}
    for kind in TENANT_KINDS:
        for aggregate_id in index.ids(app_id, kind):
            tenant = index.tenant_of(app_id, kind, aggregate_id)
            if tenant:
                counts = found.setdefault(tenant, dict.fromkeys(TENANT_KINDS, 0))
                counts[kind] += 1
    return dict(sorted(found.items()))


@router.get("")
def tenant_list(
    request: Request, op: Op, q: Annotated[str, Query(max_length=200)] = ""
) -> Response:
    everyone = tenant_ids(request, op.app_id)
    needle = q.strip().lower()
    matching = [(t, c) for t, c in everyone.items() if needle in t.lower()]
    context: dict[str, Any] = {
        "title": "Tenants",
        "nav": "tenants",
        "op": op,
        "q": q,
        "tenants": matching[:MAX_LISTED],
        "total": len(everyone),
        "matching": len(matching),
    }
    return page(request, "tenants.html", context)


def _timeline(request: Request, op: Operator, subscription_id: str) -> list[dict[str, Any]]:
    history = events.events(request, op.principal, UUID(subscription_id), None, 0, TIMELINE_EVENTS)
    found: list[dict[str, Any]] = history["events"]
    return found


def _subscriptions(request: Request, op: Operator, tenant_id: str) -> list[dict[str, Any]]:
    listed = subscription_routes.list_subscriptions(request, op.principal, tenant_id)
    return [
        {**subscription, "events": _timeline(request, op, subscription["subscription_id"])}
        for subscription in listed["subscriptions"]
    ]


def _sections(request: Request, op: Operator, tenant_id: str) -> dict[str, Any]:
    principal = op.principal
    profile, _ = attempt(lambda: profiles.get_profile(request, principal, tenant_id))
    rights = entitlements.all_entitlements(request, principal, tenant_id)["entitlements"]
    return {
        "profile": profile,
        "subscriptions": _subscriptions(request, op, tenant_id),
        "entitlements": rights,
        "features": _used_features(request, op, tenant_id, rights),
        "invoices": invoices.list_invoices(request, principal, tenant_id, None, 100)["invoices"],
        "credits": credits.list_credits(request, principal, tenant_id),
        "credit_notes": credit_notes.list_credit_notes(request, principal, tenant_id, 100)[
            "credit_notes"
        ],
        "alerts": alerts.list_alerts(request, principal, tenant_id, False)["alerts"],
    }


def _used_features(
    request: Request, op: Operator, tenant_id: str, rights: list[dict[str, Any]]
) -> list[str]:
    """Features with usage recorded, and the metered ones the tenant is entitled to."""
    used = {row["feature"] for row in _usage_rows(request, op, tenant_id, None, "month")}
    metered = {row["feature"] for row in rights if row.get("used") is not None}
    return sorted(used | metered)


@router.get("/{tenant_id}")
def tenant_page(request: Request, op: Op, tenant_id: TenantId) -> Response:
    sections, error = attempt(lambda: _sections(request, op, tenant_id))
    context: dict[str, Any] = {
        "title": f"Tenant {tenant_id}",
        "nav": "tenants",
        "op": op,
        "tenant_id": tenant_id,
        "error": error,
        **(sections or {}),
    }
    if sections is not None:
        context["usage_charts"] = [
            _usage_chart(request, op, tenant_id, feature, "day") for feature in sections["features"]
        ]
    return page(request, "tenant.html", context, status_code=200 if error is None else 422)


def _usage_rows(
    request: Request, op: Operator, tenant_id: str, feature: str | None, granularity: str
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = run_query(
        request,
        "usage",
        app_id=op.app_id,
        tenant_id=tenant_id,
        feature=feature,
        granularity=granularity,
    )
    return rows


def _usage_chart(
    request: Request, op: Operator, tenant_id: str, feature: str, granularity: str
) -> dict[str, Any]:
    rows = _usage_rows(request, op, tenant_id, feature, granularity)[-BUCKETS_SHOWN[granularity] :]
    return {
        "tenant_id": tenant_id,
        "feature": feature,
        "granularity": granularity,
        "granularities": list(BUCKETS_SHOWN),
        "chart": charts.usage(rows, feature),
        "buckets": len(rows),
        "now": system_of(request).clock.now().isoformat(),
    }


@router.get("/{tenant_id}/usage/{feature}")
def usage_fragment(
    request: Request,
    op: Op,
    tenant_id: TenantId,
    feature: Annotated[str, Path(pattern=KEY_PATTERN)],
    granularity: Granularity = "day",
) -> Response:
    """One feature's usage chart at a granularity (htmx swaps it in place)."""
    usage = _usage_chart(request, op, tenant_id, feature, granularity)
    return page(request, "_usage_chart.html", {"op": op, "usage": usage})
