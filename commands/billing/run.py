"""The billing run: move a settable clock to `until` and do, for one app, what fell due.

In time order across the app's subscriptions and quotas (the clock is set to each due instant
before acting, so every event carries the time it fell due):
- a trialing subscription whose trial ended: `end_trial` (the first paid period starts);
- an active or past-due subscription whose period ended: `renew_subscription`, which carries
  out a cancel scheduled for the period end or applies a plan change scheduled for it;
  repeated period by period up to `until`;
- a quota whose window ended: `reset_quota` (usage starts over in the next window).
Paused, canceled and expired subscriptions are left alone. A run stops after `max_actions`
commands with `complete: false` (call it again to go on). Invoicing of the periods that
ended comes with the billing engine. Used by `POST /v1/billing-runs` and `tally clock advance`.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from commands.base import Command
from commands.bus import CommandResult
from commands.quotas.reset_quota import ResetQuota
from commands.subscriptions.end_trial import EndTrial
from commands.subscriptions.renew_subscription import RenewSubscription
from domain.clock import SettableClock
from domain.errors import DomainError
from domain.quota import Quota
from domain.subscription import Status, Subscription

MAX_ACTIONS = 10_000
ACTOR = "billing-run"

Due = tuple[datetime, str, UUID]
Owned = Callable[[str, str], list[UUID]]  # (app_id, kind) -> aggregate ids
Execute = Callable[[Command], CommandResult]


def subscription_due(subscription: Any) -> Due | None:
    if not isinstance(subscription, Subscription):
        return None
    state = subscription.state
    if state.status is Status.TRIALING and state.trial_end is not None:
        return state.trial_end, "end_trial", subscription.id
    if state.status in (Status.ACTIVE, Status.PAST_DUE):
        return state.current_period.end, "renew", subscription.id
    return None


def quota_due(quota: Any) -> Due | None:
    if not isinstance(quota, Quota) or not quota.state.enabled or quota.state.window is None:
        return None
    return quota.state.window.end, "reset_quota", quota.id


def due_command(app_id: str, action: str, aggregate: Any, actor: str = ACTOR) -> Command:
    if action == "reset_quota":
        return ResetQuota(
            app_id=app_id,
            actor=actor,
            tenant_id=aggregate.state.tenant_id,
            feature_key=aggregate.state.feature_key,
        )
    kind = EndTrial if action == "end_trial" else RenewSubscription
    return kind(app_id=app_id, actor=actor, subscription_id=aggregate.id)


def run_billing(
    load: Callable[[UUID], Any],
    owned: Owned,
    execute: Execute,
    app_id: str,
    clock: SettableClock,
    until: datetime,
    *,
    build: Callable[[str, str, Any], Command] = due_command,
    max_actions: int = MAX_ACTIONS,
) -> dict[str, Any]:
    """Do what fell due for `app_id` up to `until`; returns counts and per-item errors."""
    due: list[Due] = []
    for kind, when in (("subscription", subscription_due), ("quota", quota_due)):
        for aggregate_id in owned(app_id, kind):
            item = when(load(aggregate_id))
            if item is not None and item[0] <= until:
                due.append(item)
    heapq.heapify(due)
    counts: Counter[str] = Counter()
    errors: list[dict[str, Any]] = []
    actions = 0
    while due and actions < max_actions:
        at, action, aggregate_id = heapq.heappop(due)
        if at > clock.now():
            clock.set(at)
        aggregate = load(aggregate_id)
        if aggregate is None or aggregate.state.app_id != app_id:
            continue
        actions += 1
        try:
            result = execute(build(app_id, action, aggregate)).result
        except DomainError as error:
            errors.append({"aggregate_id": str(aggregate_id), "action": action, **error.as_dict()})
            continue
        if action == "renew" and result.get("status") == Status.CANCELED.value:
            counts["canceled"] += 1
        else:
            counts[
                {"end_trial": "trials_ended", "renew": "renewed"}.get(action, "quotas_reset")
            ] += 1
        following = load(aggregate_id)
        after = quota_due(following) if action == "reset_quota" else subscription_due(following)
        if after is not None and at < after[0] <= until:
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
