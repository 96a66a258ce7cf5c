"""commands/invoices/line_input.py: the line a caller sends holds every rule of InvoiceLine
(refused when the command is read, naming the field), and `line()` makes the same line an
InvoiceLine checked on its own is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from commands.invoices.line_input import InvoiceLineInput
from domain.invoice import InvoiceLine

USD = {"amount": 250, "currency": "USD"}
PERIOD = {
    "start": datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
    "end": datetime(2026, 2, 1, tzinfo=UTC).isoformat(),
}


def checked(line: InvoiceLine) -> InvoiceLine:
    """The same fields through InvoiceLine's own validation."""
    return InvoiceLine.model_validate(line.model_dump())


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "usage", "description": "api", "quantity": 4, "unit_amount": USD},
        {"kind": "base_fee", "description": "fee", "unit_amount": USD, "amount": USD},
        {"kind": "discount", "description": "off", "unit_amount": {**USD, "amount": -5}},
        {"kind": "adjustment", "description": "x", "unit_amount": {**USD, "amount": -7}},
        {
            "line_id": "l-1.a:b",
            "kind": "seats",
            "description": " 3 seats ",
            "quantity": 3,
            "unit_amount": USD,
            "period": PERIOD,
            "source_event_ids": ["e1", "e2"],
        },
    ],
)
def test_a_line_from_input_equals_the_line_checked_on_its_own(body: dict[str, Any]) -> None:
    line = InvoiceLineInput.model_validate(body).line()
    assert line == checked(line)
    unit, quantity = body["unit_amount"]["amount"], body.get("quantity", 1)
    assert line.amount.amount == (body["amount"]["amount"] if "amount" in body else unit * quantity)
    assert line.line_id


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"line_id": "a" * 129}, "line_id"),
        ({"description": ""}, "description"),
        ({"description": "d" * 501}, "description"),
        ({"quantity": -1}, "quantity"),
        ({"unit_amount": {**USD, "amount": -1}}, "negative"),
        ({"kind": "discount"}, "negative amount"),
        ({"amount": {"amount": 1, "currency": "EUR"}}, "EUR"),
    ],
)
def test_what_an_invoice_line_refuses_the_input_refuses(change: dict[str, Any], field: str) -> None:
    body = {"kind": "usage", "description": "api", "quantity": 1, "unit_amount": USD, **change}
    with pytest.raises(ValidationError, match=field):
        InvoiceLineInput.model_validate(body)
