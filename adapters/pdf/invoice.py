"""Invoice PDF rendering (fpdf2): the invoice view as a one-document A4 PDF."""

from __future__ import annotations

from typing import Any

from fpdf import FPDF

from domain.money import Money


def _money(value: dict[str, Any] | None) -> str:
    return Money(amount=value["amount"], currency=value["currency"]).format() if value else "-"


def _text(value: Any) -> str:
    """The built-in PDF fonts are Latin-1: anything else prints as '?'."""
    return str(value if value is not None else "-").encode("latin-1", "replace").decode("latin-1")


def render_invoice_pdf(
    invoice: dict[str, Any], app_id: str, customer: dict[str, Any] | None = None
) -> bytes:
    """Render an invoice view (commands/invoices/view.py) to PDF bytes; `customer` is the
    tenant's billing profile (name, email, country, tax id), printed when given."""
    pdf = FPDF(format="A4")
    pdf.set_title(_text(f"Invoice {invoice.get('number_text') or invoice['invoice_id']}"))
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    title = invoice.get("number_text") or "DRAFT"
    pdf.cell(0, 12, _text(f"Invoice {title}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    period = invoice.get("period") or {}
    for label, value in (
        ("App", app_id),
        ("Tenant", invoice["tenant_id"]),
        *_customer_rows(customer),
        ("Status", invoice["status"]),
        ("Currency", invoice["currency"]),
        ("Period", f"{period.get('start', '-')} to {period.get('end', '-')}" if period else "-"),
        ("Finalized", invoice.get("finalized_at")),
        ("Paid", invoice.get("paid_at")),
        ("Invoice id", invoice["invoice_id"]),
    ):
        pdf.cell(35, 6, _text(label))
        pdf.cell(0, 6, _text(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    _lines(pdf, invoice["lines"])
    pdf.ln(2)
    for label, key in (
        ("Subtotal", "subtotal"),
        ("Discounts", "discount_total"),
        ("Tax", "tax_total"),
        ("Total", "total"),
        ("Amount due", "amount_due"),
    ):
        pdf.set_font("Helvetica", "B" if key in ("total", "amount_due") else "", 10)
        pdf.cell(150, 7, _text(label), align="R")
        pdf.cell(0, 7, _text(_money(invoice.get(key))), align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _customer_rows(customer: dict[str, Any] | None) -> list[tuple[str, Any]]:
    if not customer:
        return []
    rows = [("Bill to", customer.get("name")), ("Email", customer.get("email"))]
    rows.append(("Country", customer.get("country")))
    if customer.get("tax_id"):
        rows.append(("Tax id", customer["tax_id"]))
    return rows


def _lines(pdf: FPDF, lines: list[dict[str, Any]]) -> None:
    widths = (80, 30, 20, 30, 30)
    pdf.set_font("Helvetica", "B", 10)
    for width, head in zip(widths, ("Description", "Kind", "Qty", "Unit", "Amount"), strict=True):
        pdf.cell(width, 7, head, border="B")
    pdf.ln()
    pdf.set_font("Helvetica", size=10)
    for line in lines:
        cells = (
            line["description"][:48],
            line["kind"],
            line["quantity"],
            _money(line["unit_amount"]),
            _money(line["amount"]),
        )
        for width, cell in zip(widths, cells, strict=True):
            pdf.cell(width, 6, _text(cell))
        pdf.ln()
