"""The invariants about money, from the invoice aggregates and from the events in the log.

invoice_totals (domain/invoice.py, "Totals rule"): every invoice's totals are
`compute_totals` of its lines, total = subtotal - discount_total + exclusive tax, the
discounts never pass a positive subtotal; invoice and credit-note numbers run 1..n.

money_conserved, per finalized invoice i (domain/invoice.py `finalize` and `split_due`,
domain/credit_note.py, commands/invoices/void_invoice.py), in minor units:
  (1) credits_applied + balance_applied + amount_due_at_finalize = max(total, 0) and
      balance_created = max(-total, 0);
  (2) amount_due_at_finalize = paid + reduced + outstanding + voided, where paid is what
      InvoicePaid recorded, reduced what reduce_amount_due credit notes took off, outstanding
      the amount due of an open or uncollectible invoice, voided the amount due forgiven by a
      void;
  (3) its credit notes credit at most max(total, 0), and refund at most what was paid;
  (4) the prepaid grants drew exactly credits_applied for it (CreditDrawn), and if it was
      voided gave each grant back what it drew (CreditReinstated), except a grant voided or
      past its expiry by then (what it would get back lapses: domain/credit_grant.py);
per tenant and currency (domain/balance.py, domain/credit_grant.py):
  (5) credit balance = sum of balance_created - sum of balance_applied + credit notes to the
      balance (+ what voids returned), and equals the CreditBalance aggregate;
  (6) what the grants hold = granted - drawn + reinstated - expired - voided, and equals the
      TenantCredits aggregate.
Summed over invoices, per currency: billed = credits + balance + paid + reduced + outstanding
+ voided, the figure printed.

voids_return_balance: a voided invoice gives back what it took from the tenant's credit
balance, as Stripe does since API version 2019-12-03 ("customer balances applied to all
invoices are now debited or credited back to the customer when voided").
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from adapters.eventstore.envelopes import iter_envelopes
from adapters.simulation.checks import Check
from adapters.simulation.world import APP, World
from domain.balance import CreditBalance, balance_id
from domain.credit_grant import TenantCredits, tenant_credits_id
from domain.invoice import Invoice, InvoiceStatus, compute_totals
from projections.envelope import EventEnvelope


def minor(value: dict[str, Any] | None) -> int:
    return int(value["amount"]) if value else 0


# --- invoice totals and numbers -------------------------------------------------------------


def invoice_totals(world: World) -> Check:
    invoices = [world.system.aggregate(i) for i in world.system.index.ids(APP, "invoice")]
    problems: list[str] = []
    for invoice in invoices:
        problems += totals_problems(world, invoice)
    numbers = sorted(i.state.number for i in invoices if i.state.number is not None)
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"invoice numbers are not 1..{len(numbers)}: gaps or repeats")
    notes = credit_note_numbers(world)
    if notes != list(range(1, len(notes) + 1)):
        problems.append(f"credit note numbers are not 1..{len(notes)}")
    figures = f"invoices={len(invoices)} numbered=1..{len(numbers)} credit_notes=1..{len(notes)}"
    return Check("invoice_totals", figures, problems)


def totals_problems(world: World, invoice: Invoice) -> list[str]:
    state, totals = invoice.state, invoice.totals
    label = world.labels.name("inv", invoice.id)
    computed = compute_totals(state.currency, state.lines)
    problems = [] if computed == totals else [f"{label}: totals {totals} != lines {computed}"]
    exclusive = totals.tax_total - (totals.inclusive_tax or totals.tax_total.with_amount(0))
    if totals.total != totals.subtotal - totals.discount_total + exclusive:
        problems.append(f"{label}: total != subtotal - discounts + exclusive tax")
    if totals.discount_total.amount > max(totals.subtotal.amount, 0):
        problems.append(f"{label}: discounts {totals.discount_total} pass the subtotal")
    return problems


def credit_note_numbers(world: World) -> list[int]:
    numbers: list[int] = []
    for envelopes in iter_envelopes(
        world.system.ledger.recorder, 0, 2000, topics=("CreditNoteIssued",)
    ):
        numbers += [int(e.data["number"]) for e in envelopes]
    return sorted(numbers)


# --- money through the log ------------------------------------------------------------------


@dataclass
class InvoiceMoney:
    """One invoice's money as its events tell it (minor units)."""

    tenant: str
    currency: str
    status: str = "draft"
    total: int = 0
    credits: int = 0
    applied: int = 0
    due_at_finalize: int = 0
    created: int = 0
    due: int = 0
    paid: int = 0
    reduced: int = 0
    refunded: int = 0
    credited: int = 0
    voided: int = 0
    drawn: int = 0
    voided_at: str = ""
    draws: Counter[str] = field(default_factory=Counter)  # grant -> drawn
    reinstated: Counter[str] = field(default_factory=Counter)  # grant -> given back
    returned: int = 0  # balance given back after a void


