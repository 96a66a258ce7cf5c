"""Invoices: draft, list (per tenant), read (JSON or PDF), finalize, pay, void, uncollectible,
and payments that failed (recorded, then retried by dunning or by hand).

`POST /v1/invoices` drafts an invoice by hand (the billing engine will draft them from
subscriptions and usage); lists come from the app's InvoiceDrafted events (see index.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from adapters.http.auth import Admin, Reader, Writer
from adapters.http.common import body_model, fields_of, owned, run_command, system_of
from adapters.http.errors import ERROR_RESPONSES
from adapters.http.replies import InvoiceReply, PaymentRetryReply, documented
from commands.base import ID_PATTERN
from commands.invoices.add_invoice_line import AddInvoiceLine
from commands.invoices.draft_invoice import DraftInvoice
from commands.invoices.fail_invoice_payment import FailInvoicePayment
from commands.invoices.finalize_invoice import FinalizeInvoice
from commands.invoices.line_input import InvoiceLineInput
from commands.invoices.mark_invoice_uncollectible import MarkInvoiceUncollectible
from commands.invoices.pay_invoice import PayInvoice
from commands.invoices.retry_invoice_payment import RetryInvoicePayment
from commands.invoices.view import invoice_view
from commands.invoices.void_invoice import VoidInvoice
from domain.invoice import Invoice, InvoiceStatus
from domain.profile import billing_profile_id

_ID = frozenset({"invoice_id"})

if TYPE_CHECKING:
    DraftBody = BaseModel
    FinalizeBody = BaseModel
    PayBody = BaseModel
    VoidBody = BaseModel
    PaymentFailureBody = BaseModel
    RetryPaymentBody = BaseModel
else:
    DraftBody = body_model(DraftInvoice, "DraftInvoiceBody")
    FinalizeBody = body_model(FinalizeInvoice, "FinalizeInvoiceBody", exclude=_ID)
    PayBody = body_model(PayInvoice, "PayInvoiceBody", exclude=_ID)
    VoidBody = body_model(VoidInvoice, "VoidInvoiceBody", exclude=_ID)
    PaymentFailureBody = body_model(
        FailInvoicePayment,
        "FailInvoicePaymentBody",
        exclude=_ID,
        example={"reason": "card_declined", "next_retry_at": "2026-01-04T00:00:00Z"},
    )
    RetryPaymentBody = body_model(
        RetryInvoicePayment, "RetryInvoicePaymentBody", exclude=_ID, example={"attempt": 2}
    )

router = APIRouter(prefix="/v1/invoices", tags=["invoices"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, summary="Draft an invoice")
def draft(request: Request, principal: Writer, body: DraftBody) -> JSONResponse:
    return run_command(request, principal, DraftInvoice, fields_of(body), created=True)


@router.get("", summary="The app's invoices, newest first (optionally one tenant's)")
def list_invoices(
    request: Request,
    principal: Reader,
    tenant_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    status: InvoiceStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    system = system_of(request)
    ids = request.app.state.index.ids(principal.app_id, "invoice", tenant_id)
    invoices: list[dict[str, Any]] = []
    for invoice_id in reversed(ids):
        invoice = system.aggregate(invoice_id)
        if not isinstance(invoice, Invoice):
            continue
        if status is not None and invoice.state.status != status:
            continue
        invoices.append(invoice_view(invoice))
        if len(invoices) >= limit:
            break
    return {"invoices": invoices}


@router.get("/{invoice_id}", summary="One invoice")
def get_invoice(request: Request, principal: Reader, invoice_id: UUID) -> dict[str, Any]:
    invoice = owned(system_of(request), Invoice, invoice_id, principal.app_id, "invoice_id")
    return invoice_view(invoice)


@router.get(
    "/{invoice_id}/pdf",
    summary="The invoice as PDF",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def invoice_pdf(request: Request, principal: Reader, invoice_id: UUID) -> Response:
    system = system_of(request)
    invoice = owned(system, Invoice, invoice_id, principal.app_id, "invoice_id")
    document = formatted(system, request, invoice)  # Accept: the InvoiceFormatter's type
    if document is not None:
        return document
    profile = system.aggregate(billing_profile_id(principal.app_id, invoice.state.tenant_id))
    customer = profile.terms.model_dump(mode="json") if profile is not None else None
    from adapters.pdf.invoice import render_invoice_pdf  # fpdf: only when asked

    body = render_invoice_pdf(invoice_view(invoice), principal.app_id, customer)
    name = invoice.state.number_text or f"draft-{invoice_id}"
    return Response(
        body,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}.pdf"'},
    )


def formatted(system: Any, request: Request, invoice: Invoice) -> Response | None:
    """The InvoiceFormatter's document when it is a PDF or the request's Accept names its
    media type (docs/plugins.md "Invoice documents"); None: the built-in PDF."""
    document = system.plugins.strategies.invoices.format_invoice(invoice.id, invoice.state)
    accepted = [part.split(";")[0].strip() for part in request.headers.get("accept", "").split(",")]
    if document.media_type != "application/pdf" and document.media_type not in accepted:
        return None  # a PDF formatter replaces the built-in PDF; others answer when asked
    disposition = f'inline; filename="{document.filename}"'
    return Response(
        document.body, media_type=document.media_type, headers={"Content-Disposition": disposition}
    )


def _act(
    request: Request, principal: Any, command: Any, invoice_id: UUID, body: BaseModel | None
) -> JSONResponse:
    fields = {**fields_of(body), "invoice_id": str(invoice_id)}
    return run_command(request, principal, command, fields)


@router.post("/{invoice_id}/lines", summary="Add a line to a draft (its body is the line)")
def add_line(
    request: Request, principal: Writer, invoice_id: UUID, body: InvoiceLineInput
) -> JSONResponse:
    fields = {"invoice_id": str(invoice_id), "line": fields_of(body)}
    return run_command(request, principal, AddInvoiceLine, fields)


@router.post("/{invoice_id}/finalize", summary="Freeze totals, assign the next number")
def finalize(
    request: Request, principal: Writer, invoice_id: UUID, body: FinalizeBody | None = None
) -> JSONResponse:
    return _act(request, principal, FinalizeInvoice, invoice_id, body)


@router.post("/{invoice_id}/pay", summary="Record a payment in full")
def pay(
    request: Request, principal: Writer, invoice_id: UUID, body: PayBody | None = None
) -> JSONResponse:
    return _act(request, principal, PayInvoice, invoice_id, body)


@router.post("/{invoice_id}/void", summary="Void an open invoice (reason required)")
def void(request: Request, principal: Writer, invoice_id: UUID, body: VoidBody) -> JSONResponse:
    return _act(request, principal, VoidInvoice, invoice_id, body)


@router.post("/{invoice_id}/uncollectible", summary="Give up collecting an open invoice")
def uncollectible(request: Request, principal: Writer, invoice_id: UUID) -> JSONResponse:
    return _act(request, principal, MarkInvoiceUncollectible, invoice_id, None)


@router.post(
    "/{invoice_id}/payment-failures",
    summary="Record a failed payment attempt (dunning schedules the retry)",
    responses=documented(InvoiceReply),
)
def fail_invoice_payment(
    request: Request, principal: Writer, invoice_id: UUID, body: PaymentFailureBody
) -> JSONResponse:
    return _act(request, principal, FailInvoicePayment, invoice_id, body)


@router.post(
    "/{invoice_id}/retry-payment",
    summary="Charge an open invoice again through the payment provider (admin)",
    responses=documented(PaymentRetryReply),
)
def retry_invoice_payment(
    request: Request, principal: Admin, invoice_id: UUID, body: RetryPaymentBody | None = None
) -> JSONResponse:
    return _act(request, principal, RetryInvoicePayment, invoice_id, body)
