"""An outbox row as an email: headers from the row (the Message-ID derived from the event,
the Date of the event), a plain-text body, and the document's PDF as it was at the event.
The same row always gives the same mail, so a resend is the same message."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from uuid import UUID

import orjson

from adapters.pdf.invoice import render_invoice_pdf
from commands.billing.strategies import InvoiceFormatter
from commands.invoices.view import invoice_view
from domain.invoice import Invoice
from domain.money import Money

Attachment = tuple[str, bytes]  # file name, PDF bytes


class DocumentMissing(Exception):
    """The document a mail attaches cannot be loaded (yet)."""


def compose(
    row: dict[str, Any], sender: str, ledger: Any, formatter: InvoiceFormatter | None = None
) -> EmailMessage:
    """The mail for one outbox row, with its PDF attached (and an invoice's document from
    the selected InvoiceFormatter plugin, when one is given)."""
    details = orjson.loads(row["details"])
    customer = orjson.loads(row["customer"]) if row.get("customer") else None
    message = EmailMessage()
    message["Message-ID"] = row["message_id"]
    message["Date"] = format_datetime(datetime.fromisoformat(row["occurred_at"]))
    message["From"] = sender
    message["To"] = row["recipient"]
    message["Subject"] = row["subject"]
    message["X-Tally-Event"] = f"{row['event_type']} {row['event_id']}"
    message.set_content(BODIES[row["kind"]](row, details, customer))
    name, pdf = ATTACHMENTS[row["kind"]](row, customer, ledger)
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=name)
    if formatter is not None and ATTACHMENTS[row["kind"]] is _invoice_pdf:
        invoice = _document(row, ledger)
        document = formatter.format_invoice(invoice.id, invoice.state)
        maintype, _, subtype = document.media_type.partition("/")
        message.add_attachment(
            document.body,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=document.filename,
        )
    return message


def _money(value: dict[str, Any] | None) -> str:
    if not value:
        return "-"
    return Money(amount=value["amount"], currency=value["currency"]).format()


def _hello(customer: dict[str, Any] | None) -> str:
    return f"Hello {customer['name']},\n\n" if customer and customer.get("name") else "Hello,\n\n"


def _invoice_body(row: dict[str, Any], details: dict[str, Any], customer: Any) -> str:
    period = details.get("period") or {}
    lines = [
        f"{_hello(customer)}your invoice {row['number_text']} is attached as a PDF.",
        "",
        f"Total: {_money(details.get('total'))}",
        f"Amount due: {_money(details.get('amount_due') or details.get('total'))}",
    ]
    if period:
        lines.append(f"Period: {period.get('start')} to {period.get('end')}")
    return "\n".join(lines) + "\n"


def _payment_failed_body(row: dict[str, Any], details: dict[str, Any], customer: Any) -> str:
    lines = [
        f"{_hello(customer)}the payment of invoice {row['number_text']} "
        f"({_money(details.get('total'))}) failed: {details.get('reason') or 'declined'}.",
        f"Attempt: {details.get('attempt')}",
    ]
    if details.get("next_retry_at"):
        lines.append(f"Next attempt: {details['next_retry_at']}")
    lines.append("The invoice is attached as a PDF.")
    return "\n".join(lines) + "\n"


def _credit_note_body(row: dict[str, Any], details: dict[str, Any], customer: Any) -> str:
    invoice = details.get("invoice_number_text") or details.get("invoice_id")
    lines = [
        f"{_hello(customer)}credit note {row['number_text']} for invoice {invoice} "
        "is attached as a PDF.",
        "",
        f"Credited: {_money(details.get('total'))}",
        f"Reason: {details.get('reason') or '-'}",
    ]
    return "\n".join(lines) + "\n"


def _document(row: dict[str, Any], ledger: Any) -> Any:
    """The aggregate at the version the event left it at (what the mail is about)."""
    document = ledger.get(UUID(row["aggregate_id"]), version=int(row["aggregate_version"]))
    if document is None:
        raise DocumentMissing(f"{row['kind']} {row['aggregate_id']} is not in the event store")
    return document


def _invoice_pdf(row: dict[str, Any], customer: Any, ledger: Any) -> Attachment:
    invoice = _document(row, ledger)
    if not isinstance(invoice, Invoice):
        raise DocumentMissing(f"{row['aggregate_id']} is not an invoice")
    name = invoice.state.number_text or f"invoice-{invoice.id}"
    return f"{name}.pdf", render_invoice_pdf(invoice_view(invoice), row["app_id"], customer)


def _credit_note_pdf(row: dict[str, Any], customer: Any, ledger: Any) -> Attachment:
    from adapters.pdf.credit_note import render_credit_note_pdf
    from commands.credit_notes.view import credit_note_view

    note = _document(row, ledger)
    body = render_credit_note_pdf(credit_note_view(note), row["app_id"], customer)
    return f"{note.state.number_text}.pdf", body


Body = Callable[[dict[str, Any], dict[str, Any], Any], str]
BODIES: dict[str, Body] = {
    "invoice": _invoice_body,
    "payment_failed": _payment_failed_body,
    "credit_note": _credit_note_body,
}
ATTACHMENTS: dict[str, Callable[[dict[str, Any], Any, Any], Attachment]] = {
    "invoice": _invoice_pdf,
    "payment_failed": _invoice_pdf,
    "credit_note": _credit_note_pdf,
}
