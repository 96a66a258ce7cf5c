"""What-if pricing: `POST /v1/simulations/pricing` re-prices a period's recorded usage under a
draft of a plan's terms, per subscription on the plan, beside its current terms
(commands/billing/simulate_pricing.py, docs/pricing.md "Compare and what-if"). It records no
event. Usage is counted up to the log head when the request arrives, once the usage read
model has applied it (as a billing run does; 409 usage_read_model_lagging otherwise).

Scope: write. Nothing is recorded, but one request re-prices every subscription of a plan,
a heavy read that the read-only keys of entitlement checks should not be able to start;
publishing the draft (`POST /v1/plans/{plan_key}/revisions`) still needs admin.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from adapters.billing.runs import usage_cutoff
from adapters.http.auth import Writer
from adapters.http.common import system_of
from adapters.http.errors import ERROR_RESPONSES
from commands.billing.simulate_pricing import SimulatePricing, simulate_pricing

router = APIRouter(prefix="/v1/simulations", tags=["pricing"], responses=ERROR_RESPONSES)


@router.post("/pricing", summary="Re-price recorded usage under a draft plan (records nothing)")
def simulate(request: Request, principal: Writer, body: SimulatePricing) -> dict[str, Any]:
    """Per subscription: the period under its current terms, under the draft, the
    difference and the lines of each; totals per currency; skipped tenants with a reason."""
    system = system_of(request)
    return simulate_pricing(
        system.aggregate,
        request.app.state.index,
        system.usage_reader,
        principal.app_id,
        body,
        cutoff=usage_cutoff(system),
        ports=system.plugins.billing_ports(system.usage_reader),  # the plans' strategies
    )
