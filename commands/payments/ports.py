"""Port: the payment provider (Stripe) as Tally uses it, in Tally's words.

The real adapter is adapters/stripe/gateway.py (the official SDK's StripeClient); tests use
tests/fake_payment_provider.py, and one contract suite runs against both. Every object
Tally creates carries metadata `tally_app_id` and `tally_tenant_id`; every create takes an
idempotency key derived from Tally's ids, so a retried create makes nothing twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal, Protocol

InvoiceStatus = Literal["draft", "open", "paid", "void", "uncollectible"]


@dataclass(frozen=True)
class CustomerDetails:
    """What the provider's customer carries, from the tenant's billing profile."""

    app_id: str
    tenant_id: str
    name: str
    email: str
    country: str
    tax_id: str | None = None

    def digest(self) -> str:
        """A hash of what the customer carries (events keep it; no personal data in it)."""
        text = "\x1f".join([self.name, self.email, self.country, self.tax_id or ""])
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ProviderCustomer:
    id: str
    email: str | None
    name: str | None
    country: str | None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PaymentMethodInfo:
    id: str
    type: str
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    default: bool = False


@dataclass(frozen=True)
class PlanPrice:
    """One version of a plan as a recurring price (the base fee; usage is billed by Tally)."""

    app_id: str
    plan_key: str
    version: int
    name: str
    amount: int  # minor units
    currency: str  # ISO 4217, upper case
    interval: Literal["day", "month", "year"]


@dataclass(frozen=True)
class ProviderPrice:
    product_id: str
    price_id: str


@dataclass(frozen=True)
class ProviderSubscription:
    id: str
    customer_id: str
    status: str
    price_id: str | None
    cancel_at_period_end: bool
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InvoiceItem:
    description: str
    amount: int  # minor units, may be negative (a discount)


@dataclass(frozen=True)
class InvoiceToCollect:
    """A finalized Tally invoice to be collected: its amount due as provider items."""

    app_id: str
    tenant_id: str
    invoice_id: str
    number: str
    currency: str
    amount_due: int
    items: tuple[InvoiceItem, ...]
    replaces: str | None = None  # the provider invoice a re-push replaces (a voided one)

    @property
    def idempotency_key(self) -> str:
        """One provider invoice per Tally invoice, and one more per replaced one."""
        key = f"tally-invoice-{self.invoice_id}"
        return f"{key}-after-{self.replaces}" if self.replaces else key


@dataclass(frozen=True)
class ProviderInvoice:
    id: str
    customer_id: str
    status: InvoiceStatus
    amount_due: int
    amount_paid: int
    currency: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChargeOutcome:
    paid: bool
    reason: str | None = None  # why a charge failed, from the provider


class ProviderUnavailable(Exception):
    """The provider could not be reached or answered 5xx: try again later."""


class ProviderRefused(Exception):
    """The provider refused a request (4xx): retrying the same request will not help."""


class PaymentProvider(Protocol):
    """Port: customers, payment methods, catalog, sessions, subscriptions and collection."""

    def create_customer(self, details: CustomerDetails) -> str: ...

    def update_customer(self, customer_id: str, details: CustomerDetails) -> None: ...

    def get_customer(self, customer_id: str) -> ProviderCustomer | None: ...

    def list_customers(self, app_id: str) -> list[ProviderCustomer]: ...

    def attach_payment_method(self, customer_id: str, payment_method: str) -> PaymentMethodInfo:
        """Attach and make it the customer's default for invoices."""
        ...

    def list_payment_methods(self, customer_id: str) -> list[PaymentMethodInfo]: ...

    def sync_price(self, price: PlanPrice, product_id: str | None) -> ProviderPrice:
        """Create the plan's product (when product_id is None) and a price for its version."""
        ...

    def deactivate_prices(self, product_id: str, price_ids: list[str]) -> None: ...

    def create_checkout_session(
        self,
        customer_id: str,
        price_id: str,
        success_url: str,
        cancel_url: str,
        metadata: dict[str, str],
        trial_days: int,
    ) -> str:
        """A subscription-mode checkout session; returns its URL."""
        ...

    def create_portal_session(self, customer_id: str, return_url: str) -> str: ...

    def create_subscription(
        self, customer_id: str, price_id: str, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        """A mirror of a Tally subscription that never collects by itself."""
        ...

    def update_subscription(
        self, subscription_id: str, *, price_id: str | None, cancel_at_period_end: bool
    ) -> None: ...

    def cancel_subscription(self, subscription_id: str) -> None: ...

    def list_subscriptions(self, customer_id: str) -> list[ProviderSubscription]: ...

    def push_invoice(self, customer_id: str, invoice: InvoiceToCollect) -> str:
        """Create and finalize the provider invoice for a Tally invoice; returns its id."""
        ...

    def charge_invoice(self, provider_invoice_id: str) -> ChargeOutcome: ...

    def void_invoice(self, provider_invoice_id: str) -> None:
        """Void an open provider invoice (a void one stays so; a paid one is refused)."""
        ...

    def mark_invoice_paid(self, provider_invoice_id: str) -> None:
        """Paid outside the provider (paid out of band; a paid one stays so)."""
        ...

    def get_invoice(self, provider_invoice_id: str) -> ProviderInvoice | None: ...

    def list_invoices(self, customer_id: str) -> list[ProviderInvoice]: ...
