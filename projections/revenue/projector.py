"""Revenue read model: MRR/ARR per currency, subscriptions per plan and status, churn,
recognized revenue and paid/failed invoice counts.

Built from event data and this projector's own rows only (never from aggregates):

- `revenue_subscriptions`: one row per subscription (plan, status, currency, billing
  interval, price and the ARR it contributes now), so events that carry no price
  (trial ended, past due, payment recovered) can still be interpreted.
- `revenue_arr` per (app, currency): the exact sum of annualized prices in minor units of
  the subscriptions that pay now: ACTIVE and PAST_DUE only (not trialing, paused, canceled
  or expired). Annualized = price x 12 for monthly plans, x 1 for yearly plans, x 365 for
  daily plans. MRR = ARR / 12 rounded half-up, computed at read time, so no rounding error
  accumulates.
- `revenue_plan_status` per (app, plan, status): how many subscriptions are in that state
  (every status is counted; the queries show the live ones as "active subscriptions").
- `revenue_churn` per (app, month, currency): subscriptions canceled or expired while
  paying (previous status ACTIVE or PAST_DUE; a trial that is canceled, or a paused
  subscription, was not contributing to MRR and is not churn), with the ARR they took away.
  The month is the UTC calendar month of the cancel or expiry.
- `revenue_recognition` per (app, currency, UTC day), the revenue recognition ledger (rules
  in docs/revenue.md and `recognition_segments` below): an invoice is recognized from
  InvoiceFinalized (paid or not), each line over its service period, evenly per UTC day;
  tax is never revenue; discounts reduce the lines. Columns: `amount` recognized on that
  service day, `invoices` invoices with a non-zero share that day, `first_in_month`
  invoices whose first non-zero share in that calendar month is that day (so a month counts
  each invoice once), `billed` the recognizable amount of invoices finalized that day, and
  `earned` what became earned that day among billed invoices (a share of service day d of an
  invoice finalized on day F is earned on max(d, F)); deferred revenue at the end of day T
  is the sum of billed - earned over days <= T.
- credit notes (CreditNoteIssued) take each credited line's revenue (its amount less its
  discount share and inclusive tax) off that line's service period, the days the invoice
  recognized it on, with the same daily split; `billed` goes down on the credit note's day
  and `earned` by the share of each service day on max(day, credit note's day), so deferred
  revenue loses what was not yet earned. A credit note never counts as an invoice.
- `revenue_recognition_invoices` per (app, invoice): the invoice's recognition segments, so
  that InvoiceVoided can take the invoice out of every day again (a void is reversed
  ENTIRELY, as if the invoice had never been issued).
- `revenue_invoices` per (app, currency): paid invoices (and their amount), invoices with at
  least one failed payment attempt (`failed`, counted at attempt 1) and all failed attempts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import structlog

from domain.credit_note import CreditNoteIssued
from domain.invoice import (
    InvoiceFinalized,
    InvoicePaid,
    InvoicePaymentFailed,
    InvoiceVoided,
    LineKind,
)
from domain.money import Money
from domain.subscription import (
    PAYING,
    MarkedPastDue,
    PaymentRecovered,
    PlanChanged,
    Status,
    SubscriptionCanceled,
    SubscriptionExpired,
    SubscriptionPaused,
    SubscriptionRenewed,
    SubscriptionResumed,
    SubscriptionStarted,
    TrialEnded,
)
from domain.tax import allocate_discount
from projections.base import Projector, Row, ViewTx
from projections.envelope import EventEnvelope
from projections.usage.projector import parse_instant

log = structlog.get_logger(__name__)

SUBSCRIPTIONS = "revenue_subscriptions"
ARR = "revenue_arr"
ARR_CHANGES = "revenue_arr_changes"
"""ARR gained or lost per app, currency and UTC day: summed in day order, ARR over time."""
PLAN_STATUS = "revenue_plan_status"
CHURN = "revenue_churn"
RECOGNITION = "revenue_recognition"
RECOGNITION_INVOICES = "revenue_recognition_invoices"
INVOICES = "revenue_invoices"
RECOGNITION_COLUMNS = ("amount", "invoices", "first_in_month", "billed", "earned")

ANNUAL_FACTOR = {"day": 365, "month": 12, "year": 1}


def annualized(price: int, interval: str) -> int:
    """A price per billing interval as a yearly amount, exactly, in minor units."""
    return price * ANNUAL_FACTOR[interval]


# --- recognition rules (pure; see docs/revenue.md) ---------------------------------------


@dataclass(frozen=True)
class Segment:
    """`amount` minor units recognized evenly over `days` UTC days starting on `first_day`."""

    first_day: date
    days: int
    amount: int


def _rounded_ratio(amount: int, numerator: int, denominator: int) -> int:
    """amount x numerator / denominator rounded half-up (halves away from zero), exactly."""
    magnitude = (2 * abs(amount) * numerator + denominator) // (2 * denominator)
    return magnitude if amount >= 0 else -magnitude


def allocate(amount: int, weights: Sequence[int]) -> list[int]:
    """Split `amount` over positive `weights` proportionally into integer shares that sum
    exactly to it: cumulative half-up rounding (share k = round(amount x W_k / W) -
    round(amount x W_k-1 / W), W_k the sum of the first k weights), so every prefix of the
    shares is the exact pro-rata amount rounded once."""
    total = sum(weights)
    if total <= 0 or any(weight <= 0 for weight in weights):
        raise ValueError("weights must be positive")
    shares, before, running = [], 0, 0
    for weight in weights:
        running += weight
        upto = _rounded_ratio(amount, running, total)
        shares.append(upto - before)
        before = upto
    return shares


def split_evenly(amount: int, days: int) -> list[int]:
    """`amount` over `days` equal days, exactly (allocate with equal weights)."""
    return allocate(amount, [1] * days)


def service_days(start: datetime, end: datetime) -> tuple[date, int]:
    """(first day, number of days) of a service period [start, end) of aware datetimes in
    UTC days: from the start's day up to, not including, the end's day (Stripe's
    "amortization by day"); a period within one day is that day."""
    first, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    return first, max((last - first).days, 1)


@dataclass(frozen=True)
class RecognitionLine:
    """What recognition needs of an invoice line (InvoiceLine in the event's JSON form)."""

    line_id: str
    kind: str
    amount: int
    period: tuple[datetime, datetime] | None = None
    applies_to: str | None = None
    tax_inclusive: bool = False

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> RecognitionLine:
        period = data.get("period")
        return cls(
            line_id=str(data.get("line_id", "")),
            kind=str(data["kind"]),
            amount=int(data["amount"]["amount"]),
            period=(
                (
                    parse_instant(str(period["start"]), "period.start"),
                    parse_instant(str(period["end"]), "period.end"),
                )
                if period
                else None
            ),
            applies_to=data.get("applies_to"),
            tax_inclusive=bool(data.get("tax_inclusive", False)),
        )


_NOT_REVENUE = frozenset({LineKind.DISCOUNT.value, LineKind.TAX.value})


def recognition_segments(
    lines: Sequence[RecognitionLine], discount_total: Money, finalized_day: date
) -> list[Segment]:
    """What an invoice recognizes: every line except discount and tax lines, net of its
    share of `discount_total` (domain.tax.allocate_discount, the shares tax is computed on)
    and of the inclusive tax inside it, over its service period (a line without one: on the
    finalize day). Exclusive tax is never revenue."""
    revenue = [line for line in lines if line.kind not in _NOT_REVENUE]
    inclusive = [line for line in lines if line.kind == LineKind.TAX.value and line.tax_inclusive]
    nets, rest = _net_amounts(revenue, discount_total, inclusive)
    segments = [
        _segment(line, net, finalized_day) for line, net in zip(revenue, nets, strict=True) if net
    ]
    if rest:
        segments.append(Segment(finalized_day, 1, rest))
    return segments


def _net_amounts(
    revenue: Sequence[RecognitionLine], discount_total: Money, inclusive: Sequence[RecognitionLine]
) -> tuple[list[int], int]:
    """Each revenue line's amount less its discount share and its inclusive tax, and what no
    line could take (only when the invoice has no positive line)."""
    amounts = [discount_total.with_amount(line.amount) for line in revenue]
    shares = [share.amount for share in allocate_discount(amounts, discount_total)]
    nets = [line.amount - share for line, share in zip(revenue, shares, strict=True)]
    rest = sum(shares) - discount_total.amount  # 0 unless no line is positive
    index = {line.line_id: i for i, line in enumerate(revenue)}
    for tax in inclusive:
        if tax.applies_to is not None and tax.applies_to in index:
            nets[index[tax.applies_to]] -= tax.amount
        else:
            rest -= tax.amount
    positive = [i for i, line in enumerate(revenue) if line.amount > 0]
    if not rest or not positive:
        return nets, rest
    # inclusive tax naming no line comes out of the positive lines in proportion
    spread = allocate(rest, [revenue[i].amount for i in positive])
    for i, share in zip(positive, spread, strict=True):
        nets[i] += share
    return nets, 0


def _segment(line: RecognitionLine, net: int, finalized_day: date) -> Segment:
    if line.period is None:
        return Segment(finalized_day, 1, net)
    first, days = service_days(*line.period)
    return Segment(first, days, net)


def daily_schedule(segments: Sequence[Segment]) -> dict[date, int]:
    """Service day -> amount recognized that day (days whose shares sum to 0 left out)."""
    schedule: dict[date, int] = defaultdict(int)
    for segment in segments:
        for offset, share in enumerate(split_evenly(segment.amount, segment.days)):
            if share:
                schedule[segment.first_day + timedelta(days=offset)] += share
    return {day: amount for day, amount in sorted(schedule.items()) if amount}


def recognition_rows(
    segments: Sequence[Segment], finalized_day: date
) -> dict[date, dict[str, int]]:
    """One invoice's contribution to the `revenue_recognition` rows, per day."""
    rows: dict[date, dict[str, int]] = defaultdict(lambda: dict.fromkeys(RECOGNITION_COLUMNS, 0))
    months: set[tuple[int, int]] = set()
    for day, share in daily_schedule(segments).items():
        row = rows[day]
        row["amount"] += share
        row["invoices"] += 1
        if (day.year, day.month) not in months:
            months.add((day.year, day.month))
            row["first_in_month"] += 1
        rows[max(day, finalized_day)]["earned"] += share
    rows[finalized_day]["billed"] += sum(segment.amount for segment in segments)
    return {day: row for day, row in sorted(rows.items()) if any(row.values())}


def credit_segments(lines: Sequence[Mapping[str, Any]], finalized_day: date) -> list[Segment]:
    """What a credit note takes back: each credited line's revenue (credit_note LineCredit in
    its JSON form, `revenue` = amount - discount - inclusive tax) as a negative segment over
    the line's service period (a line without one: the invoice's finalize day)."""
    segments = []
    for line in lines:
        revenue = int(line["amount"]["amount"]) - int(line["discount"]["amount"])
        revenue -= int(line["tax_included"]["amount"])
        if revenue:
            segments.append(_segment(RecognitionLine.of(line), -revenue, finalized_day))
    return segments


def credit_rows(segments: Sequence[Segment], credited_day: date) -> dict[date, dict[str, int]]:
    """A credit note's (negative) contribution to the recognition rows: amounts, billed on
    its day, earned on max(service day, its day); it counts as no invoice."""
    rows = recognition_rows(segments, credited_day)
    for row in rows.values():
        row["invoices"] = row["first_in_month"] = 0
    return rows


def segments_text(segments: Sequence[Segment]) -> str:
    """The JSON text a segment list is stored as (segments_from reads it back)."""
    return json.dumps([[s.first_day.isoformat(), s.days, s.amount] for s in segments])


def segments_from(text: str) -> list[Segment]:
    return [
        Segment(date.fromisoformat(day), int(days), int(amount))
        for day, days, amount in json.loads(text)
    ]


_SUBSCRIPTION_EVENTS = frozenset(
    {
        SubscriptionStarted.NAME,
        TrialEnded.NAME,
        PlanChanged.NAME,
        SubscriptionRenewed.NAME,
        SubscriptionPaused.NAME,
        SubscriptionResumed.NAME,
        SubscriptionCanceled.NAME,
        SubscriptionExpired.NAME,
        MarkedPastDue.NAME,
        PaymentRecovered.NAME,
    }
)
_STATUS_AFTER = {
    TrialEnded.NAME: Status.ACTIVE.value,
    SubscriptionPaused.NAME: Status.PAUSED.value,
    SubscriptionResumed.NAME: Status.ACTIVE.value,
    SubscriptionCanceled.NAME: Status.CANCELED.value,
    SubscriptionExpired.NAME: Status.EXPIRED.value,
    MarkedPastDue.NAME: Status.PAST_DUE.value,
    PaymentRecovered.NAME: Status.ACTIVE.value,
}
_ENDING = frozenset({SubscriptionCanceled.NAME, SubscriptionExpired.NAME})
_STATE_COLUMNS = (
    "tenant_id",
    "plan_key",
    "plan_version",
    "status",
    "currency",
    "billing_interval",
    "price",
    "started_at",
    "ended_at",
)


class RevenueProjector(Projector):
    """Builds the revenue tables from subscription and invoice events."""

    NAME: ClassVar[str] = "revenue"
    TABLES: ClassVar[dict[str, tuple[list[str], list[str]]]] = {  # type: ignore[assignment]
        SUBSCRIPTIONS: (
            [
                "app_id TEXT NOT NULL",
                "subscription_id TEXT NOT NULL",
                "tenant_id TEXT NOT NULL",
                "plan_key TEXT NOT NULL",
                "plan_version BIGINT NOT NULL",
                "status TEXT NOT NULL",
                "currency TEXT NOT NULL",
                "billing_interval TEXT NOT NULL",
                "price BIGINT NOT NULL",
                "arr BIGINT NOT NULL",
                "started_at TEXT NOT NULL",
                "ended_at TEXT",
                "updated_at TEXT NOT NULL",
            ],
            ["app_id", "subscription_id"],
        ),
        ARR: (
            [
                "app_id TEXT NOT NULL",
                "currency TEXT NOT NULL",
                "arr BIGINT NOT NULL DEFAULT 0",
                "subscriptions BIGINT NOT NULL DEFAULT 0",
            ],
            ["app_id", "currency"],
        ),
        ARR_CHANGES: (
            [
                "app_id TEXT NOT NULL",
                "currency TEXT NOT NULL",
                "day TEXT NOT NULL",
                "arr_delta BIGINT NOT NULL DEFAULT 0",
            ],
            ["app_id", "currency", "day"],
        ),
        PLAN_STATUS: (
            [
                "app_id TEXT NOT NULL",
                "plan_key TEXT NOT NULL",
                "status TEXT NOT NULL",
                "subscriptions BIGINT NOT NULL DEFAULT 0",
            ],
            ["app_id", "plan_key", "status"],
        ),
        CHURN: (
            [
                "app_id TEXT NOT NULL",
                "month TEXT NOT NULL",
                "currency TEXT NOT NULL",
                "subscriptions BIGINT NOT NULL DEFAULT 0",
                "arr BIGINT NOT NULL DEFAULT 0",
            ],
            ["app_id", "month", "currency"],
        ),
        RECOGNITION: (
            [
                "app_id TEXT NOT NULL",
                "currency TEXT NOT NULL",
                "day TEXT NOT NULL",
                *(f"{column} BIGINT NOT NULL DEFAULT 0" for column in RECOGNITION_COLUMNS),
            ],
            ["app_id", "currency", "day"],
        ),
        RECOGNITION_INVOICES: (
            [
                "app_id TEXT NOT NULL",
                "invoice_id TEXT NOT NULL",
                "tenant_id TEXT NOT NULL",
                "currency TEXT NOT NULL",
                "finalized_day TEXT NOT NULL",
                "amount BIGINT NOT NULL",
                "segments TEXT NOT NULL",
                "voided_day TEXT",
            ],
            ["app_id", "invoice_id"],
        ),
        INVOICES: (
            [
                "app_id TEXT NOT NULL",
                "currency TEXT NOT NULL",
                "paid BIGINT NOT NULL DEFAULT 0",
                "paid_amount BIGINT NOT NULL DEFAULT 0",
                "failed BIGINT NOT NULL DEFAULT 0",
                "failed_attempts BIGINT NOT NULL DEFAULT 0",
            ],
            ["app_id", "currency"],
        ),
    }
    HANDLES: ClassVar[frozenset[str]] = _SUBSCRIPTION_EVENTS | {
        InvoiceFinalized.NAME,
        InvoiceVoided.NAME,
        InvoicePaid.NAME,
        InvoicePaymentFailed.NAME,
        CreditNoteIssued.NAME,
    }

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        if event.type == InvoiceFinalized.NAME:
            self._invoice_finalized(event, tx)
        elif event.type == CreditNoteIssued.NAME:
            self._credit_note_issued(event, tx)
        elif event.type == InvoiceVoided.NAME:
            self._invoice_voided(event, tx)
        elif event.type == InvoicePaid.NAME:
            self._invoice_paid(event, tx)
        elif event.type == InvoicePaymentFailed.NAME:
            self._invoice_failed(event, tx)
        else:
            self._subscription(event, tx)

    # --- invoices ---------------------------------------------------------------------

    @staticmethod
    def _invoice_finalized(event: EventEnvelope, tx: ViewTx) -> None:
        data = event.data
        day = parse_instant(event.occurred_at, "occurred_at").date()
        lines = [RecognitionLine.of(line) for line in data["lines"]]
        discount = Money.model_validate(data["discount_total"])
        segments = recognition_segments(lines, discount, day)
        currency = str(data["currency"])
        tx.upsert(
            RECOGNITION_INVOICES,
            {"app_id": event.app_id, "invoice_id": str(event.aggregate_id)},
            {
                "tenant_id": event.tenant_id or "",
                "currency": currency,
                "finalized_day": day.isoformat(),
                "amount": sum(segment.amount for segment in segments),
                "segments": segments_text(segments),
                "voided_day": None,
            },
        )
        _post(tx, event.app_id, currency, recognition_rows(segments, day), +1)

    @staticmethod
    def _credit_note_issued(event: EventEnvelope, tx: ViewTx) -> None:
        """Take the credited lines' revenue off their service days (see credit_segments)."""
        data = event.data
        day = parse_instant(event.occurred_at, "occurred_at").date()
        finalized = data.get("invoice_finalized_at")
        finalized_day = (
            parse_instant(finalized, "invoice_finalized_at").date() if finalized else day
        )
        segments = credit_segments(data["lines"], finalized_day)
        _post(tx, event.app_id, str(data["currency"]), credit_rows(segments, day), +1)

    @staticmethod
    def _invoice_voided(event: EventEnvelope, tx: ViewTx) -> None:
        """A void takes the invoice out of every day, as if it had never been issued."""
        key = {"app_id": event.app_id, "invoice_id": str(event.aggregate_id)}
        row = tx.get(RECOGNITION_INVOICES, key)
        if row is None or row["voided_day"] is not None:
            # Only a log that starts after the invoice was finalized gets here.
            log.warning("revenue_unknown_invoice", invoice_id=key["invoice_id"])
            return
        finalized_day = date.fromisoformat(str(row["finalized_day"]))
        rows = recognition_rows(segments_from(str(row["segments"])), finalized_day)
        _post(tx, event.app_id, str(row["currency"]), rows, -1)
        voided_day = parse_instant(event.occurred_at, "occurred_at").date()
        # the whole row: an upsert inserts first, and the NOT NULL columns are checked then
        state = {column: value for column, value in row.items() if column not in key}
        tx.upsert(RECOGNITION_INVOICES, key, {**state, "voided_day": voided_day.isoformat()})

    @staticmethod
    def _invoice_paid(event: EventEnvelope, tx: ViewTx) -> None:
        amount = event.data["amount"]
        currency, minor = str(amount["currency"]), int(amount["amount"])
        tx.increment(
            INVOICES,
            {"app_id": event.app_id, "currency": currency},
            {"paid": 1, "paid_amount": minor},
        )

    @staticmethod
    def _invoice_failed(event: EventEnvelope, tx: ViewTx) -> None:
        first = int(event.data["attempt"]) == 1
        tx.increment(
            INVOICES,
            {"app_id": event.app_id, "currency": str(event.data["currency"])},
            {"failed": 1 if first else 0, "failed_attempts": 1},
        )

    # --- subscriptions ----------------------------------------------------------------

    def _subscription(self, event: EventEnvelope, tx: ViewTx) -> None:
        key = {"app_id": event.app_id, "subscription_id": str(event.aggregate_id)}
        before = tx.get(SUBSCRIPTIONS, key)
        after = self._next_state(event, before)
        if after is None:
            return
        after["arr"] = (
            annualized(int(after["price"]), str(after["billing_interval"]))
            if after["status"] in PAYING
            else 0
        )
        after["updated_at"] = event.occurred_at
        day = parse_instant(event.occurred_at, "occurred_at").strftime("%Y-%m-%d")
        self._move(tx, event.app_id, before, after, day)
        tx.upsert(SUBSCRIPTIONS, key, after)
        if (
            event.type in _ENDING
            and before is not None
            and event.data.get("previous_status", before["status"]) in PAYING
        ):
            month = parse_instant(event.occurred_at, "occurred_at").strftime("%Y-%m")
            tx.increment(
                CHURN,
                {"app_id": event.app_id, "month": month, "currency": str(before["currency"])},
                {"subscriptions": 1, "arr": int(before["arr"])},
            )

    @staticmethod
    def _next_state(event: EventEnvelope, before: Row | None) -> dict[str, Any] | None:
        data = event.data
        if event.type == SubscriptionStarted.NAME:
            terms, price = data["terms"], data["price"]
            return {
                "tenant_id": event.tenant_id or "",
                "plan_key": str(terms["plan_key"]),
                "plan_version": int(terms["version"]),
                "status": str(data["status"]),
                "currency": str(price["currency"]),
                "billing_interval": str(terms["interval"]),
                "price": int(price["amount"]),
                "started_at": event.occurred_at,
                "ended_at": None,
            }
        if before is None:
            # Only an event log that starts after the subscription's start gets here; the
            # event alone does not say which plan it is on, so it cannot be counted.
            log.warning(
                "revenue_unknown_subscription",
                subscription_id=str(event.aggregate_id),
                event_type=event.type,
                position=event.position,
            )
            return None
        state = {column: before[column] for column in _STATE_COLUMNS}
        terms = data.get("to_terms") or data.get("terms")  # PlanChanged / Renewed
        if terms is not None:
            state.update(
                plan_key=str(terms["plan_key"]),
                plan_version=int(terms["version"]),
                billing_interval=str(terms["interval"]),
            )
        price = data.get("new_price") or data.get("price")
        if price is not None:
            state.update(price=int(price["amount"]), currency=str(price["currency"]))
        if event.type in _STATUS_AFTER:
            state["status"] = _STATUS_AFTER[event.type]
        if event.type in _ENDING:
            state["ended_at"] = event.occurred_at
        return state

    @staticmethod
    def _move(tx: ViewTx, app_id: str, before: Row | None, after: Row, day: str) -> None:
        """Move the subscription's contribution from its old state to its new one (on `day`,
        for ARR over time)."""
        if before is not None:
            if (before["plan_key"], before["status"]) != (after["plan_key"], after["status"]):
                _count(tx, app_id, before, -1)
                _count(tx, app_id, after, +1)
            if _contribution(before) != _contribution(after):
                _arr(tx, app_id, before, -1, day)
                _arr(tx, app_id, after, +1, day)
        else:
            _count(tx, app_id, after, +1)
            _arr(tx, app_id, after, +1, day)


def _post(
    tx: ViewTx, app_id: str, currency: str, rows: Mapping[date, Mapping[str, int]], sign: int
) -> None:
    for day, deltas in rows.items():
        tx.increment(
            RECOGNITION,
            {"app_id": app_id, "currency": currency, "day": day.isoformat()},
            {column: sign * deltas[column] for column in RECOGNITION_COLUMNS},
        )


def _contribution(row: Row) -> tuple[bool, str, int]:
    return row["status"] in PAYING, str(row["currency"]), int(row["arr"])


def _count(tx: ViewTx, app_id: str, row: Row, sign: int) -> None:
    tx.increment(
        PLAN_STATUS,
        {"app_id": app_id, "plan_key": row["plan_key"], "status": row["status"]},
        {"subscriptions": sign},
    )


def _arr(tx: ViewTx, app_id: str, row: Row, sign: int, day: str) -> None:
    if row["status"] in PAYING:
        tx.increment(
            ARR,
            {"app_id": app_id, "currency": row["currency"]},
            {"arr": sign * int(row["arr"]), "subscriptions": sign},
        )
        tx.increment(
            ARR_CHANGES,
            {"app_id": app_id, "currency": row["currency"], "day": day},
            {"arr_delta": sign * int(row["arr"])},
        )