@dataclass
class GrantLife:
    """When a prepaid grant expires, and whether it ended (expired or voided)."""

    expires_at: str | None
    ended: bool = False


@dataclass
class Books:
    """Every invoice's money, and the balance and grant movements per (tenant, currency)."""

    invoices: dict[str, InvoiceMoney] = field(default_factory=dict)
    balance: Counter[tuple[str, str]] = field(default_factory=Counter)
    to_balance: Counter[tuple[str, str]] = field(default_factory=Counter)
    grants: Counter[tuple[str, str]] = field(default_factory=Counter)
    lives: dict[str, GrantLife] = field(default_factory=dict)

    def invoice(self, event: EventEnvelope) -> InvoiceMoney:
        key = str(event.aggregate_id)
        if key not in self.invoices:
            self.invoices[key] = InvoiceMoney(str(event.tenant_id), str(event.data["currency"]))
        return self.invoices[key]


def finalized(books: Books, event: EventEnvelope) -> None:
    data, money = event.data, books.invoice(event)
    money.status, money.total = "open", minor(data["total"])
    money.credits, money.applied = (
        minor(data.get("credits_applied")),
        minor(data.get("balance_applied")),
    )
    money.due_at_finalize = money.due = minor(data.get("amount_due", data["total"]))
    money.created = minor(data.get("balance_created"))


def paid(books: Books, event: EventEnvelope) -> None:
    money = books.invoice(event)
    money.status, money.paid, money.due = "paid", money.paid + minor(event.data["amount"]), 0


def credited(books: Books, event: EventEnvelope) -> None:
    data, money = event.data, books.invoice(event)
    amount, method = minor(data["amount"]), str(data["method"])
    money.credited += amount
    if method == "reduce_amount_due":
        money.reduced, money.due = money.reduced + amount, minor(data["amount_due"])
    elif method == "refund":
        money.refunded += amount
    else:
        books.to_balance[(money.tenant, money.currency)] += amount


def voided(books: Books, event: EventEnvelope) -> None:
    money = books.invoice(event)
    money.status, money.voided, money.due = "void", money.due, 0
    money.voided_at = event.occurred_at


def uncollectible(books: Books, event: EventEnvelope) -> None:
    books.invoice(event).status = "uncollectible"


def balance_moved(books: Books, event: EventEnvelope) -> None:
    data = event.data
    amount = data["amount"]
    books.balance[(str(event.tenant_id), str(amount["currency"]))] += int(amount["amount"])
    money = books.invoices.get(str(data.get("invoice_id")))
    if money is not None and money.status == "void" and int(amount["amount"]) > 0:
        money.returned += int(amount["amount"])


def grant_moved(books: Books, event: EventEnvelope) -> None:
    data = event.data
    amount = data["amount"]
    books.grants[(str(event.tenant_id), str(amount["currency"]))] += int(amount["amount"])
    grant = str(data["grant_id"])
    if event.type == "CreditGranted":
        books.lives[grant] = GrantLife(data.get("expires_at"))
    elif event.type in ("CreditExpired", "CreditVoided"):
        books.lives[grant].ended = True
    money = books.invoices.get(str(data.get("invoice_id")))
    if money is not None and event.type == "CreditDrawn":
        money.drawn -= int(amount["amount"])
        money.draws[grant] -= int(amount["amount"])
    elif money is not None and event.type == "CreditReinstated":
        money.reinstated[grant] += int(amount["amount"])


FOLLOW: dict[str, Callable[[Books, EventEnvelope], None]] = {
    "InvoiceFinalized": finalized,
    "InvoicePaid": paid,
    "InvoiceCredited": credited,
    "InvoiceVoided": voided,
    "InvoiceMarkedUncollectible": uncollectible,
    "CreditBalanceOpened": balance_moved,
    "CreditBalanceMoved": balance_moved,
    **{
        name: grant_moved
        for name in (
            "CreditGranted",
            "CreditDrawn",
            "CreditReinstated",
            "CreditExpired",
            "CreditVoided",
        )
    },
}


def read_books(world: World) -> Books:
    books = Books()
    for envelopes in iter_envelopes(world.system.ledger.recorder, 0, 2000, topics=tuple(FOLLOW)):
        for event in envelopes:
            FOLLOW[event.type](books, event)
    return books


# --- the equations --------------------------------------------------------------------------


