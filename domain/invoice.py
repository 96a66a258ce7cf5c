"""Invoice aggregate (draft -> open -> paid | void | uncollectible) and gap-free numbering.

Totals rule (documented once, used everywhere; docs/pricing.md "Invoice totals"):

- subtotal = sum of every line except discount and tax lines (proration credits and
  negative adjustments reduce it);
- discount_total = -(sum of discount lines), a positive amount, CLAMPED at the subtotal
  (never below zero): an invoice's discounts never push its total below zero, the excess
  is simply not applied (the lines stay as recorded, the applied amount is in the totals);
- tax_total = sum of tax lines, exclusive and inclusive; inclusive tax is already inside
  the lines it taxes, so it is reported but not added again;
- total = subtotal - discount_total + exclusive tax;
- amount_due = max(total - credits_applied - balance_applied, 0): prepaid credit grants
  (domain/credit_grant.py) are drawn first, then the tenant's credit balance.

An invoice whose total is below zero (a downgrade's proration) finalizes with amount_due 0;
the rest (`balance_created`) becomes the tenant's credit balance, drawn on the next invoice.
Once finalized the totals and lines are frozen in InvoiceFinalized and never recomputed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

from pydantic import ConfigDict, Field, ModelWrapValidatorHandler, model_validator

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.catalog import FeatureSpec
from domain.clock import ensure_aware
from domain.errors import (
    CurrencyMismatch,
    InvalidTransition,
    InvalidValue,
    InvoiceFrozen,
    MoneyOverflow,
    with_article,
)
from domain.money import MAX_MINOR, Money, validate_currency
from domain.period import Period
from domain.value import FrozenValue

NUMBER_PREFIX = "INV-"


class LineKind(StrEnum):
    BASE_FEE = "base_fee"
    SEATS = "seats"
    PRORATION_CREDIT = "proration_credit"
    PRORATION_DEBIT = "proration_debit"
    USAGE = "usage"
    OVERAGE = "overage"
    DISCOUNT = "discount"
    TAX = "tax"
    COMMITMENT_TRUE_UP = "commitment_true_up"
    ADJUSTMENT = "adjustment"


CREDIT_KINDS = frozenset({LineKind.DISCOUNT, LineKind.PRORATION_CREDIT})  # amount <= 0
SIGNED_KINDS = frozenset({LineKind.ADJUSTMENT, LineKind.TAX})  # either sign (tax on a credit)
NOT_IN_SUBTOTAL = frozenset({LineKind.DISCOUNT, LineKind.TAX})


def check_line_amounts(kind: LineKind, unit_amount: Money, amount: Money) -> None:
    """One currency per line; credits (discount, proration credit) are negative or zero,
    adjustments carry either sign, every other kind is positive or zero."""
    if unit_amount.currency != amount.currency:
        raise CurrencyMismatch(
            f"unit_amount is {unit_amount.currency} but amount is {amount.currency}",
            field="amount",
        )
    if kind in CREDIT_KINDS and amount.amount > 0:
        raise InvalidValue(
            f"{with_article(kind.value)} line carries a negative amount", field="amount"
        )
    if kind not in CREDIT_KINDS | SIGNED_KINDS and amount.amount < 0:
        raise InvalidValue(f"{with_article(kind.value)} line cannot be negative", field="amount")


class UsageEvidence(FrozenValue):
    """Where a usage line's quantity came from: the facts counted, up to the cut-off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature_key: str
    meter: str
    quantity: int
    included: int = 0
    events: int
    cutoff_position: int | None = None
    first_position: int | None = None
    last_position: int | None = None
    first_at: str | None = None
    last_at: str | None = None
    spec: FeatureSpec | None = None  # the feature as priced: the invoice can be recomputed


