"""What the Stripe tests of this folder share: the app, a tenant's profile, commands on the
bus, a Stripe sync round, and reading the ledger."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from adapters.bootstrap import System
from domain.invoice import Invoice
from domain.payment_account import PaymentAccount, payment_account_id
from domain.subscription import Subscription

APP = "acme"
PROFILE = {
    "name": "Tenant One GmbH",
    "email": "billing@t1.example",
    "country": "DE",
    "tax_status": "taxable",
    "timezone": "Europe/Berlin",
    "currency": "EUR",
}


# --- the system ------------------------------------------------------------------------------


def send(system: System, command: str, **payload: Any) -> dict[str, Any]:
    reply = system.dispatch(command, {"app_id": APP, **payload})
    assert reply["ok"], reply
    result: dict[str, Any] = reply["result"]
    return result


def sync(system: System) -> list[str]:
    """Read models (the Stripe task list too) up to date, then the due Stripe tasks done."""
    system.sync()
    outcomes: list[str] = system.stripe.sync.run_due().outcomes
    return outcomes


def eur(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "EUR"}


def define_plan(system: System, key: str = "pro", price: int = 10000) -> None:
    send(system, "define_plan", plan_key=key, name=key.title(), base_price=eur(price))


def profile(system: System, tenant: str = "t1", **changes: Any) -> None:
    send(system, "set_billing_profile", tenant_id=tenant, **{**PROFILE, **changes})


def subscribe(system: System, tenant: str = "t1", plan: str = "pro") -> UUID:
    return UUID(
        send(system, "start_subscription", tenant_id=tenant, plan_key=plan)["subscription_id"]
    )


def open_invoice(
    system: System, subscription_id: UUID | None = None, amount: int = 1000, tenant: str = "t1"
) -> UUID:
    """A finalized (open) invoice of one fee line, of the subscription when one is given."""
    line = {"kind": "base_fee", "description": "fee", "unit_amount": eur(amount)}
    extra = {"subscription_id": str(subscription_id)} if subscription_id else {}
    draft = send(system, "draft_invoice", tenant_id=tenant, currency="EUR", lines=[line], **extra)
    send(system, "finalize_invoice", invoice_id=draft["invoice_id"])
    return UUID(draft["invoice_id"])


# --- reading the ledger ----------------------------------------------------------------------


def load(system: System, kind: type[Any], aggregate_id: UUID) -> Any:
    found = system.aggregate(aggregate_id)
    assert isinstance(found, kind), found
    return found


def account(system: System, tenant: str = "t1") -> PaymentAccount:
    found: PaymentAccount = load(system, PaymentAccount, payment_account_id(APP, tenant))
    return found


def subscription(system: System, subscription_id: UUID) -> Subscription:
    found: Subscription = load(system, Subscription, subscription_id)
    return found


def invoice_of(system: System, invoice_id: UUID) -> Invoice:
    found: Invoice = load(system, Invoice, invoice_id)
    return found
