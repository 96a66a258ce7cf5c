"""The invoice line a caller sends; the amount defaults to unit_amount x quantity."""

from __future__ import annotations

from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from commands.base import ID_PATTERN
from domain.invoice import InvoiceLine, LineKind, check_line_amounts
from domain.money import Money
from domain.period import Period


class InvoiceLineInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    line_id: str | None = Field(default=None, pattern=ID_PATTERN, description="default: generated")
    kind: LineKind
    description: str = Field(min_length=1, max_length=500)
    quantity: StrictInt = Field(default=1, ge=0)
    unit_amount: Money
    amount: Money | None = Field(
        default=None,
        description="default: unit_amount x quantity; negative for discount and proration_credit",
    )
    period: Period | None = None
    source_event_ids: list[str] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _amounts(self) -> InvoiceLineInput:
        check_line_amounts(self.kind, self.unit_amount, self.line_amount())
        return self

    def line_amount(self) -> Money:
        return self.amount if self.amount is not None else self.unit_amount * self.quantity

    def line(self) -> InvoiceLine:
        return InvoiceLine(
            line_id=self.line_id or str(uuid4()),
            kind=self.kind,
            description=self.description,
            quantity=self.quantity,
            unit_amount=self.unit_amount,
            amount=self.line_amount(),
            period=self.period,
            source_event_ids=list(self.source_event_ids),
        )
