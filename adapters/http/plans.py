"""Catalog: define, list, read, revise and archive plans (changes need the admin scope), and
compare two plans or two versions of one (`GET /v1/plans/compare?a=pro@1&b=pro@2`, read
scope; declared before `/{plan_key}` so that "compare" is never taken for a plan key)."""

from __future__ import annotations

import re
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
from domain.catalog import KEY_PATTERN, PlanTerms
from domain.errors import InvalidValue, NotFound
from domain.plan import Plan, plan_id
from domain.plan_compare import compare_terms

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


PLAN_REF = re.compile(r"^(?P<key>[^@]+)(@(?P<version>[1-9][0-9]{0,8}))?$")
PlanRef = Annotated[
    str, Query(min_length=1, max_length=80, description="plan_key, or plan_key@version")
]


def plan_terms_of(request: Request, app_id: str, ref: str, field: str) -> PlanTerms:
    """The terms `ref` names: `pro` (the latest version) or `pro@2`; 422 for a malformed
    ref and 404 for an unknown plan or version, naming the query parameter."""
    match = PLAN_REF.match(ref)
    key = match["key"] if match else ""
    if match is None or not re.fullmatch(KEY_PATTERN, key):
        raise InvalidValue(f"{field} is a plan_key or plan_key@version, got {ref!r}", field=field)
    plan: Plan = owned(system_of(request), Plan, plan_id(app_id, key), app_id, field, key)
    version = int(match["version"]) if match["version"] else None
    try:
        return plan.terms(version)
    except NotFound as error:
        raise NotFound(error.message, field=field) from None


@router.get("/compare", summary="Price and feature-by-feature differences of two plans")
def compare_plans(request: Request, principal: Reader, a: PlanRef, b: PlanRef) -> dict[str, Any]:
    """From a to b (each `plan_key` or `plan_key@version`): base price and zone prices,
    interval, trial, fee timing, features added, removed and changed attribute by attribute
    (overage tier by tier), and sample quantities priced on both sides (docs/pricing.md)."""
    left = plan_terms_of(request, principal.app_id, a, "a")
    right = plan_terms_of(request, principal.app_id, b, "b")
    plugins = system_of(request).plugins  # each side priced by its plan's PricingStrategy
    raters = (plugins.pricing_for(left).rate_feature, plugins.pricing_for(right).rate_feature)
    return compare_terms(left, right, raters).model_dump(mode="json")


@router.get("/{plan_key}", summary="One plan with every version it has had")
def get_plan(request: Request, principal: Reader, plan_key: PlanKey) -> dict[str, Any]:
    system = system_of(request)
    plan = owned(
        system, Plan, plan_id(principal.app_id, plan_key), principal.app_id, "plan_key", plan_key
    )
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
