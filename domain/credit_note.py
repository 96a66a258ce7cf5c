"""Credit notes: what is taken off a finalized invoice, per line, with gap-free numbers per app.

Rules (docs/credit-notes.md), after Stripe's credit notes:

- only an open or paid invoice is credited (not a draft, void or uncollectible one);
- a request names lines by `line_id`, each by `amount` (of the line's own amount, as the
  invoice shows it), by `quantity` (quantity x the line's unit amount, the decimal one when
  finer than the minor unit, rounded once, half-up), or neither (what is left of the line);
  no lines at all credits what is left of the whole invoice (every charge line, proration
  credits included, so the note's total is exactly what is left of the invoice's total);
- a credited line credits its share of the invoice's discount and its tax in proportion:
  after crediting c of a line of amount A, the discount and tax credited so far are
  round_half_up(share x c / A) (cumulative, so crediting a line in any number of steps
  credits exactly its discount share and its tax in the end, never more); a tax line naming
  no line is spread over the positive charge lines in proportion to their amounts;
- never more than what is left of each line (amount and quantity), of the invoice's total,
  of the amount due (reduce_amount_due, open invoices only) or of the amount paid (refund,
  paid invoices only): the invoice aggregate decides, so racing requests are safe.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, ClassVar
from uuid import UUID

from pydantic import ConfigDict, Field, StrictInt, model_validator

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.errors import CurrencyMismatch, InvalidValue, with_article
from domain.invoice import (
    CREDITABLE_KINDS,
    CreditExceeded,
    CreditMethod,
    Invoice,
    InvoiceLine,
    LineCredit,
    LineKind,
)
from domain.money import Money, round_half_up
from domain.tax import allocate_discount
from domain.value import FrozenValue

NUMBER_PREFIX = "CN-"
REFUND_PENDING = "pending"  # owed to the payment method: nothing has paid it back yet
REFUNDED = "refunded"  # the payment provider paid it back (its refund is the reference)


def format_credit_note_number(number: int) -> str:
    return f"{NUMBER_PREFIX}{number:06d}"


class CreditRequest(FrozenValue):
    """One line to credit: by amount, by quantity, or (neither) what is left of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line_id: str = Field(min_length=1, max_length=128)
    amount: Money | None = None
    quantity: StrictInt | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_way(self) -> CreditRequest:
        if self.amount is not None and self.quantity is not None:
            raise InvalidValue("credit a line by amount or by quantity, not both", field="amount")
        if self.amount is not None and self.amount.amount <= 0:
            raise InvalidValue("a credited amount is positive", field="amount")
        return self


@dataclass(frozen=True)
class LineShares:
    """A charge line's share of the invoice's discount and its taxes, in minor units."""

    discount: int = 0
    tax: int = 0  # exclusive
    tax_included: int = 0  # inclusive


def line_shares(invoice: Invoice) -> dict[str, LineShares]:
    """Each charge line's discount share (domain.tax.allocate_discount, the shares tax was
    computed on) and tax (its tax lines, plus its part of tax lines naming no line)."""
    charges = [line for line in invoice.state.lines if line.kind in CREDITABLE_KINDS]
    discounts = allocate_discount([line.amount for line in charges], invoice.totals.discount_total)
    ids = {line.line_id for line in charges}
    taxes: dict[str, dict[str, int]] = {"tax": defaultdict(int), "tax_included": defaultdict(int)}
    loose = {"tax": 0, "tax_included": 0}
    for line in invoice.state.lines:
        if line.kind is not LineKind.TAX:
            continue
        column = "tax_included" if line.tax_inclusive else "tax"
        if line.applies_to in ids:
            taxes[column][str(line.applies_to)] += line.amount.amount
        else:
            loose[column] += line.amount.amount
    positive = [line for line in charges if line.amount.amount > 0]
    for column, amount in loose.items():
        if amount and positive:
            parts = spread(amount, [line.amount.amount for line in positive])
            for line, part in zip(positive, parts, strict=True):
                taxes[column][line.line_id] += part
    return {
        line.line_id: LineShares(
            discount=share.amount,
            tax=taxes["tax"][line.line_id],
            tax_included=taxes["tax_included"][line.line_id],
        )
        for line, share in zip(charges, discounts, strict=True)
    }


def spread(amount: int, weights: Sequence[int]) -> list[int]:
    """`amount` over positive weights by cumulative half-up rounding: the parts sum to it."""
    whole, running, before, parts = sum(weights), 0, 0, []
    for weight in weights:
        running += weight
        upto = round_half_up(Fraction(amount * running, whole))
        parts.append(upto - before)
        before = upto
    return parts


def portion(whole: int, before: int, after: int, base: int) -> int:
    """The part of `whole` that crediting a line from `before` to `after` of its `base`
    amount takes: round(whole x after / base) - round(whole x before / base)."""
    return round_half_up(Fraction(whole * after, base)) - round_half_up(
        Fraction(whole * before, base)
    )


