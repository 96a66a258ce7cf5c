"""Plans: the list, one plan's versions, a comparison of two (plan or plan@version), and the
what-if simulation form (a draft of the terms re-pricing a period's recorded usage)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from adapters.console.guard import ConsolePage, Form, Op, Operator, attempt, status_of
from adapters.console.render import page, problem
from adapters.http import plans, simulations
from adapters.http.common import system_of
from adapters.http.errors import ApiError
from commands.billing.simulate_pricing import SimulatePricing
from commands.edge import validation_error
from commands.plans.terms_input import PlanTermsInput
from domain.api_key import Scope
from domain.catalog import KEY_PATTERN
from domain.errors import DomainError

router = APIRouter(prefix="/console/plans", include_in_schema=False, route_class=ConsolePage)

PlanKey = Annotated[str, Path(pattern=KEY_PATTERN)]
Ref = Annotated[str, Query(max_length=80)]


@router.get("")
def plan_list(request: Request, op: Op) -> Response:
    listed = plans.list_plans(request, op.principal, None)["plans"]
    context: dict[str, Any] = {
        "title": "Plans",
        "nav": "plans",
        "op": op,
        "plans": listed,
        "refs": [f"{p['plan_key']}@{v['version']}" for p in listed for v in p["versions"]],
    }
    return page(request, "plans.html", context)


@router.get("/compare")
def compare(request: Request, op: Op, a: Ref = "", b: Ref = "") -> Response:
    result, error = attempt(lambda: plans.compare_plans(request, op.principal, a, b))
    context: dict[str, Any] = {
        "title": f"Compare {a} and {b}",
        "nav": "plans",
        "op": op,
        "a": a,
        "b": b,
        "comparison": result,
        "error": error,
    }
    return page(request, "compare.html", context, status_code=200 if error is None else 422)


def draft_of(plan: dict[str, Any]) -> str:
    """The latest version's terms as POST /v1/plans takes them: the draft to edit."""
    latest = plan["versions"][-1]
    draft = {k: v for k, v in latest.items() if k in PlanTermsInput.model_fields}
    return orjson.dumps(draft, option=orjson.OPT_INDENT_2).decode()


def _this_month(request: Request) -> tuple[str, str]:
    now = system_of(request).clock.now().astimezone(UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return start.isoformat(), end.isoformat()


def _plan_context(request: Request, op: Operator, plan_key: str) -> dict[str, Any]:
    plan = plans.get_plan(request, op.principal, plan_key)
    start, end = _this_month(request)
    return {
        "title": f"Plan {plan_key}",
        "nav": "plans",
        "op": op,
        "plan": plan,
        "form": {"draft": draft_of(plan), "start": start, "end": end, "tenant_ids": ""},
        "simulation": None,
        "error": None,
        "can_simulate": op.principal.has(Scope.WRITE),
    }


@router.get("/{plan_key}")
def plan_page(request: Request, op: Op, plan_key: PlanKey) -> Response:
    return page(request, "plan.html", _plan_context(request, op, plan_key))


def _simulation(plan_key: str, fields: dict[str, str]) -> SimulatePricing:
    """The simulation the form describes; ValueError naming what is wrong."""
    try:
        draft = orjson.loads(fields.get("draft", ""))
    except orjson.JSONDecodeError as error:
        raise ValueError(f"draft: not JSON ({error})") from None
    tenants = [t.strip() for t in fields.get("tenant_ids", "").split(",") if t.strip()]
    body: dict[str, Any] = {
        "plan_key": plan_key,
        "draft": draft,
        "period": {"start": fields.get("start", ""), "end": fields.get("end", "")},
        "tenant_ids": tenants or None,
    }
    try:
        return SimulatePricing.model_validate(body)
    except ValidationError as error:
        refused = validation_error(error, "simulate_pricing")
        raise ValueError(refused["message"]) from None


@router.post("/{plan_key}/simulate")
def simulate(request: Request, form: Form, plan_key: PlanKey) -> Response:
    op = form.operator
    op.require(Scope.WRITE)
    context = _plan_context(request, op, plan_key)
    context["form"] = {k: form.fields.get(k, "") for k in ("draft", "start", "end", "tenant_ids")}
    try:
        body = _simulation(plan_key, form.fields)
    except ValueError as error:
        return page(request, "plan.html", context | {"error": str(error)}, status_code=422)
    try:
        context["simulation"] = simulations.simulate(request, op.principal, body)
    except (ApiError, DomainError) as error:
        context["error"] = problem(error)
        return page(request, "plan.html", context, status_code=status_of(error))
    return page(request, "plan.html", context)
