"""`GET /v1/invoices/{id}/recompute`: the invoice's usage recomputed from the events now,
beside what was billed (commands/billing/recompute.py); records nothing."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request

from adapters.http.auth import Reader
from adapters.http.common import owned, system_of
from adapters.http.errors import ERROR_RESPONSES
from commands.billing.recompute import recompute_with
from domain.invoice import Invoice

router = APIRouter(prefix="/v1/invoices", tags=["invoices"], responses=ERROR_RESPONSES)


@router.get("/{invoice_id}/recompute", summary="The invoice recomputed from the events now")
def recompute(request: Request, principal: Reader, invoice_id: UUID) -> dict[str, Any]:
    system = system_of(request)
    invoice = owned(system, Invoice, invoice_id, principal.app_id, "invoice_id")
    ports = system.plugins.billing_ports(system.usage_reader)  # the plan's strategies
    return recompute_with(invoice, ports, system.aggregate)
