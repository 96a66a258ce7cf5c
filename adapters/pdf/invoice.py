"""Invoice PDF rendering (fpdf2): the invoice view as an A4 PDF in Unicode fonts.

Text is printed in Noto Sans with fallback fonts (adapters/pdf/fonts.py), so any script,
symbol or emoji in a description, a name or an address prints as written; long values wrap
onto more lines instead of being cut.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

from adapters.pdf.fonts import FAMILY, use_unicode_fonts
from domain.money import Money

LINE_WIDTHS = (80, 30, 20, 30, 30)  # description, kind, qty, unit, amount (mm)
LINE_HEADS = ("Description", "Kind", "Qty", "Unit", "Amount")


def _money(value: dict[str, Any] | None) -> str:
    return Money(amount=value["amount"], currency=value["currency"]).format() if value else "-"


def _text(value: Any) -> str:
    """The text to print ('-' for nothing); the Unicode fonts print every character."""
    return str(value if value is not None else "-")


def unicode_document(title: str, texts: Iterable[str] = (), country: str | None = None) -> FPDF:
    """An A4 document with the Unicode fonts for these texts registered (more can be added
    with `use_unicode_fonts`) and the main family set."""
    pdf = FPDF(format="A4")
    pdf.set_title(title)
    use_unicode_fonts(pdf, [title, *texts], country)
    pdf.set_font(FAMILY, size=10)
    return pdf


def render_invoice_pdf(
    invoice: dict[str, Any], app_id: str, customer: dict[str, Any] | None = None
) -> bytes:
    """Render an invoice view (commands/invoices/view.py) to PDF bytes; `customer` is the
    tenant's billing profile (name, email, country, tax id), printed when given."""
    title = invoice.get("number_text") or "DRAFT"
    rows = _header_rows(invoice, app_id, customer)
    texts = [label + _text(value) for label, value in rows]
    texts += [_text(line.get("description")) + _text(line.get("kind")) for line in invoice["lines"]]
    country = (customer or {}).get("country")
    pdf = unicode_document(
        f"Invoice {invoice.get('number_text') or invoice['invoice_id']}", texts, country
    )
    pdf.add_page()
    pdf.set_font(FAMILY, "B", 18)
    pdf.cell(0, 12, f"Invoice {title}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FAMILY, size=10)
    for label, value in rows:
        pdf.cell(35, 6, label)
        pdf.multi_cell(0, 6, _text(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    _lines(pdf, invoice["lines"])
    pdf.ln(2)
    _totals(pdf, invoice)
    return bytes(pdf.output())


def _header_rows(
    invoice: dict[str, Any], app_id: str, customer: dict[str, Any] | None
) -> list[tuple[str, Any]]:
    period = invoice.get("period") or {}
    return [
        ("App", app_id),
        ("Tenant", invoice["tenant_id"]),
        *_customer_rows(customer),
        ("Status", invoice["status"]),
        ("Currency", invoice["currency"]),
        ("Period", f"{period.get('start', '-')} to {period.get('end', '-')}" if period else "-"),
        ("Finalized", invoice.get("finalized_at")),
        ("Paid", invoice.get("paid_at")),
        ("Invoice id", invoice["invoice_id"]),
    ]


def _customer_rows(customer: dict[str, Any] | None) -> list[tuple[str, Any]]:
    if not customer:
        return []
    rows = [("Bill to", customer.get("name")), ("Email", customer.get("email"))]
    rows.append(("Country", customer.get("country")))
    if customer.get("tax_id"):
        rows.append(("Tax id", customer["tax_id"]))
    return rows


def _lines(pdf: FPDF, lines: list[dict[str, Any]]) -> None:
    """The lines as a table; a long description wraps inside its column (rows grow, and a
    table longer than the page goes on on the next with its headings)."""
    use_unicode_fonts(pdf, [_text(line.get("description")) for line in lines])
    pdf.set_font(FAMILY, size=10)
    with pdf.table(
        col_widths=LINE_WIDTHS,
        width=sum(LINE_WIDTHS),
        align="LEFT",
        text_align=("LEFT", "LEFT", "RIGHT", "RIGHT", "RIGHT"),
        borders_layout="HORIZONTAL_LINES",
        headings_style=FontFace(family=FAMILY, emphasis="BOLD"),
        line_height=5,
        padding=(1, 1),
        v_align="TOP",
    ) as table:
        table.row(LINE_HEADS)
        for line in lines:
            table.row(
                (
                    _text(line["description"]),
                    _text(line["kind"]),
                    _text(line["quantity"]),
                    _money(line["unit_amount"]),
                    _money(line["amount"]),
                )
            )


def _totals(pdf: FPDF, invoice: dict[str, Any]) -> None:
    for label, key in (
        ("Subtotal", "subtotal"),
        ("Discounts", "discount_total"),
        ("Tax", "tax_total"),
        ("Total", "total"),
        ("Amount due", "amount_due"),
    ):
        pdf.set_font(FAMILY, "B" if key in ("total", "amount_due") else "", 10)
        pdf.cell(150, 7, label, align="R")
        pdf.cell(0, 7, _money(invoice.get(key)), align="R", new_x="LMARGIN", new_y="NEXT")
