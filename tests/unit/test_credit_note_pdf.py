"""The credit note PDF: the document's fields, every line, long descriptions wrapped whole."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from pypdf import PdfReader

from adapters.pdf.credit_note import render_credit_note_pdf


def usd(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "USD"}


LONG = " ".join(f"word{i}" for i in range(60))  # far wider than the description column


def note(**extra: Any) -> dict[str, Any]:
    line = {
        "line_id": "fee",
        "kind": "base_fee",
        "description": LONG,
        "period": None,
        "quantity": 0,
        "amount": usd(1000),
        "discount": usd(100),
        "tax": usd(171),
        "tax_included": usd(0),
        "total": usd(1071),
        "revenue": usd(900),
    }
    return {
        "credit_note_id": "6d1c0f3e-0000-4000-8000-000000000001",
        "tenant_id": "t1",
        "invoice_id": "6d1c0f3e-0000-4000-8000-000000000002",
        "invoice_number_text": "INV-000007",
        "subscription_id": None,
        "currency": "USD",
        "number": 3,
        "number_text": "CN-000003",
        "reason": "service outage",
        "method": "refund",
        "lines": [line, {**line, "line_id": "seats", "description": "Seats", "quantity": 2}],
        "subtotal": usd(2000),
        "discount_total": usd(200),
        "tax_total": usd(342),
        "total": usd(2142),
        "refund_status": "pending",
        "payment_reference": None,
        "issued_at": "2026-01-05T00:00:00+00:00",
        "version": 1,
        **extra,
    }


def text_of(body: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(BytesIO(body)).pages)


def test_the_pdf_holds_the_note_its_invoice_and_every_line() -> None:
    customer = {"name": "Acme GmbH", "email": "billing@acme.example", "country": "DE"}
    body = render_credit_note_pdf(note(), "shop", customer)
    assert body.startswith(b"%PDF")
    text = text_of(body)
    for expected in (
        "Credit note CN-000003",
        "INV-000007",
        "service outage",
        "Refund to the payment method",
        "pending",
        "Acme GmbH",
        "Seats",
        "21.42 USD",
        "10.71 USD",
    ):
        assert expected in text, expected


def test_a_long_description_wraps_instead_of_being_cut() -> None:
    words = text_of(render_credit_note_pdf(note(), "shop")).split()
    assert all(f"word{i}" in words for i in range(60))
