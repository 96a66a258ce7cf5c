from adapters.pdf.invoice import render_invoice_pdf

VIEW = {
    "invoice_id": "0b6c9a3e-1111-4222-8333-444455556666",
    "tenant_id": "globex",
    "status": "open",
    "currency": "JPY",
    "period": {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"},
    "number_text": "INV-000007",
    "finalized_at": "2026-02-01T00:00:00Z",
    "paid_at": None,
    "lines": [
        {
            "description": "Pro — monthly (ünïcödé ✓)",
            "kind": "base_fee",
            "quantity": 1,
            "unit_amount": {"amount": 1500, "currency": "JPY"},
            "amount": {"amount": 1500, "currency": "JPY"},
        }
    ],
    "subtotal": {"amount": 1500, "currency": "JPY"},
    "discount_total": {"amount": 0, "currency": "JPY"},
    "tax_total": {"amount": 150, "currency": "JPY"},
    "total": {"amount": 1650, "currency": "JPY"},
}


def test_an_invoice_renders_as_a_pdf_with_its_number_and_totals() -> None:
    body = render_invoice_pdf(VIEW, "acme")
    assert body.startswith(b"%PDF-") and body.rstrip().endswith(b"%%EOF")
    assert b"INV-000007" in body  # the title metadata is stored uncompressed
    assert len(body) > 800
