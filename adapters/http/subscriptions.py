"""Subscriptions: start, list a tenant's, read (now, at a version, or as of a past instant),
change plan or seats (prorated), cancel (now or at the period end), undo a scheduled cancel,
pause and resume, end a trial now, expire, and the upcoming invoice (what the next invoice
holds now; records nothing).

`POST /{id}/resume` resumes a PAUSED subscription; a cancel scheduled for the period end is
taken back with `POST /{id}/undo-cancel` (two routes, two commands: each says what it does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from adapters.http.auth import Reader, Writer
from adapters.http.common import Instant, body_model, fields_of, run_command, system_of
from adapters.http.errors import ERROR_RESPONSES, ApiError
from adapters.http.replies import SubscriptionReply, documented
from commands.base import ID_PATTERN
from commands.billing.upcoming import upcoming_invoice
from commands.subscriptions.cancel_subscription import CancelSubscription
from commands.subscriptions.change_plan import ChangePlan
from commands.subscriptions.change_seats import ChangeSeats
from commands.subscriptions.end_trial import EndTrial
from commands.subscriptions.expire_subscription import ExpireSubscription
from commands.subscriptions.pause_subscription import PauseSubscription
from commands.subscriptions.resume_subscription import ResumeSubscription
from commands.subscriptions.start_subscription import StartSubscription
from commands.subscriptions.undo_scheduled_cancel import UndoScheduledCancel
from commands.subscriptions.view import subscription_view
from domain.errors import DomainError
from domain.subscription import Subscription

_ID = frozenset({"subscription_id"})

if TYPE_CHECKING:
    StartBody = BaseModel
    ChangePlanBody = BaseModel
    CancelBody = BaseModel
    PauseBody = BaseModel
    ResumeBody = BaseModel
    UndoCancelBody = BaseModel
    SeatsBody = BaseModel
    EndTrialBody = BaseModel
    ExpireBody = BaseModel
else:
    SeatsBody = body_model(ChangeSeats, "ChangeSeatsBody", exclude=_ID)
    StartBody = body_model(StartSubscription, "StartSubscriptionBody")
    ChangePlanBody = body_model(ChangePlan, "ChangePlanBody", exclude=_ID)
    CancelBody = body_model(CancelSubscription, "CancelSubscriptionBody", exclude=_ID)
    PauseBody = body_model(PauseSubscription, "PauseSubscriptionBody", exclude=_ID)
    ResumeBody = body_model(ResumeSubscription, "ResumeSubscriptionBody", exclude=_ID)
    UndoCancelBody = body_model(UndoScheduledCancel, "UndoScheduledCancelBody", exclude=_ID)
    EndTrialBody = body_model(EndTrial, "EndTrialBody", exclude=_ID)
    ExpireBody = body_model(ExpireSubscription, "ExpireSubscriptionBody", exclude=_ID)

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"], responses=ERROR_RESPONSES)


def _not_found(subscription_id: UUID, when: str = "") -> ApiError:
    return ApiError(
        404,
        "not_found",
        f"subscription {subscription_id} not found{when}",
        [{"field": "subscription_id"}],
    )


@router.post("", status_code=201, summary="Start a tenant's subscription")
def start_subscription(request: Request, principal: Writer, body: StartBody) -> JSONResponse:
    return run_command(request, principal, StartSubscription, fields_of(body), created=True)


@router.get("", summary="A tenant's subscriptions, oldest first")
def list_subscriptions(
    request: Request,
    principal: Reader,
    tenant_id: Annotated[str, Query(pattern=ID_PATTERN)],
) -> dict[str, Any]:
    system = system_of(request)
    ids = request.app.state.index.ids(principal.app_id, "subscription", tenant_id)
    found = [system.aggregate(subscription_id) for subscription_id in ids]
    return {"subscriptions": [subscription_view(s) for s in found if s is not None]}


@router.get(
    "/{subscription_id}/upcoming-invoice",
    summary="What the next invoice would hold now (the billing run's own code; records nothing)",
)
def get_upcoming_invoice(
    request: Request, principal: Reader, subscription_id: UUID
) -> dict[str, Any]:
    system = system_of(request)
    _usage_caught_up(system)
    ports = system.plugins.billing_ports(system.usage_reader)  # priced as billing does
    return upcoming_invoice(
        system.ledger, system.clock.now(), ports, principal.app_id, subscription_id
    )


UPCOMING_WAIT_SECONDS = 2.0


def _usage_caught_up(system: Any) -> None:
    """Let the usage read model apply what was committed before this request (bounded), so
    the preview counts the usage the caller just recorded; past the bound it counts what the
    read model has."""
    head = system.ledger.recorder.max_notification_id() or 0
    try:
        system.usage_reader.wait_for(head, UPCOMING_WAIT_SECONDS)
    except DomainError:
        return


@router.put("/{subscription_id}/seats", summary="Change the seats now (prorated)")
def change_seats(
    request: Request, principal: Writer, subscription_id: UUID, body: SeatsBody
) -> JSONResponse:
    return _act(request, principal, ChangeSeats, subscription_id, body)


@router.get("/{subscription_id}", summary="A subscription now, at a version, or as of a time")
def get_subscription(
    request: Request,
    principal: Reader,
    subscription_id: UUID,
    as_of: Annotated[
        Instant | None, Query(description="the state at this past instant (ISO 8601)")
    ] = None,
    version: Annotated[int | None, Query(ge=1, le=2**31, description="state at a version")] = None,
) -> dict[str, Any]:
    if as_of is not None and version is not None:
        raise ApiError(
            422,
            "validation_error",
            "as_of: give as_of or version, not both",
            [{"field": "as_of", "rule": "exclusive", "message": "give as_of or version"}],
        )
    system = system_of(request)
    current = system.aggregate(subscription_id)
    if not isinstance(current, Subscription) or current.state.app_id != principal.app_id:
        raise _not_found(subscription_id)
    if as_of is not None:
        past = system.aggregate(subscription_id, as_of=as_of)
        if past is None:
            raise _not_found(subscription_id, f" as of {as_of.isoformat()}")
        return {**subscription_view(past), "as_of": as_of.isoformat()}
    if version is not None:
        if version > current.version:
            raise _not_found(subscription_id, f" at version {version}")
        return subscription_view(system.aggregate(subscription_id, version=version))
    return subscription_view(current)


def _act(
    request: Request,
    principal: Any,
    command: Any,
    subscription_id: UUID,
    body: BaseModel | None,
) -> JSONResponse:
    fields = {**fields_of(body), "subscription_id": str(subscription_id)}
    return run_command(request, principal, command, fields)


@router.post("/{subscription_id}/change-plan", summary="Change plan now or at the period end")
def change_plan(
    request: Request, principal: Writer, subscription_id: UUID, body: ChangePlanBody
) -> JSONResponse:
    return _act(request, principal, ChangePlan, subscription_id, body)


@router.post("/{subscription_id}/cancel", summary="Cancel now, or at the period end")
def cancel(
    request: Request, principal: Writer, subscription_id: UUID, body: CancelBody | None = None
) -> JSONResponse:
    return _act(request, principal, CancelSubscription, subscription_id, body)


@router.post("/{subscription_id}/undo-cancel", summary="Take back a cancel scheduled for later")
def undo_cancel(
    request: Request, principal: Writer, subscription_id: UUID, body: UndoCancelBody | None = None
) -> JSONResponse:
    return _act(request, principal, UndoScheduledCancel, subscription_id, body)


@router.post("/{subscription_id}/pause", summary="Pause an active subscription")
def pause(
    request: Request, principal: Writer, subscription_id: UUID, body: PauseBody | None = None
) -> JSONResponse:
    return _act(request, principal, PauseSubscription, subscription_id, body)


@router.post("/{subscription_id}/resume", summary="Resume a paused subscription")
def resume(
    request: Request, principal: Writer, subscription_id: UUID, body: ResumeBody | None = None
) -> JSONResponse:
    return _act(request, principal, ResumeSubscription, subscription_id, body)


@router.post(
    "/{subscription_id}/end-trial",
    summary="End a trial now: the first paid period starts",
    responses=documented(SubscriptionReply),
)
def end_trial(
    request: Request, principal: Writer, subscription_id: UUID, body: EndTrialBody | None = None
) -> JSONResponse:
    return _act(request, principal, EndTrial, subscription_id, body)


@router.post(
    "/{subscription_id}/expire",
    summary="Expire a subscription now (it ends; its quotas follow)",
    responses=documented(SubscriptionReply),
)
def expire_subscription(
    request: Request, principal: Writer, subscription_id: UUID, body: ExpireBody | None = None
) -> JSONResponse:
    return _act(request, principal, ExpireSubscription, subscription_id, body)
