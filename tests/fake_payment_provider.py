"""An in-memory PaymentProvider for tests: Stripe's behaviour as Tally relies on it.

The contract suite (tests/integration/test_payment_provider_contract.py) runs the same tests
against this fake and against the real gateway on a test Stripe server, so what the fake does
is what the gateway does. Test knobs: `make_card`, `declining`, `fail_next_charge`,
`unavailable`, `calls`, and provider-side drift (`pay_outside`, `void_outside`,
`delete_customer`).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

from commands.payments.ports import (
    ChargeOutcome,
    CustomerDetails,
    InvoiceStatus,
    InvoiceToCollect,
    PaymentMethodInfo,
    PlanPrice,
    ProviderCustomer,
    ProviderInvoice,
    ProviderPrice,
    ProviderRefused,
    ProviderSubscription,
    ProviderUnavailable,
)

GOOD_CARD = "4242424242424242"
DECLINING_CARD = "4000000000000341"  # attaches, then every charge is declined (as Stripe's)
REFUSED_CARD = "4000000000000002"  # declined already when attached (as Stripe's)
DECLINE_REASON = "card_declined: Your card was declined."
NO_PAYMENT_METHOD = "no_payment_method: the customer has no default payment method"
# Stripe's test tokens (https://docs.stripe.com/testing#cards), accepted by attach as Stripe
# does: each makes a new payment method
TEST_TOKENS = {
    "pm_card_visa": GOOD_CARD,
    "pm_card_chargeCustomerFail": DECLINING_CARD,
    "pm_card_chargeDeclined": REFUSED_CARD,
}


@dataclass
class FakeCustomer:
    id: str
    details: CustomerDetails
    metadata: dict[str, str]
    deleted: bool = False
    default_payment_method: str | None = None


@dataclass
class FakeCard:
    id: str
    number: str
    customer_id: str | None = None


@dataclass
class FakePrice:
    id: str
    product_id: str
    price: PlanPrice
    metadata: dict[str, str]
    active: bool = True


@dataclass
class FakeSession:
    id: str
    url: str
    customer_id: str
    price_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    trial_days: int | None = None
    return_url: str | None = None


@dataclass
class FakeSubscription:
    id: str
    customer_id: str
    price_id: str
    metadata: dict[str, str]
    status: str = "active"
    cancel_at_period_end: bool = False


@dataclass
class FakeInvoice:
    id: str
    customer_id: str
    amount_due: int
    currency: str
    metadata: dict[str, str]
    status: InvoiceStatus = "open"
    amount_paid: int = 0
    attempts: int = 0


class FakePaymentProvider:
    """Every method of the PaymentProvider port, in memory, with ids like `cus_fake_1`."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.unavailable = False  # True: every call raises ProviderUnavailable
        self.declining: set[str] = set()  # payment method ids whose charges are declined
        self.customers: dict[str, FakeCustomer] = {}
        self.cards: dict[str, FakeCard] = {}
        self.products: dict[str, dict[str, object]] = {}
        self.prices: dict[str, FakePrice] = {}
        self.checkout_sessions: dict[str, FakeSession] = {}
        self.portal_sessions: dict[str, FakeSession] = {}
        self.subscriptions: dict[str, FakeSubscription] = {}
        self.invoices: dict[str, FakeInvoice] = {}
        self._charge_failures: list[str] = []
        self._idempotent: dict[str, str] = {}
        self._counter = itertools.count(1)

    # test knobs -------------------------------------------------------------------------

    def make_card(self, number: str = GOOD_CARD) -> str:
        """A card payment method, not yet attached (as POST /v1/payment_methods)."""
        card = FakeCard(self._new_id("pm"), number)
        self.cards[card.id] = card
        if number == DECLINING_CARD:
            self.declining.add(card.id)
        return card.id

    def attach_card_only(self, customer_id: str, payment_method: str) -> None:
        """Attached without becoming the invoices' default (as Checkout saves a card)."""
        self._card(payment_method).customer_id = customer_id

    def fail_next_charge(self, reason: str = DECLINE_REASON) -> None:
        self._charge_failures.append(reason)

    def pay_outside(self, invoice_id: str) -> None:
        """The invoice was paid at the provider without Tally (e.g. in the dashboard)."""
        invoice = self.invoices[invoice_id]
        invoice.status, invoice.amount_paid = "paid", invoice.amount_due

    def void_outside(self, invoice_id: str) -> None:
        self.invoices[invoice_id].status = "void"

    def delete_customer(self, customer_id: str) -> None:
        self.customers[customer_id].deleted = True

    # customers ---------------------------------------------------------------------------

    def create_customer(self, details: CustomerDetails) -> str:
        self._call("create_customer")
        key = _customer_key(details)
        known = self._idempotent.get(key)
        if known and not self.customers[known].deleted:
            return known
        metadata = {"tally_app_id": details.app_id, "tally_tenant_id": details.tenant_id}
        customer = FakeCustomer(self._new_id("cus"), details, metadata)
        self.customers[customer.id] = customer
        self._idempotent[key] = customer.id
        return customer.id

    def update_customer(self, customer_id: str, details: CustomerDetails) -> None:
        self._call("update_customer")
        self._customer(customer_id).details = details

    def get_customer(self, customer_id: str) -> ProviderCustomer | None:
        self._call("get_customer")
        customer = self.customers.get(customer_id)
        if customer is None or customer.deleted:
            return None
        return _provider_customer(customer)

    def list_customers(self, app_id: str) -> list[ProviderCustomer]:
        self._call("list_customers")
        return [
            _provider_customer(customer)
            for customer in self.customers.values()
            if not customer.deleted and customer.metadata.get("tally_app_id") == app_id
        ]

    # payment methods ---------------------------------------------------------------------

    def attach_payment_method(self, customer_id: str, payment_method: str) -> PaymentMethodInfo:
        self._call("attach_payment_method")
        customer = self._customer(customer_id)
        card = self._card(payment_method)
        if card.number == REFUSED_CARD:
            raise ProviderRefused("Your card was declined.")
        if card.customer_id not in (None, customer_id):
            raise ProviderRefused(f"The payment method {card.id} belongs to another customer.")
        card.customer_id = customer_id
        customer.default_payment_method = card.id
        return _card_info(card, default=True)

    def list_payment_methods(self, customer_id: str) -> list[PaymentMethodInfo]:
        self._call("list_payment_methods")
        customer = self._customer(customer_id)
        return [
            _card_info(card, default=card.id == customer.default_payment_method)
            for card in self.cards.values()
            if card.customer_id == customer_id
        ]

    # catalog -----------------------------------------------------------------------------

    def sync_price(self, price: PlanPrice, product_id: str | None) -> ProviderPrice:
        self._call("sync_price")
        if product_id is None:
            product_id = self._once(f"tally-product-{price.app_id}-{price.plan_key}", "prod")
            self.products[product_id] = {"name": price.name, "active": True}
        elif product_id not in self.products:
            raise ProviderRefused(f"No such product: '{product_id}'")
        price_key = f"tally-price-{price.app_id}-{price.plan_key}-{price.version}"
        price_id = self._once(price_key, "price")
        metadata = _price_metadata(price)
        self.prices.setdefault(price_id, FakePrice(price_id, product_id, price, metadata))
        return ProviderPrice(product_id=product_id, price_id=price_id)

    def deactivate_prices(self, product_id: str, price_ids: list[str]) -> None:
        self._call("deactivate_prices")
        if product_id not in self.products:
            raise ProviderRefused(f"No such product: '{product_id}'")
        for price_id in price_ids:
            self._price(price_id).active = False
        self.products[product_id]["active"] = False

    # sessions ----------------------------------------------------------------------------

    def create_checkout_session(
        self,
        customer_id: str,
        price_id: str,
        success_url: str,
        cancel_url: str,
        metadata: dict[str, str],
        trial_days: int,
    ) -> str:
        self._call("create_checkout_session")
        self._customer(customer_id)
        self._active_price(price_id)
        if trial_days < 1:
            raise ProviderRefused("trial_period_days must be at least 1.")
        session_id = self._new_id("cs")
        url = f"https://checkout.stripe.test/c/{session_id}"
        self.checkout_sessions[session_id] = FakeSession(
            session_id, url, customer_id, price_id, dict(metadata), trial_days
        )
        return url

    def create_portal_session(self, customer_id: str, return_url: str) -> str:
        self._call("create_portal_session")
        self._customer(customer_id)
        session_id = self._new_id("bps")
        url = f"https://billing.stripe.test/p/session/{session_id}"
        self.portal_sessions[session_id] = FakeSession(
            session_id, url, customer_id, return_url=return_url
        )
        return url

    # subscriptions -----------------------------------------------------------------------

    def create_subscription(
        self, customer_id: str, price_id: str, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        self._call("create_subscription")
        self._customer(customer_id)
        price = self._active_price(price_id)
        known = self._idempotent.get(idempotency_key)
        if known:
            return known
        subscription = FakeSubscription(self._new_id("sub"), customer_id, price_id, dict(metadata))
        self.subscriptions[subscription.id] = subscription
        self._idempotent[idempotency_key] = subscription.id
        self._void_first_invoice(customer_id, price.price)
        return subscription.id

    def _void_first_invoice(self, customer_id: str, price: PlanPrice) -> None:
        """Stripe's own first invoice of the mirror, voided as the gateway does."""
        invoice_id = self._new_id("in")
        self.invoices[invoice_id] = FakeInvoice(
            invoice_id, customer_id, price.amount, price.currency.upper(), {}, "void"
        )

    def update_subscription(
        self, subscription_id: str, *, price_id: str | None, cancel_at_period_end: bool
    ) -> None:
        self._call("update_subscription")
        subscription = self._live_subscription(subscription_id)
        if price_id is not None:
            self._active_price(price_id)
            subscription.price_id = price_id
        subscription.cancel_at_period_end = cancel_at_period_end

    def cancel_subscription(self, subscription_id: str) -> None:
        self._call("cancel_subscription")
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            raise ProviderRefused(f"No such subscription: '{subscription_id}'")
        subscription.status = "canceled"  # canceling twice is done, not refused

    def list_subscriptions(self, customer_id: str) -> list[ProviderSubscription]:
        self._call("list_subscriptions")
        self._customer(customer_id)
        return [
            _provider_subscription(subscription)
            for subscription in self.subscriptions.values()
            if subscription.customer_id == customer_id
        ]

    # collection --------------------------------------------------------------------------

    def push_invoice(self, customer_id: str, invoice: InvoiceToCollect) -> str:
        self._call("push_invoice")
        self._customer(customer_id)
        total = sum(item.amount for item in invoice.items)
        if total != invoice.amount_due:
            raise ProviderRefused(
                f"the provider's invoice total {total} is not the amount due "
                f"{invoice.amount_due} of {invoice.number}"
            )
        invoice_id = self._once(invoice.idempotency_key, "in")
        if invoice_id not in self.invoices:
            status: InvoiceStatus = "paid" if invoice.amount_due == 0 else "open"
            metadata = _invoice_metadata(invoice)
            self.invoices[invoice_id] = FakeInvoice(
                invoice_id,
                customer_id,
                invoice.amount_due,
                invoice.currency.upper(),
                metadata,
                status,
            )
        return invoice_id

    def charge_invoice(self, provider_invoice_id: str) -> ChargeOutcome:
        self._call("charge_invoice")
        invoice = self._invoice(provider_invoice_id)
        if invoice.status == "paid":
            return ChargeOutcome(paid=True)
        if invoice.status != "open":
            raise ProviderRefused(f"You cannot pay an invoice that is {invoice.status}.")
        invoice.attempts += 1
        failure = self._charge_failure(self.customers[invoice.customer_id])
        if failure:
            return ChargeOutcome(paid=False, reason=failure)
        invoice.status, invoice.amount_paid = "paid", invoice.amount_due
        return ChargeOutcome(paid=True)

    def void_invoice(self, provider_invoice_id: str) -> None:
        self._call("void_invoice")
        invoice = self._invoice(provider_invoice_id)
        if invoice.status == "paid":
            raise ProviderRefused("You cannot void an invoice that is paid.")
        invoice.status = "void"

    def mark_invoice_paid(self, provider_invoice_id: str) -> None:
        self._call("mark_invoice_paid")
        invoice = self._invoice(provider_invoice_id)
        if invoice.status == "void":
            raise ProviderRefused("You cannot pay an invoice that is void.")
        invoice.status, invoice.amount_paid = "paid", invoice.amount_due  # as paid_out_of_band

    def get_invoice(self, provider_invoice_id: str) -> ProviderInvoice | None:
        self._call("get_invoice")
        invoice = self.invoices.get(provider_invoice_id)
        return _provider_invoice(invoice) if invoice else None

    def list_invoices(self, customer_id: str) -> list[ProviderInvoice]:
        self._call("list_invoices")
        self._customer(customer_id)
        return [
            _provider_invoice(invoice)
            for invoice in self.invoices.values()
            if invoice.customer_id == customer_id
        ]

    # internals ---------------------------------------------------------------------------

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.unavailable:
            raise ProviderUnavailable(f"{name}: the payment provider is unavailable (fake)")

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_fake_{next(self._counter)}"

    def _once(self, idempotency_key: str, prefix: str) -> str:
        """The id a create with this idempotency key made, or a new one."""
        return self._idempotent.setdefault(idempotency_key, self._new_id(prefix))

    def _customer(self, customer_id: str) -> FakeCustomer:
        customer = self.customers.get(customer_id)
        if customer is None or customer.deleted:
            raise ProviderRefused(f"No such customer: '{customer_id}'")
        return customer

    def _card(self, payment_method: str) -> FakeCard:
        if payment_method in TEST_TOKENS:
            return self.cards[self.make_card(TEST_TOKENS[payment_method])]
        card = self.cards.get(payment_method)
        if card is None:
            raise ProviderRefused(f"No such PaymentMethod: '{payment_method}'")
        return card

    def _price(self, price_id: str) -> FakePrice:
        price = self.prices.get(price_id)
        if price is None:
            raise ProviderRefused(f"No such price: '{price_id}'")
        return price

    def _active_price(self, price_id: str) -> FakePrice:
        price = self._price(price_id)
        if not price.active:
            raise ProviderRefused(f"The price specified is inactive: '{price_id}'")
        return price

    def _live_subscription(self, subscription_id: str) -> FakeSubscription:
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            raise ProviderRefused(f"No such subscription: '{subscription_id}'")
        if subscription.status == "canceled":
            raise ProviderRefused("A canceled subscription can only update its metadata.")
        return subscription

    def _invoice(self, invoice_id: str) -> FakeInvoice:
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise ProviderRefused(f"No such invoice: '{invoice_id}'")
        return invoice

    def _charge_failure(self, customer: FakeCustomer) -> str | None:
        if self._charge_failures:
            return self._charge_failures.pop(0)
        if customer.default_payment_method is None and not customer.deleted:
            on_file = [c.id for c in self.cards.values() if c.customer_id == customer.id]
            customer.default_payment_method = on_file[-1] if on_file else None
        if customer.default_payment_method is None or customer.deleted:
            return NO_PAYMENT_METHOD
        if customer.default_payment_method in self.declining:
            return DECLINE_REASON
        return None


def _customer_key(details: CustomerDetails) -> str:
    """Same tenant and same details: the same customer (the gateway's idempotency key)."""
    digest = hashlib.sha256(details.digest().encode()).hexdigest()[:16]
    return f"tally-customer-{details.app_id}-{details.tenant_id}-{digest}"


def _provider_customer(customer: FakeCustomer) -> ProviderCustomer:
    details = customer.details
    return ProviderCustomer(
        id=customer.id,
        email=details.email,
        name=details.name,
        country=details.country,
        metadata=dict(customer.metadata),
    )


def _card_info(card: FakeCard, *, default: bool) -> PaymentMethodInfo:
    return PaymentMethodInfo(
        id=card.id,
        type="card",
        brand="visa",
        last4=card.number[-4:],
        exp_month=12,
        exp_year=2034,
        default=default,
    )


def _price_metadata(price: PlanPrice) -> dict[str, str]:
    return {
        "tally_app_id": price.app_id,
        "tally_plan_key": price.plan_key,
        "tally_plan_version": str(price.version),
    }


def _provider_subscription(subscription: FakeSubscription) -> ProviderSubscription:
    return ProviderSubscription(
        id=subscription.id,
        customer_id=subscription.customer_id,
        status=subscription.status,
        price_id=subscription.price_id,
        cancel_at_period_end=subscription.cancel_at_period_end,
        metadata=dict(subscription.metadata),
    )


def _invoice_metadata(invoice: InvoiceToCollect) -> dict[str, str]:
    return {
        "tally_app_id": invoice.app_id,
        "tally_tenant_id": invoice.tenant_id,
        "tally_invoice_id": invoice.invoice_id,
        "tally_invoice_number": invoice.number,
    }


def _provider_invoice(invoice: FakeInvoice) -> ProviderInvoice:
    return ProviderInvoice(
        id=invoice.id,
        customer_id=invoice.customer_id,
        status=invoice.status,
        amount_due=invoice.amount_due,
        amount_paid=invoice.amount_paid,
        currency=invoice.currency,
        metadata=dict(invoice.metadata),
    )
