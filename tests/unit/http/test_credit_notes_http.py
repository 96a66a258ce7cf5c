"""Credit notes over HTTP on the embedded system: issue (whole, per line, by quantity), the
methods' effects on the invoice and the balance, errors naming the field, lists per tenant,
reads and PDF, other apps' ids 404, and recognized revenue going down in the line's period."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from pypdf import PdfReader

from adapters.bootstrap import System
from tests.unit.http.support import Api, assert_error

USD = "USD"
JAN = {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def money(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": USD}


def invoice(acme: Api, tenant: str = "t1", *, finalize: bool = True, pay: bool = False) -> Any:
    body = {
        "tenant_id": tenant,
        "currency": USD,
        "period": JAN,
        "lines": [
            {
                "kind": "base_fee",
                "description": "Pro plan",
                "quantity": 1,
                "unit_amount": money(3100),
                "period": JAN,
            },
            {
                "kind": "seats",
                "description": "Seats",
                "quantity": 5,
                "unit_amount": money(1000),
                "period": JAN,
            },
        ],
    }
    drafted = ok(acme.call("POST", "/v1/invoices", json=body), 201)
    if not finalize:
        return drafted
    done = ok(acme.call("POST", f"/v1/invoices/{drafted['invoice_id']}/finalize"))
    if pay:
        done = ok(acme.call("POST", f"/v1/invoices/{drafted['invoice_id']}/pay"))
    return done


def credit(acme: Api, invoice_id: str, **body: Any) -> Any:
    return acme.call("POST", f"/v1/invoices/{invoice_id}/credit-notes", json=body)


def line_ids(inv: dict[str, Any]) -> list[str]:
    return [line["line_id"] for line in inv["lines"]]


def test_whole_invoice_credit_note_numbered_and_readable(acme: Api, system: System) -> None:
    inv = invoice(acme, pay=True)
    note = ok(credit(acme, inv["invoice_id"], reason="duplicate", method="refund"), 201)
    assert note["number_text"] == "CN-000001" and note["number"] == 1
    assert note["total"] == money(8100) and note["method"] == "refund"
    assert note["refund_status"] == "pending" and note["invoice_number_text"] == "INV-000001"
    assert [line["line_id"] for line in note["lines"]] == line_ids(inv)
    again = ok(acme.call("GET", f"/v1/credit-notes/{note['credit_note_id']}", "read"))
    assert again == note
    # nothing is left: a second note is refused
    assert_error(
        credit(acme, inv["invoice_id"], reason="again", method="refund"),
        409,
        "invalid_transition",
        "lines",
    )


def test_per_line_by_amount_and_quantity_and_limits(acme: Api) -> None:
    inv = invoice(acme)
    fee, seats = line_ids(inv)
    body = {
        "reason": "outage",
        "method": "reduce_amount_due",
        "lines": [{"line_id": fee, "amount": money(1000)}, {"line_id": seats, "quantity": 2}],
    }
    note = ok(credit(acme, inv["invoice_id"], **body), 201)
    assert [(li["amount"]["amount"], li["quantity"]) for li in note["lines"]] == [
        (1000, 0),
        (2000, 2),
    ]
    after = ok(acme.call("GET", f"/v1/invoices/{inv['invoice_id']}", "read"))
    assert after["amount_due"] == money(8100 - 3000) and after["status"] == "open"
    too_many = {**body, "lines": [{"line_id": seats, "quantity": 4}]}
    assert_error(
        credit(acme, inv["invoice_id"], **too_many),
        409,
        "credit_exceeds_creditable",
        "lines.0.quantity",
    )
    too_much = {**body, "lines": [{"line_id": fee, "amount": money(2101)}]}
    assert_error(
        credit(acme, inv["invoice_id"], **too_much),
        409,
        "credit_exceeds_creditable",
        "lines.0.amount",
    )
    # the rest of the invoice settles it: an open invoice credited to zero is paid
    rest = ok(credit(acme, inv["invoice_id"], reason="rest", method="reduce_amount_due"), 201)
    assert rest["number_text"] == "CN-000002" and rest["total"] == money(5100)
    settled = ok(acme.call("GET", f"/v1/invoices/{inv['invoice_id']}", "read"))
    assert settled["status"] == "paid" and settled["amount_due"] == money(0)


def test_refused_requests_name_the_field(acme: Api) -> None:
    draft = invoice(acme, finalize=False)
    assert_error(
        credit(acme, draft["invoice_id"], reason="r", method="credit_balance"),
        409,
        "invalid_transition",
        "status",
    )
    inv = invoice(acme)
    fee = line_ids(inv)[0]
    assert_error(
        credit(acme, inv["invoice_id"], reason="r", method="refund"),
        409,
        "invalid_transition",
        "method",
    )
    assert_error(
        credit(acme, inv["invoice_id"], reason="r", method="cash"),
        422,
        "validation_error",
        "method",
    )
    assert_error(
        credit(acme, inv["invoice_id"], method="refund"), 422, "validation_error", "reason"
    )
    both = [{"line_id": fee, "amount": money(1), "quantity": 1}]
    assert_error(
        credit(acme, inv["invoice_id"], reason="r", method="credit_balance", lines=both),
        422,
        "validation_error",
        "lines.0",
    )
    unknown = [{"line_id": "nope"}]
    assert_error(
        credit(acme, inv["invoice_id"], reason="r", method="credit_balance", lines=unknown),
        422,
        "invalid_value",
        "lines.0.line_id",
    )
    missing = "00000000-0000-0000-0000-000000000001"
    assert_error(credit(acme, missing, reason="r", method="refund"), 404, "not_found", "invoice_id")
    assert credit(acme, inv["invoice_id"], reason="r", method="refund").status_code == 409
    read_only = acme.call(
        "POST",
        f"/v1/invoices/{inv['invoice_id']}/credit-notes",
        "read",
        json={"reason": "r", "method": "refund"},
    )
    assert read_only.status_code == 403


def test_credit_balance_goes_to_the_next_invoice(acme: Api) -> None:
    first = invoice(acme, pay=True)
    fee = line_ids(first)[0]
    body = {
        "reason": "goodwill",
        "method": "credit_balance",
        "lines": [{"line_id": fee, "amount": money(3000)}],
    }
    ok(credit(acme, first["invoice_id"], **body), 201)
    second = invoice(acme)
    assert second["balance_applied"] == money(3000)
    assert second["amount_due"] == money(8100 - 3000)


def test_lists_per_tenant_reads_pdf_and_other_apps(acme: Api, globex: Api) -> None:
    one = invoice(acme, "t1", pay=True)
    two = invoice(acme, "t2", pay=True)
    n1 = ok(credit(acme, one["invoice_id"], reason="a", method="credit_balance"), 201)
    n2 = ok(credit(acme, two["invoice_id"], reason="b", method="credit_balance"), 201)
    listed = ok(acme.call("GET", "/v1/credit-notes", "read"))["credit_notes"]
    assert [n["number_text"] for n in listed] == ["CN-000002", "CN-000001"]
    t1 = ok(acme.call("GET", "/v1/credit-notes?tenant_id=t1", "read"))["credit_notes"]
    assert [n["credit_note_id"] for n in t1] == [n1["credit_note_id"]]
    pdf = acme.call("GET", f"/v1/credit-notes/{n2['credit_note_id']}/pdf", "read")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and "CN-000002.pdf" in pdf.headers["content-disposition"]
    text = _pdf_text(pdf.content)
    assert "Credit note CN-000002" in text and "INV-000002" in text and "Seats" in text
    # another app sees none of it and numbers its own notes from 1
    assert ok(globex.call("GET", "/v1/credit-notes", "read"))["credit_notes"] == []
    for path in (
        f"/v1/credit-notes/{n1['credit_note_id']}",
        f"/v1/credit-notes/{n1['credit_note_id']}/pdf",
    ):
        assert_error(globex.call("GET", path, "read"), 404, "not_found", "credit_note_id")
    assert_error(
        credit(globex, one["invoice_id"], reason="x", method="refund"),
        404,
        "not_found",
        "invoice_id",
    )
    own = invoice(globex, pay=True)
    assert (
        ok(credit(globex, own["invoice_id"], reason="x", method="refund"), 201)["number_text"]
        == "CN-000001"
    )


def _pdf_text(body: bytes) -> str:
    return "".join(page.extract_text() for page in PdfReader(BytesIO(body)).pages)


def test_recognized_revenue_goes_down_in_the_period_of_the_line(acme: Api, system: System) -> None:
    inv = invoice(acme, pay=True)  # January: 3,100 fee + 5,000 seats
    system.sync()
    before = ok(
        acme.call("GET", "/v1/revenue?granularity=month&as_of=2026-03-01T00:00:00Z", "read")
    )
    assert [(r["period"], r["amount"]) for r in before["recognized"]] == [("2026-01", 8100)]
    fee = line_ids(inv)[0]
    body = {
        "reason": "outage",
        "method": "credit_balance",
        "lines": [{"line_id": fee, "amount": money(3100)}],
    }
    ok(credit(acme, inv["invoice_id"], **body), 201)
    system.sync()
    after = ok(acme.call("GET", "/v1/revenue?granularity=month&as_of=2026-03-01T00:00:00Z", "read"))
    assert [(r["period"], r["amount"], r["invoices"]) for r in after["recognized"]] == [
        ("2026-01", 5000, 1)
    ]
    daily = ok(acme.call("GET", "/v1/revenue?granularity=day&as_of=2026-03-01T00:00:00Z", "read"))
    assert {r["amount"] for r in daily["recognized"]} <= {161, 162}  # 5,000 over 31 days
