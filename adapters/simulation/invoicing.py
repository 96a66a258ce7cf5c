"""Money steps: manual invoices, finalize, payments and failed attempts, voids, uncollectible,
credit notes (refund, credit balance, lower amount due; whole or per line) and prepaid
credit grants."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from adapters.simulation.catalog import CURRENCIES, money
from adapters.simulation.world import APP, World
from commands.credit_notes.issue_credit_note import IssueCreditNote
from commands.credits.grant_credit import GrantCredit
from commands.credits.void_credit_grant import VoidCreditGrant
from commands.invoices.draft_invoice import DraftInvoice
from commands.invoices.fail_invoice_payment import FailInvoicePayment
from commands.invoices.finalize_invoice import FinalizeInvoice
from commands.invoices.mark_invoice_uncollectible import MarkInvoiceUncollectible
from commands.invoices.pay_invoice import PayInvoice
from commands.invoices.void_invoice import VoidInvoice
from domain.invoice import CREDITABLE_KINDS, Invoice, InvoiceStatus

SAMPLE = 6  # invoices looked at to find one in the wanted status


def invoices_in(world: World, *statuses: InvoiceStatus) -> list[Invoice]:
    """Some of the app's invoices (a seeded sample) that are in one of these statuses."""
    ids = world.system.index.ids(APP, "invoice")
    if len(ids) > SAMPLE:
        ids = [ids[world.rng.randrange(len(ids))] for _ in range(SAMPLE)]
    found = [world.system.aggregate(i) for i in ids]
    return [i for i in found if isinstance(i, Invoice) and i.status in statuses]


def name(world: World, invoice_id: UUID) -> str:
    return world.labels.name("inv", invoice_id)


def manual_invoice(world: World) -> None:
    """A one-off invoice: a fee and sometimes an adjustment (either sign), finalized at once
    most of the time (else left as a draft for a later finalize)."""
    tenant, currency = world.pick(world.tenants), world.rng.choice(CURRENCIES)
    lines = [line(world, "base_fee", world.rng.randint(100, 20_000), currency)]
    if world.rng.random() < 0.4:
        lines.append(line(world, "adjustment", world.rng.randint(-3000, 3000), currency))
    invoice_id = world.new_id("invoice")
    outcome = world.act(
        f"draft_invoice {tenant} {name(world, invoice_id)} {currency}",
        DraftInvoice,
        tenant_id=tenant,
        currency=currency,
        lines=lines,
        invoice_id=invoice_id,
    )
    if outcome.ok and world.rng.random() < 0.8:
        finalize(world, invoice_id)


def line(world: World, kind: str, amount: int, currency: str) -> dict[str, Any]:
    return {
        "line_id": world.new_key("line"),
        "kind": kind,
        "description": kind,
        "quantity": 1,
        "unit_amount": money(amount, currency),
    }


def finalize(world: World, invoice_id: UUID | None = None) -> None:
    if invoice_id is None:
        drafts = invoices_in(world, InvoiceStatus.DRAFT)
        invoice_id = drafts[0].id if drafts else None
    if invoice_id is not None:
        world.act(f"finalize {name(world, invoice_id)}", FinalizeInvoice, invoice_id=invoice_id)


def pay(world: World) -> None:
    found = invoices_in(world, InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
    if found:
        invoice = found[0]
        amount = invoice.amount_due.model_dump() if world.rng.random() < 0.5 else None
        world.act(
            f"pay {name(world, invoice.id)} {invoice.amount_due.amount}",
            PayInvoice,
            invoice_id=invoice.id,
            amount=amount,
        )


def fail_payment(world: World) -> None:
    found = invoices_in(world, InvoiceStatus.OPEN)
    if found:
        world.act(
            f"fail_payment {name(world, found[0].id)}",
            FailInvoicePayment,
            invoice_id=found[0].id,
            reason="insufficient funds",
        )


def void(world: World) -> None:
    found = invoices_in(world, InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
    if found:
        world.act(
            f"void {name(world, found[0].id)}",
            VoidInvoice,
            invoice_id=found[0].id,
            reason="billed by mistake",
        )


def uncollectible(world: World) -> None:
    found = invoices_in(world, InvoiceStatus.OPEN)
    if found:
        world.act(
            f"uncollectible {name(world, found[0].id)}",
            MarkInvoiceUncollectible,
            invoice_id=found[0].id,
        )


def credit_note(world: World) -> None:
    """Credit an open or paid invoice: what is left of it, or part of one charge line."""
    found = invoices_in(world, InvoiceStatus.OPEN, InvoiceStatus.PAID)
    if not found:
        return
    invoice = found[0]
    paid = invoice.status is InvoiceStatus.PAID
    method = world.rng.choice(["refund" if paid else "reduce_amount_due", "credit_balance"])
    lines = credit_lines(world, invoice)
    note_id = world.new_id("credit_note")
    label = f"credit_note {name(world, invoice.id)} {method} lines={len(lines or [])}"
    world.act(
        label,
        IssueCreditNote,
        invoice_id=invoice.id,
        reason="goodwill",
        method=method,
        lines=lines,
        credit_note_id=note_id,
    )


def credit_lines(world: World, invoice: Invoice) -> list[dict[str, Any]] | None:
    """None (the whole rest) a third of the time, else part of a line with something left."""
    left = [
        (li.line_id, invoice.creditable_amount(li.line_id).amount)
        for li in invoice.state.lines
        if li.kind in CREDITABLE_KINDS and invoice.creditable_amount(li.line_id).amount > 0
    ]
    if not left or world.rng.random() < 0.33:
        return None
    line_id, most = world.pick(left)
    amount = money(world.rng.randint(1, most), invoice.state.currency)
    return [{"line_id": line_id, "amount": amount}]


def grant_credit(world: World) -> None:
    rng = world.rng
    tenant, currency = world.pick(world.tenants), rng.choice(CURRENCIES)
    amount, priority = rng.choice([500, 2000, 5000]), rng.randint(0, 100)
    expires = (
        world.clock.now() + timedelta(days=rng.randint(5, 200)) if rng.random() < 0.5 else None
    )
    outcome = world.act(
        f"grant_credit {tenant} {amount} {currency} p{priority}",
        GrantCredit,
        tenant_id=tenant,
        amount=money(amount, currency),
        priority=priority,
        expires_at=expires,
        reason="prepaid",
    )
    if outcome.ok:
        world.grants.setdefault(tenant, []).append(UUID(outcome.result["grant_id"]))


def void_credit_grant(world: World) -> None:
    tenant = world.pick(sorted(world.grants))
    if tenant is not None:
        grant = world.pick(world.grants[tenant])
        label = world.labels.name("grant", grant)
        world.act(
            f"void_credit_grant {tenant} {label}", VoidCreditGrant, tenant_id=tenant, grant_id=grant
        )
