"""`GET /v1/invoices/{id}/explain`: each line of an invoice with the events behind it
(id, position, type, occurred_at); usage lines also give the range and count of the usage
events and the cut-off position (adapters/billing/explain.py)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request

from adapters.billing.explain import explain_invoice
from adapters.http.auth import Reader
from adapters.http.common import owned, system_of
from adapters.http.errors import ERROR_RESPONSES
from domain.invoice import Invoice

router = APIRouter(prefix="/v1/invoices", tags=["invoices"], responses=ERROR_RESPONSES)


@router.get("/{invoice_id}/explain", summary="Each invoice line with the events behind it")
def explain(request: Request, principal: Reader, invoice_id: UUID) -> dict[str, Any]:
    system = system_of(request)
    invoice = owned(system, Invoice, invoice_id, principal.app_id, "invoice_id")
    return explain_invoice(system.ledger, invoice)
