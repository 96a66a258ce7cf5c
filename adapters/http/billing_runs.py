"""Billing runs: `POST /v1/billing-runs {"until": <iso time>}` moves a settable clock forward
and performs, for the caller's app, everything that fell due up to that instant.

Only when the system runs on a SettableClock (`TALLY_CLOCK=settable`, tests and demos); on the
system clock time moves by itself and the run answers 409 clock_not_settable. `until` may not
be before the clock (422, field until). Admin scope.

What it does is commands/billing/run.py: in time order across the app's subscriptions,
quotas and invoices, the invoices of billing points that fell due (drafted, and finalized
unless the app has a grace period), trial ends, renewals (carrying out scheduled cancels and
plan changes), quota resets and the finalizing of drafts whose grace period ended. The clock
ends at `until`; a run stops after MAX_ACTIONS commands with `complete: false` and the clock
at the last instant handled: call it again with the same `until` to go on. `until` is at
most 100 years ahead. Usage is billed up to `usage_cutoff` (the log head when the run
started, once the usage read model applied it; 409 usage_read_model_lagging otherwise).

Candidates are the app's subscriptions and quotas, from the creation events (index.py). One
run at a time per process. The clock is the whole process's: other apps see it move too,
and their own due work happens at their next billing run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from adapters.billing.runs import run_billing
from adapters.http.auth import Admin, Principal
from adapters.http.common import Instant, build_command, system_of
from adapters.http.consistency import mark_written
from adapters.http.errors import ERROR_RESPONSES, ApiError
from commands.base import Command
from commands.billing.run import MAX_ACTIONS, due_command
from domain.clock import SettableClock, ensure_aware
from domain.errors import InvalidValue

router = APIRouter(tags=["billing"], responses=ERROR_RESPONSES)

MAX_YEARS_AHEAD = 100
_lock = threading.Lock()


class BillingRunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: Instant


def _command(principal: Principal) -> Callable[[str, str, Any, int], Command]:
    def build(app_id: str, action: str, aggregate: Any, cutoff: int) -> Command:
        command = due_command(app_id, action, aggregate, cutoff=cutoff)
        fields = command.model_dump(exclude={"app_id", "command_id", "correlation_id", "actor"})
        return build_command(type(command), principal, fields, None, actor=command.actor)

    return build


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
        mark_written(request)  # the head of the log, after the run (consistency.py)
        return _run(request, principal, clock, until)


def _run(
    request: Request, principal: Principal, clock: SettableClock, until: datetime
) -> dict[str, Any]:
    system = system_of(request)
    index = request.app.state.index
    return run_billing(
        system,
        index.ids,
        principal.app_id,
        clock,
        until,
        build=_command(principal),
        max_actions=MAX_ACTIONS,
    )
