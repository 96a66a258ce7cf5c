from typing import Any

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


def _text_of(body: bytes) -> str:
    import io
    import re

    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(body))
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))


def _with_description(description: str) -> dict[str, Any]:
    lines: list[dict[str, Any]] = VIEW["lines"]  # type: ignore[assignment]
    return {**VIEW, "lines": [{**lines[0], "description": description}]}


def test_any_unicode_text_prints_as_written_and_reads_back() -> None:
    customer = {"name": "Müller & Söhne 株式会社", "email": "ap@example.jp", "country": "JP"}
    body = render_invoice_pdf(_with_description("Überstunden — 東京 🚀"), "acme", customer)
    text = _text_of(body)
    for word in ("Überstunden", "—", "東京", "🚀", "Müller & Söhne", "株式会社", "INV-000007"):
        assert word in text, word
    assert "?" not in text  # nothing replaced (the core fonts printed '? ??')


def test_a_long_description_wraps_onto_more_lines_and_keeps_every_word() -> None:
    words = [f"word{i}" for i in range(80)]
    description = "Überstunden " + " ".join(words) + " Ende"
    text = _text_of(render_invoice_pdf(_with_description(description), "acme"))
    assert all(f" {word} " in f" {text} " for word in words)
    assert "Ende" in text
    from fpdf import FPDF

    from adapters.pdf.fonts import FAMILY, use_unicode_fonts

    pdf = FPDF()
    use_unicode_fonts(pdf, [description])
    pdf.set_font(FAMILY, size=10)
    assert pdf.get_string_width(description) > 80 * 5  # wider than five description columns


def test_a_word_longer_than_its_column_breaks_instead_of_being_cut() -> None:
    token = "x" * 150 + "END"
    text = _text_of(render_invoice_pdf(_with_description(token), "acme")).replace(" ", "")
    assert token in text


def test_fallback_fonts_are_embedded_only_for_the_scripts_the_text_uses() -> None:
    from adapters.pdf.fonts import faces_for

    assert faces_for("Plain Latin, Ελληνικά, Кириллица — €") == []
    assert [f.family for f in faces_for("🚀")] == ["notoemoji"]
    assert [f.family for f in faces_for("東京", country="CN")] == ["notosanscjksc"]
    assert [f.family for f in faces_for("東京 שלום")] == ["notosanshebrew", "notosanscjkjp"]


def test_cjk_text_embeds_a_truetype_font_a_reader_can_parse() -> None:
    import io

    import pypdf
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

    body = render_invoice_pdf(_with_description("東京 終わり"), "acme")
    reader = pypdf.PdfReader(io.BytesIO(body))
    fonts: Any = reader.pages[0]["/Resources"]["/Font"]  # type: ignore[index]
    embedded = {}
    for ref in fonts.values():
        descendant = ref.get_object()["/DescendantFonts"][0].get_object()
        descriptor = descendant["/FontDescriptor"].get_object()
        embedded[str(descendant["/BaseFont"])] = descriptor["/FontFile2"].get_object().get_data()
    (cjk,) = [data for name, data in embedded.items() if "CJK" in name]
    font = TTFont(io.BytesIO(cjk))
    assert "glyf" in font and "CFF2" not in font and "CFF " not in font
    assert {ord(c) for c in "東京終わり"} <= set(font.getBestCmap())