def invoice_problems(label: str, money: InvoiceMoney, books: Books) -> list[str]:
    """Equations (1) to (4) for one finalized invoice."""
    problems = []
    if money.credits + money.applied + money.due_at_finalize != max(money.total, 0):
        problems.append(f"{label}: credits + balance + due != max(total, 0)")
    if money.created != max(-money.total, 0):
        problems.append(f"{label}: balance created {money.created}, total {money.total}")
    outstanding = money.due if money.status in ("open", "uncollectible") else 0
    if money.due_at_finalize != money.paid + money.reduced + outstanding + money.voided:
        problems.append(
            f"{label}: due {money.due_at_finalize} != paid {money.paid} + reduced "
            f"{money.reduced} + outstanding {outstanding} + voided {money.voided}"
        )
    if money.credited > max(money.total, 0) or money.refunded > money.paid:
        problems.append(f"{label}: credited {money.credited} / refunded {money.refunded} too much")
    if money.drawn != money.credits:
        problems.append(f"{label}: grants drew {money.drawn}, the invoice applied {money.credits}")
    problems += [f"{label}: {g}" for g in given_back_problems(money, books)]
    return problems


def given_back_problems(money: InvoiceMoney, books: Books) -> list[str]:
    """Equation (4)'s second half: what each grant got back from a voided invoice."""
    problems = []
    for grant, drawn in sorted(money.draws.items()):
        back, life = money.reinstated[grant], books.lives[grant]
        lapsed = life.ended or (life.expires_at is not None and life.expires_at <= money.voided_at)
        wanted = 0 if money.status != "void" or lapsed else drawn
        if back != wanted and not (lapsed and back in (0, drawn)):
            problems.append(f"a grant drew {drawn}, got back {back} (wanted {wanted})")
    return problems


def tenant_problems(world: World, books: Books) -> list[str]:
    """Equations (5) and (6), against the aggregates."""
    expected: Counter[tuple[str, str]] = Counter(books.to_balance)
    for money in books.invoices.values():
        key = (money.tenant, money.currency)
        expected[key] += money.created - money.applied + money.returned
    problems = []
    for tenant, currency in sorted(set(expected) | set(books.balance)):
        found = world.system.aggregate(balance_id(APP, tenant, currency))
        held = found.balance.amount if isinstance(found, CreditBalance) else 0
        if not expected[(tenant, currency)] == books.balance[(tenant, currency)] == held:
            problems.append(
                f"{tenant} {currency}: balance {held}, moved "
                f"{books.balance[(tenant, currency)]}, explained {expected[(tenant, currency)]}"
            )
    return problems + grant_problems(world, books)


def grant_problems(world: World, books: Books) -> list[str]:
    problems = []
    for tenant, currency in sorted(books.grants):
        ledger = world.system.aggregate(tenant_credits_id(APP, tenant))
        held = ledger.balances().get(currency) if isinstance(ledger, TenantCredits) else None
        if (held.amount if held else 0) != books.grants[(tenant, currency)]:
            problems.append(
                f"{tenant} {currency}: grants hold {held}, moved {books.grants[(tenant, currency)]}"
            )
    return problems


def money_conserved(world: World) -> Check:
    books = read_books(world)
    problems: list[str] = []
    sums: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for key, money in books.invoices.items():
        if money.status == "draft":
            continue
        problems += invoice_problems(world.labels.name("inv", key), money, books)
        add_up(sums[money.currency], money)
    problems += tenant_problems(world, books)
    problems += aggregate_problems(world, books)
    figures = "; ".join(equation(c, sums[c]) for c in sorted(sums)) or "no invoices"
    return Check("money_conserved", figures, problems)


def add_up(sums: Counter[str], money: InvoiceMoney) -> None:
    outstanding = money.due if money.status in ("open", "uncollectible") else 0
    sums.update(
        {
            "billed": max(money.total, 0),
            "credits": money.credits,
            "balance": money.applied,
            "paid": money.paid,
            "reduced": money.reduced,
            "outstanding": outstanding,
            "voided": money.voided,
        }
    )


def equation(currency: str, s: Counter[str]) -> str:
    return (
        f"{currency} billed {s['billed']} = credits {s['credits']} + balance {s['balance']} "
        f"+ paid {s['paid']} + reduced {s['reduced']} + outstanding {s['outstanding']} "
        f"+ voided {s['voided']}"
    )


