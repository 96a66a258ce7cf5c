"""Credit notes: issue one on a finalized invoice, list them (per tenant), read one (JSON or
PDF). Rules in docs/credit-notes.md; lists come from the app's invoices (each invoice knows
its credit notes), newest first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from adapters.http.auth import Reader, Writer
from adapters.http.common import body_model, fields_of, owned, run_command, system_of
from adapters.http.errors import ERROR_RESPONSES
from commands.base import ID_PATTERN
from commands.credit_notes.issue_credit_note import IssueCreditNote
from commands.credit_notes.view import credit_note_view
from domain.credit_note import CreditNote
from domain.invoice import Invoice
from domain.profile import billing_profile_id

if TYPE_CHECKING:
    IssueBody = BaseModel
else:
    IssueBody = body_model(
        IssueCreditNote, "IssueCreditNoteBody", exclude=frozenset({"invoice_id"})
    )

router = APIRouter(tags=["credit notes"], responses=ERROR_RESPONSES)


@router.post(
    "/v1/invoices/{invoice_id}/credit-notes",
    status_code=201,
    summary="Credit an open or paid invoice: refund, credit balance or a lower amount due",
)
def issue(request: Request, principal: Writer, invoice_id: UUID, body: IssueBody) -> JSONResponse:
    fields = {**fields_of(body), "invoice_id": str(invoice_id)}
    return run_command(request, principal, IssueCreditNote, fields, created=True)


@router.get("/v1/credit-notes", summary="The app's credit notes, newest first (one tenant's)")
def list_credit_notes(
    request: Request,
    principal: Reader,
    tenant_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    system = system_of(request)
    notes: list[CreditNote] = []
    for invoice_id in request.app.state.index.ids(principal.app_id, "invoice", tenant_id):
        invoice = system.aggregate(invoice_id)
        if not isinstance(invoice, Invoice):
            continue
        for note_id in invoice.state.credit_note_ids:
            note = system.aggregate(note_id)
            if isinstance(note, CreditNote) and note.state.app_id == principal.app_id:
                notes.append(note)
    notes.sort(key=lambda note: note.state.number, reverse=True)
    return {"credit_notes": [credit_note_view(note) for note in notes[:limit]]}


@router.get("/v1/credit-notes/{credit_note_id}", summary="One credit note")
def get_credit_note(request: Request, principal: Reader, credit_note_id: UUID) -> dict[str, Any]:
    note = owned(system_of(request), CreditNote, credit_note_id, principal.app_id, "credit_note_id")
    return credit_note_view(note)


@router.get(
    "/v1/credit-notes/{credit_note_id}/pdf",
    summary="The credit note as PDF",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def credit_note_pdf(request: Request, principal: Reader, credit_note_id: UUID) -> Response:
    system = system_of(request)
    note = owned(system, CreditNote, credit_note_id, principal.app_id, "credit_note_id")
    profile = system.aggregate(billing_profile_id(principal.app_id, note.state.tenant_id))
    customer = profile.terms.model_dump(mode="json") if profile is not None else None
    from adapters.pdf.credit_note import render_credit_note_pdf  # fpdf: only when asked

    body = render_credit_note_pdf(credit_note_view(note), principal.app_id, customer)
    return Response(
        body,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{note.state.number_text}.pdf"'},
    )
