"""Billing runs: `POST /v1/billing-runs {"until": <iso time>}` moves a settable clock forward
and performs, for the caller's app, everything that fell due up to that instant.

Only when the system runs on a SettableClock (`TALLY_CLOCK=settable`, tests and demos); on the
system clock time moves by itself and the run answers 409 clock_not_settable. `until` may not
be before the clock (422, field until). Admin scope.

What it does, in time order across the app's subscriptions and quotas (the clock is set to
each due instant before acting, so every event carries the time it fell due):
- a trialing subscription whose trial ended: `end_trial` (the first paid period starts);
- an active or past-due subscription whose period ended: `renew_subscription`, which carries
  out a cancel scheduled for the period end (the subscription is canceled) or applies a plan
  change scheduled for it; repeated period by period up to `until`;
- a quota whose window ended: `reset_quota` (usage starts over in the next window).
Paused, canceled and expired subscriptions are left alone. The clock ends at `until`; a run
stops after MAX_ACTIONS commands with `complete: false` and the clock at the last instant
handled: call it again with the same `until` to go on. `until` is at most 100 years ahead.
Invoicing of the periods that ended is not done yet (the billing engine will add it here).

Candidates are the app's subscriptions and quotas, from the creation events (index.py). One
run at a time per process. The clock is the whole process's: other apps see it move too,
and their own due work happens at their next billing run.
"""

from __future__ import annotations

import heapq
import threading
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from adapters.http.auth import Admin, Principal
from adapters.http.common import Instant, build_command, execute, system_of
from adapters.http.errors import ERROR_RESPONSES, ApiError
from commands.base import Command
from commands.quotas.reset_quota import ResetQuota
from commands.subscriptions.end_trial import EndTrial
from commands.subscriptions.renew_subscription import RenewSubscription
from domain.clock import SettableClock, ensure_aware
from domain.errors import DomainError, InvalidValue
from domain.quota import Quota
from domain.subscription import Status, Subscription

router = APIRouter(tags=["billing"], responses=ERROR_RESPONSES)

MAX_ACTIONS = 10_000
MAX_YEARS_AHEAD = 100
_lock = threading.Lock()


class BillingRunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: Instant


Due = tuple[datetime, str, UUID]


def _subscription_due(subscription: Any) -> Due | None:
    if not isinstance(subscription, Subscription):
        return None
    state = subscription.state
    if state.status is Status.TRIALING and state.trial_end is not None:
        return state.trial_end, "end_trial", subscription.id
    if state.status in (Status.ACTIVE, Status.PAST_DUE):
        return state.current_period.end, "renew", subscription.id
    return None


def _quota_due(quota: Any) -> Due | None:
    if not isinstance(quota, Quota) or not quota.state.enabled or quota.state.window is None:
        return None
    return quota.state.window.end, "reset_quota", quota.id


def _command(principal: Principal, action: str, aggregate: Any) -> Command:
    fields: dict[str, Any]
    if action == "reset_quota":
        kind: type[Command] = ResetQuota
        fields = {
            "tenant_id": aggregate.state.tenant_id,
            "feature_key": aggregate.state.feature_key,
        }
    else:
        kind = EndTrial if action == "end_trial" else RenewSubscription
        fields = {"subscription_id": str(aggregate.id)}
    return build_command(kind, principal, {**fields, "actor": "billing-run"}, None)


@router.post("/v1/billing-runs", summary="Move the settable clock and do what fell due (admin)")
def billing_run(request: Request, principal: Admin, body: BillingRunBody) -> dict[str, Any]:
    system = system_of(request)
    clock = system.clock
    if not isinstance(clock, SettableClock):
        raise ApiError(
            409,
            "clock_not_settable",
            "this server runs on the system clock; billing runs need TALLY_CLOCK=settable",
        )
    until = ensure_aware(body.until)
    with _lock:
        now = clock.now()
        if until < now:
            raise InvalidValue(
                f"until is before the clock ({now.isoformat()}): it never moves back",
                field="until",
            )
        if until > now + timedelta(days=366 * MAX_YEARS_AHEAD):
            raise InvalidValue(
                f"until is more than {MAX_YEARS_AHEAD} years after the clock", field="until"
            )
        return _run(request, principal, clock, until)


def _run(
    request: Request, principal: Principal, clock: SettableClock, until: datetime
) -> dict[str, Any]:
    system = system_of(request)
    index = request.app.state.index
    due: list[Due] = []
    for subscription_id in index.ids(principal.app_id, "subscription"):
        item = _subscription_due(system.aggregate(subscription_id))
        if item is not None and item[0] <= until:
            due.append(item)
    for quota_id in index.ids(principal.app_id, "quota"):
        item = _quota_due(system.aggregate(quota_id))
        if item is not None and item[0] <= until:
            due.append(item)
    heapq.heapify(due)
    counts: Counter[str] = Counter()
    errors: list[dict[str, Any]] = []
    actions = 0
    while due and actions < MAX_ACTIONS:
        at, action, aggregate_id = heapq.heappop(due)
        if at > clock.now():
            clock.set(at)
        aggregate = system.aggregate(aggregate_id)
        if aggregate is None or aggregate.state.app_id != principal.app_id:
            continue
        actions += 1
        try:
            result = execute(request, _command(principal, action, aggregate)).result
        except DomainError as error:
            errors.append({"aggregate_id": str(aggregate_id), "action": action, **error.as_dict()})
            continue
        if action == "renew" and result.get("status") == Status.CANCELED.value:
            counts["canceled"] += 1
        else:
            counts[
                {"end_trial": "trials_ended", "renew": "renewed"}.get(action, "quotas_reset")
            ] += 1
        following = system.aggregate(aggregate_id)
        after = _quota_due(following) if action == "reset_quota" else _subscription_due(following)
        if after is not None and after[0] <= until and after[0] > at:
            heapq.heappush(due, after)
    if not due:
        clock.set(until)
    return {
        "until": until.isoformat(),
        "clock": clock.now().isoformat(),
        "trials_ended": counts["trials_ended"],
        "renewed": counts["renewed"],
        "canceled": counts["canceled"],
        "quotas_reset": counts["quotas_reset"],
        "invoiced": 0,
        "errors": errors,
        "complete": not due,
    }