def aggregate_problems(world: World, books: Books) -> list[str]:
    """The invoice aggregates agree with their events (status and amount due)."""
    problems = []
    for key, money in books.invoices.items():
        invoice = world.system.aggregate(UUID(key))
        if not isinstance(invoice, Invoice) or invoice.status is InvoiceStatus.DRAFT:
            continue
        due = invoice.amount_due.amount if money.status in ("open", "uncollectible") else 0
        if invoice.status.value != money.status or due != money.due:
            problems.append(
                f"{world.labels.name('inv', key)}: aggregate {invoice.status.value} "
                f"due {invoice.amount_due.amount}, events {money.status} due {money.due}"
            )
    return problems


def voids_return_balance(world: World) -> Check:
    """A voided invoice gave back the balance it applied; one that created balance (a total
    below zero) keeps it today: counted in the figures, not a failure (see the report)."""
    books = read_books(world)
    voided = [(k, m) for k, m in books.invoices.items() if m.status == "void"]
    problems = [
        f"{world.labels.name('inv', key)} took {m.applied} from the balance, "
        f"its void gave back {m.returned}"
        for key, m in voided
        if m.applied != m.returned
    ]
    took = sum(1 for _, m in voided if m.applied)
    kept = sum(1 for _, m in voided if m.created)
    figures = f"voided={len(voided)} balance applied and returned={took} created and kept={kept}"
    return Check("voids_return_balance", figures, problems)


# --- revenue --------------------------------------------------------------------------------

FAR = "8999-01-01T00:00:00+00:00"  # every service day of every line has passed by then
REVENUE_TOPICS = (
    "InvoiceFinalized",
    "InvoiceVoided",
    "CreditNoteIssued",
    "InvoicePaid",
    "InvoicePaymentFailed",
)


def invoice_net(data: dict[str, Any]) -> int:
    """What an invoice recognizes: its lines net of discounts and inclusive tax."""
    inclusive = minor(data.get("inclusive_tax"))
    return minor(data["subtotal"]) - minor(data["discount_total"]) - inclusive


def note_revenue(data: dict[str, Any]) -> int:
    """What a credit note takes back: each line's amount less its discount and inclusive tax."""
    lines = data["lines"]
    return sum(
        minor(li["amount"]) - minor(li["discount"]) - minor(li["tax_included"]) for li in lines
    )


@dataclass
class RevenueBooks:
    """Per currency, what all time should recognize (docs/revenue.md: lines net of discounts,
    inclusive tax and credit notes; voids reversed entirely), and the payment counts."""

    net: dict[str, tuple[str, int]] = field(default_factory=dict)  # invoice -> currency, net
    credited: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    failing: set[str] = field(default_factory=set)

    def follow(self, event: EventEnvelope) -> None:
        data, key = event.data, str(event.aggregate_id)
        if event.type == "InvoiceFinalized":
            self.net[key] = (str(data["currency"]), invoice_net(data))
        elif event.type == "InvoiceVoided":
            self.net.pop(key, None)
        elif event.type == "CreditNoteIssued":
            self.credited[str(data["currency"])] += note_revenue(data)
        elif event.type == "InvoicePaid":
            self.counts["paid"] += 1
        else:
            self.counts["failed_attempts"] += 1
            self.failing.add(key)

    def expected(self) -> Counter[str]:
        expected: Counter[str] = Counter()
        for currency, amount in self.net.values():
            expected[currency] += amount
        expected.subtract(self.credited)
        return expected

    def payments(self) -> dict[str, int]:
        return {**self.counts, "failed": len(self.failing)}


def read_revenue_books(world: World) -> RevenueBooks:
    books = RevenueBooks()
    recorder = world.system.ledger.recorder
    for envelopes in iter_envelopes(recorder, 0, 2000, topics=REVENUE_TOPICS):
        for event in envelopes:
            books.follow(event)
    return books


def revenue_matches_invoices(world: World) -> Check:
    """Recognized over all time = invoiced net of discounts, tax and credit notes; the paid
    and failed counts = the invoices' payment events."""
    books = read_revenue_books(world)
    expected, counts = books.expected(), books.payments()
    answer = world.system.query("revenue", app_id=APP, as_of=FAR)
    recognized: Counter[str] = Counter()
    for row in answer["recognized"]:
        recognized[str(row["currency"])] += int(row["amount"])
    problems = [
        f"{c}: recognized {recognized[c]}, invoiced net {expected[c]}"
        for c in sorted(set(expected) | set(recognized))
        if recognized[c] != expected[c]
    ]
    shown = answer["invoices"]
    if any(shown[k] != counts.get(k, 0) for k in ("paid", "failed", "failed_attempts")):
        problems.append(f"invoice counts {shown} != events {counts}")
    figures = ", ".join(f"{c} {recognized[c]}" for c in sorted(recognized)) or "nothing"
    return Check("revenue_matches_invoices", f"recognized {figures}; {shown}", problems)