def plan_credit(invoice: Invoice, requests: Sequence[CreditRequest] | None) -> list[LineCredit]:
    """The lines a credit note takes off the invoice (no requests: what is left of all)."""
    shares = line_shares(invoice)
    if not requests:
        return [
            _credit(invoice, line, shares[line.line_id], None, None)
            for line in invoice.state.lines
            if line.kind in CREDITABLE_KINDS
            and not invoice.creditable_amount(line.line_id).is_zero()
        ]
    seen: set[str] = set()
    credits = []
    for index, request in enumerate(requests):
        line = _requested_line(invoice, request, index, seen)
        credits.append(_credit(invoice, line, shares[line.line_id], request, index))
    return credits


def _requested_line(
    invoice: Invoice, request: CreditRequest, index: int, seen: set[str]
) -> InvoiceLine:
    field = f"lines.{index}.line_id"
    line = invoice.find_line(request.line_id)
    if line is None:
        raise InvalidValue(f"the invoice has no line {request.line_id!r}", field=field)
    if line.kind not in CREDITABLE_KINDS or line.amount.amount <= 0:
        raise InvalidValue(
            f"line {line.line_id} is {with_article(line.kind.value)} line of {line.amount}: only "
            "charge lines above zero are credited (discounts and tax follow the lines they "
            "belong to)",
            field=field,
        )
    if line.line_id in seen:
        raise InvalidValue(f"line {line.line_id} is named twice", field=field)
    seen.add(line.line_id)
    return line


def _credit(
    invoice: Invoice,
    line: InvoiceLine,
    shares: LineShares,
    request: CreditRequest | None,
    index: int | None,
) -> LineCredit:
    left = invoice.creditable_amount(line.line_id)
    quantity = 0
    if request is None or (request.amount is None and request.quantity is None):
        amount, quantity = left, invoice.creditable_quantity(line.line_id)
    elif request.amount is not None:
        if request.amount.currency != line.currency:
            raise CurrencyMismatch(
                f"the invoice is in {line.currency}", field=f"lines.{index}.amount"
            )
        amount = request.amount
    else:
        quantity = int(request.quantity or 0)
        amount = line.amount.with_amount(round_half_up(quantity * unit_amount(line)))
        if amount.is_zero():
            raise InvalidValue(
                f"{quantity} units of line {line.line_id} come to nothing once rounded",
                field=f"lines.{index}.quantity",
            )
        if amount > left:
            raise CreditExceeded(
                f"{quantity} units of line {line.line_id} come to {amount}; {left} is left",
                field=f"lines.{index}.quantity",
            )
    before = line.amount.amount - left.amount
    after = before + amount.amount
    base = line.amount.amount
    zero = Money.zero(line.currency)
    return LineCredit(
        line_id=line.line_id,
        kind=line.kind,
        description=line.description,
        period=line.period,
        quantity=max(quantity, 0),
        amount=amount,
        discount=zero.with_amount(portion(shares.discount, before, after, base)),
        tax=zero.with_amount(portion(shares.tax, before, after, base)),
        tax_included=zero.with_amount(portion(shares.tax_included, before, after, base)),
    )


def unit_amount(line: InvoiceLine) -> Fraction:
    """The line's unit amount in minor units, exactly (the decimal one when it has one)."""
    if line.unit_amount_decimal is not None:
        return Fraction(Decimal(line.unit_amount_decimal))
    return Fraction(line.unit_amount.amount)


# --- the credit note document --------------------------------------------------------------


class CreditNoteState(AggregateState):
    tenant_id: str
    invoice_id: UUID
    invoice_number_text: str | None = None
    invoice_finalized_at: datetime | None = None
    subscription_id: UUID | None = None
    currency: str
    number: int
    number_text: str
    reason: str
    method: CreditMethod
    lines: list[LineCredit]
    subtotal: Money
    discount_total: Money
    tax_total: Money
    total: Money
    issued_at: datetime
    refund_status: str | None = None
    payment_reference: str | None = None


class CreditNoteEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "credit_note"


class CreditNoteIssued(CreditNoteEvent, CreatedEvent):
    """Carries the whole document: the invoice, its number, the lines and totals credited
    (revenue takes each line's `revenue` off its service period)."""

    NAME: ClassVar[str] = "CreditNoteIssued"
    invoice_id: UUID
    invoice_number_text: str | None = None
    invoice_finalized_at: datetime | None = None
    subscription_id: UUID | None = None
    currency: str
    number: int
    number_text: str
    reason: str
    method: CreditMethod
    lines: list[LineCredit]
    subtotal: Money
    discount_total: Money
    tax_total: Money
    total: Money

    def apply(self, aggregate: Any) -> None:
        aggregate.state = CreditNoteState(
            app_id=self.app_id,
            tenant_id=self.tenant_id or "",
            issued_at=self.timestamp,
            **self.model_dump(
                include={
                    "invoice_id",
                    "invoice_number_text",
                    "invoice_finalized_at",
                    "subscription_id",
                    "currency",
                    "number",
                    "number_text",
                    "reason",
                    "method",
                    "subtotal",
                    "discount_total",
                    "tax_total",
                    "total",
                }
            ),
            lines=list(self.lines),
        )