class InvoiceLine(FrozenValue):
    """One line of an invoice; `source_event_ids` lets "invoice explain" trace it back.

    `unit_amount_decimal` keeps a unit price finer than the minor unit ("0.0035" cents);
    `applies_to` names the line a tax line taxes; `tax_inclusive` marks tax already inside
    that line's amount (reported, not added to the total)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line_id: str = Field(min_length=1, max_length=128)
    kind: LineKind
    description: str = Field(min_length=1, max_length=500)
    quantity: int = Field(ge=0)
    unit_amount: Money
    amount: Money
    period: Period | None = None
    source_event_ids: list[str] = Field(default_factory=list)
    unit_amount_decimal: str | None = None
    applies_to: str | None = None
    tax_inclusive: bool = False
    usage: UsageEvidence | None = None
    adjusts: UUID | None = None  # an adjustment: the earlier invoice it corrects

    @model_validator(mode="wrap")
    @classmethod
    def _amounts(cls, data: Any, handler: ModelWrapValidatorHandler[InvoiceLine]) -> InvoiceLine:
        """Checked once, when the line is made: a line passed on (into an event, a state)
        is the same frozen object, already checked (an "after" validator would run again
        at every pass, four times per line in a draft and finalize)."""
        if type(data) is cls:
            return data
        line = handler(data)
        check_line_amounts(line.kind, line.unit_amount, line.amount)
        return line

    @property
    def currency(self) -> str:
        return self.amount.currency


class InvoiceTotals(FrozenValue):
    """subtotal - discount_total + exclusive tax = total (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subtotal: Money
    discount_total: Money
    tax_total: Money
    total: Money
    inclusive_tax: Money | None = None


def compute_totals(currency: str, lines: Iterable[InvoiceLine]) -> InvoiceTotals:
    """Totals of lines in one currency; discounts are clamped at a non-negative subtotal.
    Summed as integers (each sum checked to fit as Money), not Money by Money."""
    subtotal = discounts = tax = inclusive = 0
    for line in lines:
        if line.amount.currency != currency:
            raise CurrencyMismatch(
                f"cannot combine {currency} with {line.amount.currency}", field="currency"
            )
        if line.kind is LineKind.DISCOUNT:
            discounts -= line.amount.amount
        elif line.kind is LineKind.TAX and line.tax_inclusive:
            inclusive += line.amount.amount
        elif line.kind is LineKind.TAX:
            tax += line.amount.amount
        else:
            subtotal += line.amount.amount
    applied = min(discounts, max(subtotal, 0))

    def money(amount: int) -> Money:
        if not -MAX_MINOR <= amount <= MAX_MINOR:
            raise MoneyOverflow("amount is outside the signed 64-bit range", field="amount")
        return Money(amount=amount, currency=currency)

    return InvoiceTotals(
        subtotal=money(subtotal),
        discount_total=money(applied),
        tax_total=money(tax + inclusive),
        total=money(subtotal - applied + tax),
        inclusive_tax=money(inclusive),
    )


def split_due(total: Money, balance: Money) -> tuple[Money, Money, Money]:
    """(balance_applied, amount_due, balance_created) for a total and the tenant's credit
    balance: a positive total draws the balance first; a negative one creates balance."""
    zero = Money.zero(total.currency)
    if total.amount < 0:
        return zero, zero, -total
    applied = min(max(balance, zero), total)
    return applied, total - applied, zero


def format_invoice_number(number: int) -> str:
    return f"{NUMBER_PREFIX}{number:06d}"


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class InvoiceState(AggregateState):
    tenant_id: str
    subscription_id: UUID | None = None
    currency: str
    period: Period | None = None
    status: InvoiceStatus = InvoiceStatus.DRAFT
    lines: list[InvoiceLine] = Field(default_factory=list)
    number: int | None = None
    number_text: str | None = None
    totals: InvoiceTotals | None = None  # frozen at finalize
    amount_due: Money | None = None  # frozen at finalize
    credits_applied: Money | None = None  # drawn from prepaid credit grants at finalize
    balance_applied: Money | None = None
    balance_created: Money | None = None
    origin: str = "manual"
    usage_cutoff: int | None = None
    finalize_at: datetime | None = None
    finalized_at: datetime | None = None
    amount_paid: Money | None = None
    paid_at: datetime | None = None
    payment_reference: str | None = None
    payment_attempts: int = 0
    last_payment_error: str | None = None
    next_retry_at: datetime | None = None
    voided_at: datetime | None = None
    void_reason: str | None = None
    marked_uncollectible_at: datetime | None = None
    # credit notes (domain/credit_note.py): what each line and the invoice had credited
    credit_note_ids: list[UUID] = Field(default_factory=list)
    credited_amounts: dict[str, int] = Field(default_factory=dict)  # line -> minor units
    credited_quantities: dict[str, int] = Field(default_factory=dict)
    credited_total: int = 0  # the credit notes' totals, tax included
    refunded_total: int = 0  # of which owed back to the payment method


class InvoiceEvent(DomainEvent):
    """Every invoice event carries what projectors need without loading the aggregate."""

    AGGREGATE_TYPE: ClassVar[str] = "invoice"
    subscription_id: UUID | None = None
    currency: str
    period: Period | None = None


class InvoiceDrafted(InvoiceEvent, CreatedEvent):
    """`origin`: manual, subscription (a billing point), proration (always_invoice) or final
    (a subscription's end); `usage_cutoff` the log position usage was read up to;
    `finalize_at` when the grace period ends and the draft finalizes by itself."""

    NAME: ClassVar[str] = "InvoiceDrafted"
    lines: list[InvoiceLine]
    origin: str = "manual"
    usage_cutoff: int | None = None
    finalize_at: datetime | None = None

    def apply(self, aggregate: Any) -> None:
        aggregate.state = InvoiceState(
            app_id=self.app_id,
            tenant_id=self.tenant_id or "",
            subscription_id=self.subscription_id,
            currency=self.currency,
            period=self.period,
            lines=list(self.lines),
            origin=self.origin,
            usage_cutoff=self.usage_cutoff,
            finalize_at=self.finalize_at,
        )


class InvoiceLineAdded(InvoiceEvent):
    NAME: ClassVar[str] = "InvoiceLineAdded"
    line: InvoiceLine

    def apply(self, aggregate: Any) -> None:
        aggregate.state.lines.append(self.line)


class FinalizedInvoiceEvent(InvoiceEvent):
    """Events after finalize also carry the number and the frozen total."""

    number: int
    number_text: str
    total: Money


class InvoiceFinalized(FinalizedInvoiceEvent):
    NAME: ClassVar[str] = "InvoiceFinalized"
    subtotal: Money
    discount_total: Money
    tax_total: Money
    inclusive_tax: Money | None = None
    lines: list[InvoiceLine]
    amount_due: Money | None = None  # None in events from before credit balances: = total
    credits_applied: Money | None = None  # None in events from before credit grants: none
    balance_applied: Money | None = None
    balance_created: Money | None = None

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.status = InvoiceStatus.OPEN
        state.number = self.number
        state.number_text = self.number_text
        state.lines = list(self.lines)
        state.totals = InvoiceTotals(
            subtotal=self.subtotal,
            discount_total=self.discount_total,
            tax_total=self.tax_total,
            total=self.total,
            inclusive_tax=self.inclusive_tax,
        )
        state.amount_due = self.amount_due if self.amount_due is not None else self.total
        state.credits_applied = self.credits_applied
        state.balance_applied = self.balance_applied
        state.balance_created = self.balance_created
        state.finalized_at = self.timestamp


class InvoicePaid(FinalizedInvoiceEvent):
    NAME: ClassVar[str] = "InvoicePaid"
    amount: Money
    paid_at: datetime
    payment_reference: str | None = None
    previous_status: InvoiceStatus

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.status = InvoiceStatus.PAID
        state.amount_paid = self.amount
        state.paid_at = self.paid_at
        state.payment_reference = self.payment_reference
        state.next_retry_at = None


class InvoicePaymentFailed(FinalizedInvoiceEvent):
    NAME: ClassVar[str] = "InvoicePaymentFailed"
    attempt: int
    reason: str
    next_retry_at: datetime | None = None

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.payment_attempts = self.attempt
        state.last_payment_error = self.reason
        state.next_retry_at = self.next_retry_at


class InvoiceVoided(FinalizedInvoiceEvent):
    NAME: ClassVar[str] = "InvoiceVoided"
    reason: str
    previous_status: InvoiceStatus

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.status = InvoiceStatus.VOID
        state.voided_at = self.timestamp
        state.void_reason = self.reason
        state.next_retry_at = None


class InvoiceMarkedUncollectible(FinalizedInvoiceEvent):
    NAME: ClassVar[str] = "InvoiceMarkedUncollectible"

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.status = InvoiceStatus.UNCOLLECTIBLE
        state.marked_uncollectible_at = self.timestamp
        state.next_retry_at = None


# --- credit notes: what a finalized invoice had credited (rules in domain/credit_note.py) ---

CREDITABLE_KINDS = frozenset(LineKind) - NOT_IN_SUBTOTAL  # charges; discount and tax follow


class CreditMethod(StrEnum):
    REFUND = "refund"  # owed back to the payment method (a paid invoice)
    CREDIT_BALANCE = "credit_balance"  # to the tenant's credit balance, drawn next invoice
    REDUCE_AMOUNT_DUE = "reduce_amount_due"  # an open invoice owes less


class CreditExceeded(InvalidTransition):
    """A credit note would credit more than is left creditable."""

    code = "credit_exceeds_creditable"


class LineCredit(FrozenValue):
    """What one credit note takes off one invoice line: `amount` of the line's own amount
    (before its discount share, as the line shows it), with its share of the line's
    discount and tax; `tax` is exclusive (added to the total), `tax_included` inside
    `amount` (inclusive tax, reported only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line_id: str
    kind: LineKind
    description: str
    period: Period | None = None
    quantity: int = 0  # the units credited (0: credited by amount)
    amount: Money
    discount: Money
    tax: Money
    tax_included: Money

    @property
    def total(self) -> Money:
        """What the tenant gets back for this line: amount - discount + exclusive tax."""
        return self.amount - self.discount + self.tax

    @property
    def revenue(self) -> Money:
        """The revenue it takes back: amount - discount - inclusive tax (tax is never revenue)."""
        return self.amount - self.discount - self.tax_included


class InvoiceCredited(FinalizedInvoiceEvent):
    """A credit note credited these lines; `amount_due` is what the invoice owes after it."""

    NAME: ClassVar[str] = "InvoiceCredited"
    credit_note_id: UUID
    credit_note_number_text: str
    method: CreditMethod
    lines: list[LineCredit]
    amount: Money  # the credit note's total
    amount_due: Money

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.credit_note_ids.append(self.credit_note_id)
        for line in self.lines:
            amounts, quantities = state.credited_amounts, state.credited_quantities
            amounts[line.line_id] = amounts.get(line.line_id, 0) + line.amount.amount
            quantities[line.line_id] = quantities.get(line.line_id, 0) + line.quantity
        state.credited_total += self.amount.amount
        if self.method is CreditMethod.REFUND:
            state.refunded_total += self.amount.amount
        state.amount_due = self.amount_due


class Invoice(Aggregate[InvoiceState]):
    """A tenant's bill for a period: edited as a draft, frozen and numbered when finalized."""

    TYPE: ClassVar[str] = "invoice"
    State = InvoiceState

    @classmethod
    def draft(
        cls,
        invoice_id: UUID,
        app_id: str,
        tenant_id: str,
        currency: str,
        cause: Cause,
        *,
        subscription_id: UUID | None = None,
        period: Period | None = None,
        lines: Sequence[InvoiceLine] = (),
        origin: str = "manual",
        usage_cutoff: int | None = None,
        finalize_at: datetime | None = None,
    ) -> Invoice:
        validate_currency(currency)
        seen: set[str] = set()
        for line in lines:
            _check_line(line, currency, seen)
            seen.add(line.line_id)
        return cls._create(
            InvoiceDrafted,
            invoice_id,
            cause,
            app_id=app_id,
            tenant_id=tenant_id,
            subscription_id=subscription_id,
            currency=currency,
            period=period,
            lines=list(lines),
            origin=origin,
            usage_cutoff=usage_cutoff,
            finalize_at=finalize_at,
        )

    @property
    def status(self) -> InvoiceStatus:
        return self.state.status

    @property
    def totals(self) -> InvoiceTotals:
        """Frozen totals once finalized; computed from the lines while a draft."""
        if self.state.totals is not None:
            return self.state.totals
        return compute_totals(self.state.currency, self.state.lines)

    def add_line(self, line: InvoiceLine, cause: Cause) -> None:
        self._require_draft("add a line to")
        _check_line(line, self.state.currency, {existing.line_id for existing in self.state.lines})
        self._trigger(InvoiceLineAdded, cause, line=line, **self._context())

    @property
    def amount_due(self) -> Money:
        """What the tenant still owes once finalized (the total while a draft)."""
        if self.state.amount_due is not None:
            return self.state.amount_due
        return self.totals.total

    def finalize(
        self,
        numbering: InvoiceNumbering,
        cause: Cause,
        balance: Money | None = None,
        credits: Money | None = None,
    ) -> int:
        """Freeze lines and totals and take the app's next number; returns the number.

        `balance` is the tenant's credit balance in this currency (drawn first; a negative
        total adds to it, see split_due). Load the numbering in the same unit of work: its
        optimistic concurrency keeps the numbers unique and gap-free when invoices are
        finalized concurrently. `credits` is what prepaid credit grants pay (drawn before the
        balance; at most the total).
        """
        self._require_draft("finalize")
        if not self.state.lines:
            raise InvalidTransition("an invoice needs at least one line", field="lines")
        totals = compute_totals(self.state.currency, self.state.lines)
        if numbering.state.app_id != self.state.app_id:
            raise InvalidValue("invoice numbering belongs to another app", field="app_id")
        zero = Money.zero(self.state.currency)
        drawn = credits or zero
        if drawn.amount < 0 or drawn > max(totals.total, zero):
            raise InvalidValue("credits applied exceed the invoice total", field="credits_applied")
        applied, due, created = split_due(totals.total - drawn, balance or zero)
        number = numbering.assign(self.id, cause)
        self._trigger(
            InvoiceFinalized,
            cause,
            number=number,
            number_text=format_invoice_number(number),
            subtotal=totals.subtotal,
            discount_total=totals.discount_total,
            tax_total=totals.tax_total,
            inclusive_tax=totals.inclusive_tax,
            total=totals.total,
            lines=list(self.state.lines),
            amount_due=due,
            credits_applied=drawn,
            balance_applied=applied,
            balance_created=created,
            **self._context(),
        )
        return number

    def pay(
        self, cause: Cause, amount: Money | None = None, payment_reference: str | None = None
    ) -> None:
        """Record payment in full (an open or uncollectible invoice); a given amount must
        equal the amount due."""
        self._require(InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE, action="pay")
        total = self.amount_due
        if amount is not None:
            if amount.currency != total.currency:
                raise CurrencyMismatch(
                    f"the invoice is in {total.currency}, not {amount.currency}", field="amount"
                )
            if amount != total:
                raise InvalidValue(
                    f"the payment {amount} must equal the amount due {total}", field="amount"
                )
        self._trigger(
            InvoicePaid,
            cause,
            amount=total,
            paid_at=cause.occurred_at,
            payment_reference=payment_reference,
            previous_status=self.status,
            **self._finalized_context(),
        )

    def fail_payment(self, reason: str, cause: Cause, next_retry_at: datetime | None = None) -> int:
        """A payment attempt failed (open or uncollectible; the status does not change).
        Returns the attempt number."""
        self._require(InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE, action="fail a payment of")
        if not reason.strip():
            raise InvalidValue("say why the payment failed", field="reason")
        if next_retry_at is not None and ensure_aware(next_retry_at) <= cause.occurred_at:
            raise InvalidValue("the next retry must be in the future", field="next_retry_at")
        attempt = self.state.payment_attempts + 1
        self._trigger(
            InvoicePaymentFailed,
            cause,
            attempt=attempt,
            reason=reason,
            next_retry_at=next_retry_at,
            **self._finalized_context(),
        )
        return attempt

    def void(self, reason: str, cause: Cause) -> None:
        self._require(InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE, action="void")
        if self.state.credit_note_ids:
            raise InvalidTransition(
                "an invoice with credit notes cannot be voided; credit what is left instead",
                field="status",
                status=self.status.value,
            )
        if not reason.strip():
            raise InvalidValue("say why the invoice is voided", field="reason")
        self._trigger(
            InvoiceVoided,
            cause,
            reason=reason,
            previous_status=self.status,
            **self._finalized_context(),
        )

    def mark_uncollectible(self, cause: Cause) -> None:
        self._require(InvoiceStatus.OPEN, action="mark uncollectible")
        self._trigger(InvoiceMarkedUncollectible, cause, **self._finalized_context())

    # --- credit notes ---

    def find_line(self, line_id: str) -> InvoiceLine | None:
        return next((line for line in self.state.lines if line.line_id == line_id), None)

    def creditable_amount(self, line_id: str) -> Money:
        """What is left to credit of a line's own amount (zero for discount and tax lines,
        which are credited with the lines they belong to)."""
        line = self.find_line(line_id)
        if line is None or line.kind not in CREDITABLE_KINDS:
            return Money.zero(self.state.currency)
        return line.amount - line.amount.with_amount(self.state.credited_amounts.get(line_id, 0))

    def creditable_quantity(self, line_id: str) -> int:
        line = self.find_line(line_id)
        if line is None:
            return 0
        return line.quantity - self.state.credited_quantities.get(line_id, 0)

    @property
    def creditable_total(self) -> Money:
        """What credit notes may still take off the invoice: its total less their totals."""
        total = self.totals.total
        return max(total - total.with_amount(self.state.credited_total), Money.zero(total.currency))

    def credit(
        self,
        credit_note_id: UUID,
        number_text: str,
        method: CreditMethod,
        lines: Sequence[LineCredit],
        cause: Cause,
    ) -> Money:
        """Record a credit note on this open or paid invoice; returns its total. Never more
        than what is left of each line, of the invoice's total, of the amount due
        (reduce_amount_due) or of the amount paid (refund); an open invoice whose amount due
        reaches zero is paid (Stripe's rule)."""
        self._require(InvoiceStatus.OPEN, InvoiceStatus.PAID, action="credit")
        total = self._check_credit_lines(lines)
        self._check_method(method, total)
        due = self.amount_due - total if method is CreditMethod.REDUCE_AMOUNT_DUE else None
        self._trigger(
            InvoiceCredited,
            cause,
            credit_note_id=credit_note_id,
            credit_note_number_text=number_text,
            method=method,
            lines=list(lines),
            amount=total,
            amount_due=due if due is not None else self.amount_due,
            **self._finalized_context(),
        )
        if due is not None and due.is_zero():
            self._trigger(
                InvoicePaid,
                cause,
                amount=due,
                paid_at=cause.occurred_at,
                payment_reference=number_text,
                previous_status=InvoiceStatus.OPEN,
                **self._finalized_context(),
            )
        return total

    def _check_credit_lines(self, lines: Sequence[LineCredit]) -> Money:
        zero = Money.zero(self.state.currency)
        if not lines:
            raise InvalidTransition("nothing is left to credit on this invoice", field="lines")
        total = zero
        if len({credit.line_id for credit in lines}) < len(lines):
            raise InvalidValue("a credit note names each line once", field="lines")
        for index, credit in enumerate(lines):
            left = self.creditable_amount(credit.line_id)
            if credit.amount.currency != left.currency:
                raise CurrencyMismatch(
                    f"the invoice is in {left.currency}", field=f"lines.{index}.amount"
                )
            same_sign = credit.amount.amount * left.amount > 0
            if not same_sign or abs(credit.amount.amount) > abs(left.amount):
                raise CreditExceeded(
                    f"line {credit.line_id} has {left} left to credit, not {credit.amount}",
                    field=f"lines.{index}.amount",
                )
            if credit.quantity > self.creditable_quantity(credit.line_id):
                raise CreditExceeded(
                    f"line {credit.line_id} has {self.creditable_quantity(credit.line_id)} "
                    f"units left to credit, not {credit.quantity}",
                    field=f"lines.{index}.quantity",
                )
            total = total + credit.total
        if total.amount <= 0:
            raise InvalidTransition("nothing is left to credit on this invoice", field="lines")
        if total > self.creditable_total:
            raise CreditExceeded(
                f"the credit note's total {total} exceeds the {self.creditable_total} left "
                "of the invoice's total",
                field="lines",
            )
        return total

    def _check_method(self, method: CreditMethod, total: Money) -> None:
        if method is CreditMethod.REDUCE_AMOUNT_DUE:
            if self.status is not InvoiceStatus.OPEN:
                raise InvalidTransition(
                    f"reduce_amount_due needs an open invoice, this one is {self.status.value}",
                    field="method",
                )
            if total > self.amount_due:
                raise CreditExceeded(
                    f"the credit {total} exceeds the amount due {self.amount_due}",
                    field="method",
                )
        if method is CreditMethod.REFUND:
            paid = self.state.amount_paid
            if self.status is not InvoiceStatus.PAID or paid is None:
                raise InvalidTransition(
                    f"a refund needs a paid invoice, this one is {self.status.value}",
                    field="method",
                )
            left = paid - paid.with_amount(self.state.refunded_total)
            if total > left:
                raise CreditExceeded(
                    f"the refund {total} exceeds the {left} paid and not yet refunded",
                    field="method",
                )

    def _context(self) -> dict[str, Any]:
        return {
            "subscription_id": self.state.subscription_id,
            "currency": self.state.currency,
            "period": self.state.period,
        }

    def _finalized_context(self) -> dict[str, Any]:
        return {
            **self._context(),
            "number": self.state.number,
            "number_text": self.state.number_text,
            "total": self.totals.total,
        }

    def _require_draft(self, action: str) -> None:
        if self.status is not InvoiceStatus.DRAFT:
            raise InvoiceFrozen(
                f"cannot {action} invoice {self.state.number_text}: it is finalized "
                f"({self.status.value}) and never changes",
                field="status",
                status=self.status.value,
            )

    def _require(self, *allowed: InvoiceStatus, action: str) -> None:
        if self.status not in allowed:
            names = ", ".join(sorted(s.value for s in allowed))
            raise InvalidTransition(
                f"cannot {action} {with_article(self.status.value)} invoice "
                f"(allowed from: {names})",
                field="status",
                status=self.status.value,
            )


def _check_line(line: InvoiceLine, currency: str, taken: set[str]) -> None:
    if line.currency != currency:
        raise CurrencyMismatch(
            f"line {line.line_id} is in {line.currency}; the invoice is in {currency}",
            field="lines",
        )
    if line.line_id in taken:
        raise InvalidValue(f"line id {line.line_id} is already used", field="line_id")


# --- gap-free invoice numbering, one sequence per app ---


def invoice_numbering_id(app_id: str) -> UUID:
    return stable_id("invoice-numbering", app_id)


class NumberingState(AggregateState):
    last_number: int = 0
    last_invoice_id: UUID | None = None


class InvoiceNumberingEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "invoice_numbering"


class InvoiceNumberingStarted(InvoiceNumberingEvent, CreatedEvent):
    NAME: ClassVar[str] = "InvoiceNumberingStarted"

    def apply(self, aggregate: Any) -> None:
        aggregate.state = NumberingState(app_id=self.app_id)


class InvoiceNumberAssigned(InvoiceNumberingEvent):
    NAME: ClassVar[str] = "InvoiceNumberAssigned"
    number: int
    invoice_id: UUID

    def apply(self, aggregate: Any) -> None:
        aggregate.state.last_number = self.number
        aggregate.state.last_invoice_id = self.invoice_id


class InvoiceNumbering(Aggregate[NumberingState]):
    """An app's invoice number sequence: 1, 2, 3... with no gaps.

    Every assignment is a new version of this one aggregate, so two concurrent finalizes
    collide on the version (optimistic concurrency) and the loser retries with the next
    number; a failed command saves nothing, so no number is ever skipped.
    """

    TYPE: ClassVar[str] = "invoice_numbering"
    State = NumberingState

    @classmethod
    def start(cls, app_id: str, cause: Cause) -> InvoiceNumbering:
        return cls._create(
            InvoiceNumberingStarted, invoice_numbering_id(app_id), cause, app_id=app_id
        )

    @property
    def last_number(self) -> int:
        return self.state.last_number

    def assign(self, invoice_id: UUID, cause: Cause) -> int:
        number = self.state.last_number + 1
        self._trigger(InvoiceNumberAssigned, cause, number=number, invoice_id=invoice_id)
        return number
