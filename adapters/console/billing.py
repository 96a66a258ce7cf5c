"""Invoices: the list with filters, one invoice with its lines, explain (the events behind
each line), the PDF, and the actions the key's scope allows (finalize, void, credit note),
run as the API runs them (adapters/http/common.run_command)."""

from __future__ import annotations

import re
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from adapters.console.guard import ConsolePage, Form, Op, Operator, status_of
from adapters.console.render import page, problem
from adapters.http import credit_notes, explain, invoices
from adapters.http.common import run_command
from adapters.http.errors import ApiError
from commands.base import ID_PATTERN, Command
from commands.credit_notes.issue_credit_note import IssueCreditNote
from commands.invoices.finalize_invoice import FinalizeInvoice
from commands.invoices.void_invoice import VoidInvoice
from domain.api_key import Scope
from domain.errors import DomainError
from domain.invoice import CreditMethod, InvoiceStatus

router = APIRouter(prefix="/console/invoices", include_in_schema=False, route_class=ConsolePage)

Filter = Annotated[str, Query(max_length=128)]  # a blank filter (from the form) is none
FINALIZABLE = {InvoiceStatus.DRAFT.value}
VOIDABLE = {InvoiceStatus.OPEN.value, InvoiceStatus.UNCOLLECTIBLE.value}
CREDITABLE = {InvoiceStatus.OPEN.value, InvoiceStatus.PAID.value}
ACTIONS: dict[str, tuple[type[Command], tuple[str, ...]]] = {
    "finalize": (FinalizeInvoice, ()),
    "void": (VoidInvoice, ("reason",)),
    "credit-note": (IssueCreditNote, ("reason", "method")),
}


@router.get("")
def invoice_list(
    request: Request,
    op: Op,
    tenant_id: Filter = "",
    status: Filter = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    error = _filter_error(tenant_id, status)
    listed: list[dict[str, Any]] = []
    if error is None:
        chosen = InvoiceStatus(status) if status else None
        found = invoices.list_invoices(request, op.principal, tenant_id or None, chosen, limit)
        listed = found["invoices"]
    context: dict[str, Any] = {
        "title": "Invoices",
        "nav": "invoices",
        "op": op,
        "invoices": listed,
        "error": error,
        "tenant_id": tenant_id,
        "status": status,
        "statuses": [s.value for s in InvoiceStatus],
        "limit": limit,
    }
    return page(request, "invoices.html", context, status_code=422 if error else 200)


def _filter_error(tenant_id: str, status: str) -> str | None:
    if tenant_id and not re.fullmatch(ID_PATTERN, tenant_id):
        return f"tenant_id: not a tenant id ({ID_PATTERN})"
    if status and status not in {s.value for s in InvoiceStatus}:
        return f"status: one of {', '.join(s.value for s in InvoiceStatus)}"
    return None


def _invoice_context(request: Request, op: Operator, invoice_id: UUID) -> dict[str, Any]:
    invoice = invoices.get_invoice(request, op.principal, invoice_id)
    notes = credit_notes.list_credit_notes(request, op.principal, invoice["tenant_id"], 1000)
    status = invoice["status"]
    return {
        "title": f"Invoice {invoice['number_text'] or invoice_id}",
        "nav": "invoices",
        "op": op,
        "invoice": invoice,
        "credit_notes": [n for n in notes["credit_notes"] if n["invoice_id"] == str(invoice_id)],
        "can_finalize": op.can_write and status in FINALIZABLE,
        "can_void": op.can_write and status in VOIDABLE,
        "can_credit": op.can_write and status in CREDITABLE,
        "credit_methods": [m.value for m in CreditMethod],
    }


@router.get("/{invoice_id}")
def invoice_page(
    request: Request, op: Op, invoice_id: UUID, done: Annotated[str, Query(max_length=40)] = ""
) -> Response:
    context = _invoice_context(request, op, invoice_id)
    return page(request, "invoice.html", context | {"done": done, "error": None})


@router.get("/{invoice_id}/explain")
def explain_page(request: Request, op: Op, invoice_id: UUID) -> Response:
    explained = explain.explain(request, op.principal, invoice_id)
    context: dict[str, Any] = {
        "title": f"Explain {explained['number_text'] or invoice_id}",
        "nav": "invoices",
        "op": op,
        "explained": explained,
        "invoice_id": str(invoice_id),
    }
    return page(request, "explain.html", context)


@router.get("/{invoice_id}/pdf")
def invoice_pdf(request: Request, op: Op, invoice_id: UUID) -> Response:
    return invoices.invoice_pdf(request, op.principal, invoice_id)


def _fields(action: str, invoice_id: UUID, form: dict[str, str]) -> dict[str, Any]:
    """The command's fields from the form: the invoice, the action's own fields (blank ones
    left out, so the command's rules name them), and the form's command_id."""
    fields: dict[str, Any] = {"invoice_id": str(invoice_id)}
    for name in ACTIONS[action][1]:
        if form.get(name, "").strip():
            fields[name] = form[name].strip()
    if form.get("command_id"):
        fields["command_id"] = form["command_id"]
    return fields


@router.post("/{invoice_id}/{action}")
def invoice_action(request: Request, form: Form, invoice_id: UUID, action: str) -> Response:
    op = form.operator
    op.require(Scope.WRITE)
    if action not in ACTIONS:
        raise ApiError(404, "not_found", f"no invoice action {action!r}")
    command = ACTIONS[action][0]
    try:
        run_command(request, op.principal, command, _fields(action, invoice_id, form.fields))
    except (ApiError, DomainError) as error:
        context = _invoice_context(request, op, invoice_id)
        context |= {"done": "", "error": f"{action} refused: {problem(error)}"}
        return page(request, "invoice.html", context, status_code=status_of(error))
    return RedirectResponse(f"/console/invoices/{invoice_id}?done={action}", status_code=303)