class CreditNoteRefundRecorded(CreditNoteEvent):
    """A refund owed to the invoice's payment method (`pending`: no provider pays it yet)."""

    NAME: ClassVar[str] = "CreditNoteRefundRecorded"
    invoice_id: UUID
    amount: Money
    status: str
    payment_reference: str | None = None

    def apply(self, aggregate: Any) -> None:
        aggregate.state.refund_status = self.status
        aggregate.state.payment_reference = self.payment_reference


class CreditNote(Aggregate[CreditNoteState]):
    """A numbered document taking amounts off one finalized invoice; never changes after."""

    TYPE: ClassVar[str] = "credit_note"
    State = CreditNoteState

    @classmethod
    def issue(
        cls,
        credit_note_id: UUID,
        invoice: Invoice,
        numbering: CreditNoteNumbering,
        method: CreditMethod,
        reason: str,
        requests: Sequence[CreditRequest] | None,
        cause: Cause,
        refunded_by: str | None = None,
    ) -> CreditNote:
        """Credit the invoice (which checks every limit) and number the note; load the
        invoice and the numbering in the same unit of work, so racing notes conflict.
        `refunded_by`: the provider's refund that already paid it back (status refunded)."""
        if not reason.strip():
            raise InvalidValue("say why the invoice is credited", field="reason")
        if numbering.state.app_id != invoice.state.app_id:
            raise InvalidValue("credit note numbering belongs to another app", field="app_id")
        lines = plan_credit(invoice, requests)
        number = numbering.last_number + 1
        number_text = format_credit_note_number(number)
        total = invoice.credit(credit_note_id, number_text, method, lines, cause)
        numbering.assign(credit_note_id, cause)
        state = invoice.state
        zero = Money.zero(state.currency)
        note = cls._create(
            CreditNoteIssued,
            credit_note_id,
            cause,
            app_id=state.app_id,
            tenant_id=state.tenant_id,
            invoice_id=invoice.id,
            invoice_number_text=state.number_text,
            invoice_finalized_at=state.finalized_at,
            subscription_id=state.subscription_id,
            currency=state.currency,
            number=number,
            number_text=number_text,
            reason=reason,
            method=method,
            lines=lines,
            subtotal=sum((line.amount for line in lines), zero),
            discount_total=sum((line.discount for line in lines), zero),
            tax_total=sum((line.tax + line.tax_included for line in lines), zero),
            total=total,
        )
        if method is CreditMethod.REFUND:
            note._trigger(
                CreditNoteRefundRecorded,
                cause,
                invoice_id=invoice.id,
                amount=total,
                status=REFUNDED if refunded_by else REFUND_PENDING,
                payment_reference=refunded_by or state.payment_reference,
            )
        return note

    @property
    def number_text(self) -> str:
        return self.state.number_text


# --- gap-free credit note numbering, one sequence per app ------------------------------


def credit_note_numbering_id(app_id: str) -> UUID:
    return stable_id("credit-note-numbering", app_id)


class CreditNoteNumberingState(AggregateState):
    last_number: int = 0
    last_credit_note_id: UUID | None = None


class CreditNoteNumberingEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "credit_note_numbering"


class CreditNoteNumberingStarted(CreditNoteNumberingEvent, CreatedEvent):
    NAME: ClassVar[str] = "CreditNoteNumberingStarted"

    def apply(self, aggregate: Any) -> None:
        aggregate.state = CreditNoteNumberingState(app_id=self.app_id)


class CreditNoteNumberAssigned(CreditNoteNumberingEvent):
    NAME: ClassVar[str] = "CreditNoteNumberAssigned"
    number: int
    credit_note_id: UUID

    def apply(self, aggregate: Any) -> None:
        aggregate.state.last_number = self.number
        aggregate.state.last_credit_note_id = self.credit_note_id


class CreditNoteNumbering(Aggregate[CreditNoteNumberingState]):
    """An app's credit note sequence CN-000001, CN-000002... with no gaps (as
    InvoiceNumbering: each number is a new version, so racing notes collide and retry)."""

    TYPE: ClassVar[str] = "credit_note_numbering"
    State = CreditNoteNumberingState

    @classmethod
    def start(cls, app_id: str, cause: Cause) -> CreditNoteNumbering:
        return cls._create(
            CreditNoteNumberingStarted, credit_note_numbering_id(app_id), cause, app_id=app_id
        )

    @property
    def last_number(self) -> int:
        return self.state.last_number

    def assign(self, credit_note_id: UUID, cause: Cause) -> int:
        number = self.state.last_number + 1
        self._trigger(CreditNoteNumberAssigned, cause, number=number, credit_note_id=credit_note_id)
        return number
