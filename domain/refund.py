"""A refund made at the payment provider as the credit note lines that return exactly it.

A refund of what is left of the invoice credits the rest of it (no lines). A partial refund
credits charge lines in invoice order: each whole line while its credit (with its discount
share and tax, as domain/credit_note.py computes it) fits in what is left to return, then
the largest part of the next line that still fits (found by bisection, since a credit's
total grows with its amount). Tax rounding makes some totals unreachable on a line (one
minor unit more of a line can add two to its credit), so when that split falls short the
search backs off to the next lower totals a line can reach (at most FEW per line) and lets
the lines after it make up the rest, until the refund is met exactly. Only when no split it
tries meets it (one line whose credits skip the refund's amount; SEARCH_BUDGET credit totals
computed; more than SEARCH_LINES charge lines) does the note fall short, by what tax
rounding skips (a minor unit or two); `planned_total` says what the note will return.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.credit_note import CreditRequest, plan_credit
from domain.invoice import CREDITABLE_KINDS, Invoice, InvoiceLine
from domain.money import Money

FEW = 4  # reachable totals a line tries, largest first, before the search gives it up
SEARCH_BUDGET = 2000  # credit totals the exact search may compute (each plans one line)
SEARCH_LINES = 200  # more charge lines than this: the greedy split (the search recurses per line)


def refund_requests(invoice: Invoice, refund: Money) -> list[CreditRequest] | None:
    """The lines to credit for `refund` (None: everything left of the invoice; empty: no
    line returns as little as the refund, so there is nothing to credit)."""
    if refund >= invoice.creditable_total:
        return None
    split = _Split.of(invoice)
    amounts = split.exact(refund.amount) or split.greedy(refund.amount)
    return [
        _request(line.line_id, line.amount.with_amount(amount))
        for line, amount in zip(split.lines, amounts, strict=True)
        if amount
    ]


def planned_total(invoice: Invoice, requests: list[CreditRequest] | None) -> Money:
    if requests == []:
        return Money.zero(invoice.state.currency)  # plan_credit reads no lines as all of them
    credits = plan_credit(invoice, requests)
    return sum((c.total for c in credits), Money.zero(invoice.state.currency))


class _OutOfBudget(Exception):
    """The exact search computed SEARCH_BUDGET totals: settle for the greedy split."""


@dataclass
class _Split:
    """The charge lines a refund may credit, and each line's credit total per amount."""

    invoice: Invoice
    lines: list[InvoiceLine]
    lefts: list[int]  # what is left to credit of each line
    totals: dict[tuple[int, int], int] = field(default_factory=dict)
    failed: set[tuple[int, int]] = field(default_factory=set)  # (line, needed): no exact split
    budget: int | None = SEARCH_BUDGET

    @classmethod
    def of(cls, invoice: Invoice) -> _Split:
        lines = [
            line
            for line in invoice.state.lines
            if line.kind in CREDITABLE_KINDS
            and line.amount.amount > 0
            and invoice.creditable_amount(line.line_id).amount > 0
        ]
        lefts = [invoice.creditable_amount(line.line_id).amount for line in lines]
        return cls(invoice, lines, lefts)

    def total(self, index: int, amount: int) -> int:
        """The credit total of `amount` of line `index` (cached)."""
        if amount == 0:
            return 0
        key = (index, amount)
        if key not in self.totals:
            if self.budget is not None and len(self.totals) >= self.budget:
                raise _OutOfBudget
            line = self.lines[index]
            self.totals[key] = _total(self.invoice, line.line_id, line.amount.with_amount(amount))
        return self.totals[key]

    def fit(self, index: int, needed: int) -> int:
        """The largest amount of the line (at most what is left) whose total is <= needed."""
        low, high = 0, self.lefts[index]
        while low < high:
            middle = (low + high + 1) // 2
            if self.total(index, middle) <= needed:
                low = middle
            else:
                high = middle - 1
        return low

    def exact(self, needed: int) -> list[int] | None:
        """Amounts per line whose credit totals sum to exactly `needed` (None: none found)."""
        if len(self.lines) > SEARCH_LINES:
            return None
        try:
            room = [self.total(i, left) for i, left in enumerate(self.lefts)]
            return self._exact(0, needed, [sum(room[i:]) for i in range(len(room) + 1)])
        except _OutOfBudget:
            return None

    def _exact(self, index: int, needed: int, room: list[int]) -> list[int] | None:
        """Lines from `index` on; `room[i]` is what lines i.. return when credited whole."""
        if needed == 0:
            return [0] * (len(self.lines) - index)
        if needed > room[index] or (index, needed) in self.failed:
            return None
        target = needed
        for _ in range(FEW):
            amount = self.fit(index, target) if target > 0 else 0  # not a part returning 0
            reached = self.total(index, amount)
            if needed - reached > room[index + 1]:
                break  # less of this line: the lines after it cannot make up the rest
            rest = self._exact(index + 1, needed - reached, room)
            if rest is not None:
                return [amount, *rest]
            if amount == 0:
                break
            target = reached - 1
        self.failed.add((index, needed))
        return None

    def greedy(self, needed: int) -> list[int]:
        """Each line in turn, as much of it as fits (never more than `needed` in all)."""
        self.budget = None
        amounts = []
        for index in range(len(self.lines)):
            amount = self.fit(index, needed) if needed > 0 else 0
            amounts.append(amount)
            needed -= self.total(index, amount)
        return amounts


def _total(invoice: Invoice, line_id: str, amount: Money) -> int:
    return planned_total(invoice, [_request(line_id, amount)]).amount


def _request(line_id: str, amount: Money) -> CreditRequest:
    return CreditRequest(line_id=line_id, amount=amount)
