"""Catalog: define, list, read, revise and archive plans (changes need the admin scope)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from adapters.http.auth import Admin, Reader
from adapters.http.common import body_model, fields_of, owned, run_command, system_of
from adapters.http.errors import ERROR_RESPONSES
from commands.plans.archive_plan import ArchivePlan
from commands.plans.define_plan import DefinePlan
from commands.plans.revise_plan import RevisePlan
from domain.catalog import KEY_PATTERN
from domain.plan import Plan, plan_id

if TYPE_CHECKING:
    DefinePlanBody = BaseModel
    RevisePlanBody = BaseModel
    ArchivePlanBody = BaseModel
else:
    DefinePlanBody = body_model(DefinePlan, "DefinePlanBody")
    RevisePlanBody = body_model(RevisePlan, "RevisePlanBody", exclude=frozenset({"plan_key"}))
    ArchivePlanBody = body_model(ArchivePlan, "ArchivePlanBody", exclude=frozenset({"plan_key"}))

router = APIRouter(prefix="/v1/plans", tags=["catalog"], responses=ERROR_RESPONSES)

PlanKey = Annotated[str, Path(pattern=KEY_PATTERN, description="the plan's key")]


def plan_view(plan: Plan) -> dict[str, Any]:
    state = plan.state
    return {
        "plan_id": str(plan.id),
        "plan_key": state.key,
        "name": state.latest.name,
        "archived": state.archived,
        "custom_for_tenant": state.custom_for_tenant,
        "latest_version": state.latest.version,
        "versions": [terms.model_dump(mode="json") for terms in state.versions],
        "version": plan.version,
    }


@router.post("", status_code=201, summary="Define a plan (version 1)")
def define_plan(request: Request, principal: Admin, body: DefinePlanBody) -> JSONResponse:
    return run_command(request, principal, DefinePlan, fields_of(body), created=True)


@router.get("", summary="The app's plans, oldest first")
def list_plans(
    request: Request,
    principal: Reader,
    archived: Annotated[bool | None, Query(description="only archived (true) or live")] = None,
) -> dict[str, Any]:
    system = system_of(request)
    plans = []
    for aggregate_id in request.app.state.index.ids(principal.app_id, "plan"):
        plan = system.aggregate(aggregate_id)
        if isinstance(plan, Plan) and (archived is None or plan.state.archived == archived):
            plans.append(plan_view(plan))
    return {"plans": plans}


@router.get("/{plan_key}", summary="One plan with every version it has had")
def get_plan(request: Request, principal: Reader, plan_key: PlanKey) -> dict[str, Any]:
    system = system_of(request)
    plan = owned(system, Plan, plan_id(principal.app_id, plan_key), principal.app_id, "plan_key")
    return plan_view(plan)


@router.post("/{plan_key}/revisions", status_code=201, summary="Publish a new version")
def revise_plan(
    request: Request, principal: Admin, plan_key: PlanKey, body: RevisePlanBody
) -> JSONResponse:
    fields = {**fields_of(body), "plan_key": plan_key}
    return run_command(request, principal, RevisePlan, fields, created=True)


@router.post("/{plan_key}/archive", summary="Archive: no new subscribers")
def archive_plan(
    request: Request, principal: Admin, plan_key: PlanKey, body: ArchivePlanBody | None = None
) -> JSONResponse:
    return run_command(request, principal, ArchivePlan, {**fields_of(body), "plan_key": plan_key})
