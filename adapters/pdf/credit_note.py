"""Credit note PDF rendering (fpdf2): the credit note view as an A4 PDF, laid out like the
invoice (adapters/pdf/invoice.py: its money and customer rows, and its fonts)."""

from __future__ import annotations

from typing import Any

from fpdf import FPDF

from adapters.pdf import invoice as invoice_pdf
from adapters.pdf.invoice import _customer_rows, _money, _text

WIDTHS = (70, 20, 25, 25, 25, 25)  # description, qty, amount, discount, tax, total (mm)
HEADS = ("Description", "Qty", "Amount", "Discount", "Tax", "Total")


def _document(title: str, texts: list[str], country: str | None) -> tuple[FPDF, str]:
    """A document in the invoice's Unicode fonts when it has them, else the core fonts."""
    make = getattr(invoice_pdf, "unicode_document", None)
    family = getattr(invoice_pdf, "FAMILY", None)
    if make is not None and family is not None:
        return make(title, texts, country), str(family)
    pdf = FPDF(format="A4")
    pdf.set_title(_text(title))
    return pdf, "Helvetica"


def render_credit_note_pdf(
    note: dict[str, Any], app_id: str, customer: dict[str, Any] | None = None
) -> bytes:
    """Render a credit note view (commands/credit_notes/view.py) to PDF bytes; `customer` is
    the tenant's billing profile, printed when given."""
    rows = _header_rows(note, app_id, customer)
    texts = [label + _text(value) for label, value in rows]
    texts += [_text(line.get("description")) for line in note["lines"]]
    country = (customer or {}).get("country")
    pdf, family = _document(f"Credit note {note['number_text']}", texts, country)
    pdf.add_page()
    pdf.set_font(family, "B", 18)
    pdf.cell(0, 12, _text(f"Credit note {note['number_text']}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=10)
    for label, value in rows:
        pdf.cell(35, 6, _text(label))
        pdf.multi_cell(0, 6, _text(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    _lines(pdf, family, note["lines"])
    pdf.ln(2)
    for label, key in (
        ("Subtotal", "subtotal"),
        ("Discounts", "discount_total"),
        ("Tax", "tax_total"),
        ("Total credited", "total"),
    ):
        pdf.set_font(family, "B" if key == "total" else "", 10)
        pdf.cell(150, 7, _text(label), align="R")
        pdf.cell(0, 7, _text(_money(note.get(key))), align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


METHODS = {
    "refund": "Refund to the payment method",
    "credit_balance": "Credit to the account balance (drawn by the next invoice)",
    "reduce_amount_due": "Reduces the amount due of the invoice",
}


def _header_rows(
    note: dict[str, Any], app_id: str, customer: dict[str, Any] | None
) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [
        ("App", app_id),
        ("Tenant", note["tenant_id"]),
        *_customer_rows(customer),
        ("Invoice", note.get("invoice_number_text") or note["invoice_id"]),
        ("Issued", note.get("issued_at")),
        ("Reason", note.get("reason")),
        ("Method", METHODS.get(note["method"], note["method"])),
        ("Currency", note["currency"]),
    ]
    if note.get("refund_status"):
        rows.append(("Refund", note["refund_status"]))
    rows.append(("Credit note id", note["credit_note_id"]))
    return rows


def _lines(pdf: FPDF, family: str, lines: list[dict[str, Any]]) -> None:
    pdf.set_font(family, "B", 10)
    for width, head in zip(WIDTHS, HEADS, strict=True):
        pdf.cell(width, 7, head, border="B")
    pdf.ln()
    pdf.set_font(family, size=10)
    for line in lines:
        tax = line["tax"]["amount"] + line["tax_included"]["amount"]
        cells = (
            _text(line["description"]),
            _text(line["quantity"] or "-"),
            _money(line["amount"]),
            _money(line["discount"]),
            _money({"amount": tax, "currency": line["amount"]["currency"]}),
            _money(line["total"]),
        )
        top, left = pdf.get_y(), pdf.l_margin
        pdf.multi_cell(WIDTHS[0], 6, cells[0], new_x="LMARGIN", new_y="NEXT")  # wraps
        bottom = pdf.get_y()
        pdf.set_xy(left + WIDTHS[0], top)
        for width, cell in zip(WIDTHS[1:], cells[1:], strict=True):
            pdf.cell(width, 6, cell, align="R")
        pdf.set_xy(left, max(bottom, top + 6))
