"""The PaymentProvider port on Stripe, through the official SDK's StripeClient.

Every object Tally creates carries metadata `tally_app_id` (and `tally_tenant_id` where a
tenant owns it; products and prices belong to an app), and every create sends an idempotency
key made from Tally's ids, so a retried create makes nothing twice:

- customers: `tally-customer-<app>-<tenant>-<digest of the details>`. When Stripe replays a
  key whose customer was deleted since, a new customer is made under a key naming the deleted
  one, so a repair after a deletion gets a live customer.
- products `tally-product-<app>-<plan>`, prices `tally-price-<app>-<plan>-v<version>`,
  subscriptions the caller's key, invoices `tally-invoice-<invoice id>` (items `...-item-<n>`).

Tax ids: name, email and country are the customer; the tax id goes through the customer's
tax ID API as a second step (`adapters/stripe/tax_ids.py` picks its type). A tax id Stripe
refuses (an unknown format, a type the account cannot use) or one of a country with no known
type is skipped and logged, not raised: Tally computes tax itself, and a refusal of the tax id
must not leave a tenant without a customer. An outage in that step is raised as usual.

The subscription mirror never collects: it is made with `collection_method=send_invoice`
(so nothing is charged when it starts), the first invoice Stripe makes for it is voided, and
`pause_collection[behavior]=void` voids every later one. Tally charges its own invoices,
pushed with `push_invoice` and paid with `charge_invoice`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import stripe
import structlog

from adapters.settings import Settings
from adapters.stripe.client import is_missing, make_client, replayed, translate, translated
from adapters.stripe.tax_ids import compact, tax_id_type
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
)

log = structlog.get_logger(__name__)

PAGE = 100
MIRROR_DAYS_UNTIL_DUE = 30  # required with send_invoice; the mirror's invoices are voided
MAX_REPLACEMENTS = 5  # customers deleted and made again under one set of details
NO_PAYMENT_METHOD = "no_payment_method: the customer has no default payment method"
ENDED = ("canceled", "incomplete_expired")


class StripeGateway:
    """PaymentProvider on Stripe: customers, payment methods, catalog, sessions, the
    subscription mirror and the collection of Tally's invoices."""

    def __init__(self, api_key: str, api_base: str | None = None, timeout: float = 20.0) -> None:
        self._v1 = make_client(api_key, api_base, timeout).v1

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeGateway | None:
        if not settings.stripe_api_key:
            return None
        return cls(
            settings.stripe_api_key, settings.stripe_api_base, settings.stripe_timeout_seconds
        )

    # customers ---------------------------------------------------------------------------

    def create_customer(self, details: CustomerDetails) -> str:
        key = customer_key(details)
        for _ in range(MAX_REPLACEMENTS):
            with translated():
                customer = self._v1.customers.create(
                    customer_params(details), options={"idempotency_key": key}
                )
            if not (replayed(customer) and self.get_customer(customer.id) is None):
                break
            key = f"{customer_key(details)}-after-{customer.id}"
        if details.tax_id:
            self._set_tax_id(customer.id, details)
        return customer.id

    def update_customer(self, customer_id: str, details: CustomerDetails) -> None:
        params = customer_params(details)
        with translated():
            self._v1.customers.update(
                customer_id,
                {"name": params["name"], "email": params["email"], "address": params["address"]},
            )
        self._set_tax_id(customer_id, details)

    def get_customer(self, customer_id: str) -> ProviderCustomer | None:
        try:
            customer = self._v1.customers.retrieve(customer_id)
        except stripe.StripeError as error:
            if is_missing(error):
                return None
            raise translate(error) from error
        return None if customer.to_dict().get("deleted") else provider_customer(customer)

    def list_customers(self, app_id: str) -> list[ProviderCustomer]:
        """The app's customers: Stripe's search by metadata (not a walk through the whole
        account), or the full list filtered here where search is missing (localstripe)."""
        with translated():
            try:
                query = {"query": f"metadata['tally_app_id']:'{app_id}'", "limit": PAGE}
                listed: Any = self._v1.customers.search(query).auto_paging_iter()  # type: ignore[arg-type]
                found = list(listed)
            except stripe.InvalidRequestError as error:
                if error.http_status not in (400, 404):
                    raise
                found = list(self._v1.customers.list({"limit": PAGE}).auto_paging_iter())
            return [
                provider_customer(customer)
                for customer in found
                if customer.to_dict().get("metadata", {}).get("tally_app_id") == app_id
            ]

    def _set_tax_id(self, customer_id: str, details: CustomerDetails) -> None:
        """The customer's tax ids become the tenant's one (or none); a refusal is logged."""
        wanted = _tax_id(details)
        try:
            kept = self._drop_other_tax_ids(customer_id, wanted)
            if wanted and not kept:
                kind, value = wanted
                self._v1.customers.tax_ids.create(customer_id, {"type": kind, "value": value})
        except stripe.StripeError as error:
            translated_error = translate(error)
            if not isinstance(translated_error, ProviderRefused):
                raise translated_error from error
            log.warning("stripe_tax_id_skipped", customer_id=customer_id, reason=str(error))
        if details.tax_id and wanted is None:
            log.warning("stripe_tax_id_skipped", customer_id=customer_id, reason="no type known")

    def _drop_other_tax_ids(self, customer_id: str, wanted: tuple[str, str] | None) -> bool:
        """Delete the customer's tax ids other than `wanted`; True when `wanted` is there."""
        kept = False
        for tax_id in self._v1.customers.tax_ids.list(customer_id).auto_paging_iter():
            if wanted and (tax_id.type, tax_id.value) == wanted:
                kept = True
            else:
                self._v1.customers.tax_ids.delete(customer_id, tax_id.id)
        return kept

    # payment methods ---------------------------------------------------------------------

    def attach_payment_method(self, customer_id: str, payment_method: str) -> PaymentMethodInfo:
        with translated():
            # attach answers with the method's own id (a test token such as pm_card_visa
            # becomes a new payment method), which is the one to make the default
            method = self._v1.payment_methods.attach(payment_method, {"customer": customer_id})
            self._v1.customers.update(
                customer_id, {"invoice_settings": {"default_payment_method": method.id}}
            )
        return payment_method_info(method, default=True)

    def _adopt_card(self, customer_id: str) -> bool:
        """No default for invoices, but a card on file (Checkout saves the card as its
        subscription's default, not the customer's): the newest card becomes the default."""
        params = {"customer": customer_id, "type": "card", "limit": 1}
        cards = self._v1.payment_methods.list(params).data  # type: ignore[arg-type]
        if not cards:
            return False
        self._v1.customers.update(
            customer_id, {"invoice_settings": {"default_payment_method": cards[0].id}}
        )
        return True

    def list_payment_methods(self, customer_id: str) -> list[PaymentMethodInfo]:
        with translated():
            customer = self._v1.customers.retrieve(customer_id)
            params = {"customer": customer_id, "type": "card", "limit": PAGE}
            methods = self._v1.payment_methods.list(params).auto_paging_iter()  # type: ignore[arg-type]
            default = _default_payment_method(customer)
            return [payment_method_info(method, default=method.id == default) for method in methods]

    # catalog -----------------------------------------------------------------------------

    def sync_price(self, price: PlanPrice, product_id: str | None) -> ProviderPrice:
        with translated():
            product_id = product_id or self._create_product(price)
            created = self._v1.prices.create(
                {
                    "product": product_id,
                    "unit_amount": price.amount,
                    "currency": price.currency.lower(),
                    "recurring": {"interval": price.interval},
                    "nickname": f"{price.name} (version {price.version})",
                    "metadata": price_metadata(price),
                },
                options={"idempotency_key": price_key(price)},
            )
        return ProviderPrice(product_id=product_id, price_id=created.id)

    def _create_product(self, price: PlanPrice) -> str:
        metadata = {"tally_app_id": price.app_id, "tally_plan_key": price.plan_key}
        product = self._v1.products.create(
            {"name": price.name, "metadata": metadata},
            options={"idempotency_key": f"tally-product-{price.app_id}-{price.plan_key}"},
        )
        return product.id

    def deactivate_prices(self, product_id: str, price_ids: list[str]) -> None:
        with translated():
            self._v1.products.retrieve(product_id)  # refused for an unknown product first
            for price_id in price_ids:
                self._v1.prices.update(price_id, {"active": False})
            self._v1.products.update(product_id, {"active": False})

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
        with translated():
            session = self._v1.checkout.sessions.create(
                {
                    "mode": "subscription",
                    "customer": customer_id,
                    "line_items": [{"price": price_id, "quantity": 1}],
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                    "metadata": metadata,
                    "subscription_data": {"metadata": metadata, "trial_period_days": trial_days},
                }
            )
        return _url(session.url, "checkout session")

    def create_portal_session(self, customer_id: str, return_url: str) -> str:
        with translated():
            session = self._v1.billing_portal.sessions.create(
                {"customer": customer_id, "return_url": return_url}
            )
        return _url(session.url, "portal session")

    # subscriptions -----------------------------------------------------------------------

    def create_subscription(
        self, customer_id: str, price_id: str, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        with translated():
            subscription = self._v1.subscriptions.create(
                {
                    "customer": customer_id,
                    "items": [{"price": price_id}],
                    "metadata": metadata,
                    "collection_method": "send_invoice",
                    "days_until_due": MIRROR_DAYS_UNTIL_DUE,
                },
                options={"idempotency_key": idempotency_key},
            )
            self._void_first_invoice(subscription)
            self._v1.subscriptions.update(
                subscription.id, {"pause_collection": {"behavior": "void"}}
            )
        return subscription.id

    def _void_first_invoice(self, subscription: stripe.Subscription) -> None:
        """The invoice Stripe made when the mirror started is not Tally's: void it."""
        first = subscription.latest_invoice
        first_id = first if isinstance(first, str) else first.id if first else None
        if first_id is None:
            return
        invoice = self._v1.invoices.retrieve(first_id)
        if invoice.status == "draft":
            invoice = self._v1.invoices.finalize_invoice(first_id, {"auto_advance": False})
        if invoice.status == "open":
            self._v1.invoices.void_invoice(first_id)

    def update_subscription(
        self, subscription_id: str, *, price_id: str | None, cancel_at_period_end: bool
    ) -> None:
        with translated():
            subscription = self._v1.subscriptions.retrieve(subscription_id)
            params: dict[str, Any] = {
                "cancel_at_period_end": cancel_at_period_end,
                # also a subscription Checkout made: from now on Stripe never collects
                "pause_collection": {"behavior": "void"},
            }
            item = _single_item(subscription)
            if price_id is not None and _price_of(item) != price_id:
                params["items"] = [{"id": item["id"], "price": price_id}]
                params["proration_behavior"] = "none"  # Tally prorates on its own invoices
            self._v1.subscriptions.update(subscription_id, params)  # type: ignore[arg-type]

    def cancel_subscription(self, subscription_id: str) -> None:
        with translated():
            subscription = self._v1.subscriptions.retrieve(subscription_id)
            if subscription.status not in ENDED:  # canceling twice is done, not refused
                self._v1.subscriptions.cancel(subscription_id)

    def list_subscriptions(self, customer_id: str) -> list[ProviderSubscription]:
        with translated():
            params = {"customer": customer_id, "status": "all", "limit": PAGE}
            listed = self._v1.subscriptions.list(params).auto_paging_iter()  # type: ignore[arg-type]
            return [provider_subscription(subscription) for subscription in listed]

    # collection --------------------------------------------------------------------------

    def push_invoice(self, customer_id: str, invoice: InvoiceToCollect) -> str:
        key = invoice.idempotency_key
        with translated():
            draft = self._v1.invoices.create(
                {
                    "customer": customer_id,
                    "currency": invoice.currency.lower(),
                    "collection_method": "charge_automatically",
                    "auto_advance": False,
                    "pending_invoice_items_behavior": "exclude",
                    "description": f"Invoice {invoice.number}",
                    "metadata": invoice_metadata(invoice),
                },
                options={"idempotency_key": key},
            )
            if self._v1.invoices.retrieve(draft.id).status != "draft":
                return draft.id  # a retry of a push that finished
            self._add_items(customer_id, draft.id, invoice, key)
            self._check_total(draft.id, invoice)
            self._v1.invoices.finalize_invoice(draft.id, {"auto_advance": False})
        return draft.id

    def _add_items(
        self, customer_id: str, draft_id: str, invoice: InvoiceToCollect, key: str
    ) -> None:
        for number, item in enumerate(invoice.items):
            self._v1.invoice_items.create(
                {
                    "customer": customer_id,
                    "invoice": draft_id,
                    "amount": item.amount,
                    "currency": invoice.currency.lower(),
                    "description": item.description,
                    "metadata": {"tally_invoice_id": invoice.invoice_id},
                },
                options={"idempotency_key": f"{key}-item-{number}"},
            )

    def _check_total(self, draft_id: str, invoice: InvoiceToCollect) -> None:
        total = self._v1.invoices.retrieve(draft_id).total
        if total != invoice.amount_due:
            self._v1.invoices.delete(draft_id)
            raise ProviderRefused(
                f"the Stripe invoice total {total} is not the amount due {invoice.amount_due} "
                f"of invoice {invoice.number}; the draft was deleted"
            )

    def charge_invoice(self, provider_invoice_id: str) -> ChargeOutcome:
        with translated():
            invoice = self._v1.invoices.retrieve(provider_invoice_id)
            if invoice.status == "paid":
                return ChargeOutcome(paid=True)
            if invoice.status != "open":
                raise ProviderRefused(f"You cannot pay an invoice that is {invoice.status}.")
            customer = self._v1.customers.retrieve(_id_of(invoice.customer))
            if _default_payment_method(customer) is None and not self._adopt_card(customer.id):
                return ChargeOutcome(paid=False, reason=NO_PAYMENT_METHOD)
        return self._pay(provider_invoice_id)

    def _pay(self, invoice_id: str) -> ChargeOutcome:
        try:
            paid = self._v1.invoices.pay(invoice_id)
        except stripe.CardError as declined:
            return ChargeOutcome(paid=False, reason=decline_reason(declined))
        except stripe.StripeError as error:
            raise translate(error) from error
        if paid.status == "paid":
            self._tag_payment(paid)
            return ChargeOutcome(paid=True)
        return ChargeOutcome(paid=False, reason=f"Stripe left the invoice {paid.status}")

    def _tag_payment(self, invoice: Any) -> None:
        """Tally's ids on the invoice's PaymentIntent and charge too, so a refund's
        `charge.refunded` names its app and invoice. The PaymentIntent is the invoice's
        `payment_intent` (API versions before 2025-03-31) or its invoice payment (since).
        Best effort: a refusal is logged and the payment stands."""
        ids: dict[str, str] = invoice.metadata.to_dict() if invoice.metadata else {}
        try:
            for intent_id in self._intents_of(invoice):
                intent = self._v1.payment_intents.update(intent_id, {"metadata": ids})
                charge = getattr(intent, "latest_charge", None)
                if charge:
                    self._v1.charges.update(_id_of(charge), {"metadata": ids})
        except stripe.StripeError as error:
            log.warning("stripe_tag_payment_failed", invoice=invoice.id, error=str(error))

    def _intents_of(self, invoice: Any) -> list[str]:
        intent = getattr(invoice, "payment_intent", None)
        if intent:
            return [_id_of(intent)]
        payments = self._v1.invoice_payments.list({"invoice": invoice.id, "limit": 10})
        found = (getattr(p.payment, "payment_intent", None) for p in payments.data)
        return [_id_of(intent) for intent in found if intent]

    def void_invoice(self, provider_invoice_id: str) -> None:
        with translated():
            invoice = self._v1.invoices.retrieve(provider_invoice_id)
            if invoice.status == "draft":
                self._v1.invoices.delete(provider_invoice_id)
            elif invoice.status != "void":
                self._v1.invoices.void_invoice(provider_invoice_id)

    def mark_invoice_paid(self, provider_invoice_id: str) -> None:
        with translated():
            invoice = self._v1.invoices.retrieve(provider_invoice_id)
            if invoice.status != "paid":
                self._v1.invoices.pay(provider_invoice_id, {"paid_out_of_band": True})

    def get_invoice(self, provider_invoice_id: str) -> ProviderInvoice | None:
        try:
            invoice = self._v1.invoices.retrieve(provider_invoice_id)
        except stripe.StripeError as error:
            if is_missing(error):
                return None
            raise translate(error) from error
        return provider_invoice(invoice)

    def list_invoices(self, customer_id: str) -> list[ProviderInvoice]:
        with translated():
            listed = self._v1.invoices.list({"customer": customer_id, "limit": PAGE})
            return [provider_invoice(invoice) for invoice in listed.auto_paging_iter()]


# requests ------------------------------------------------------------------------------


def customer_key(details: CustomerDetails) -> str:
    """The same tenant with the same details is the same customer; new details, a new key
    (Stripe refuses a key used again with other parameters)."""
    digest = hashlib.sha256(details.digest().encode()).hexdigest()[:16]
    return f"tally-customer-{details.app_id}-{details.tenant_id}-{digest}"


def customer_params(details: CustomerDetails) -> stripe.params.CustomerCreateParams:
    return {
        "name": details.name,
        "email": details.email,
        "address": {"country": details.country.upper()},
        "metadata": {"tally_app_id": details.app_id, "tally_tenant_id": details.tenant_id},
    }


def _tax_id(details: CustomerDetails) -> tuple[str, str] | None:
    if not details.tax_id:
        return None
    kind = tax_id_type(details.tax_id, details.country)
    if kind is None:
        return None
    return kind, compact(details.tax_id) if kind == "eu_vat" else details.tax_id


def price_key(price: PlanPrice) -> str:
    return f"tally-price-{price.app_id}-{price.plan_key}-v{price.version}"


def price_metadata(price: PlanPrice) -> dict[str, str]:
    return {
        "tally_app_id": price.app_id,
        "tally_plan_key": price.plan_key,
        "tally_plan_version": str(price.version),
    }


def invoice_metadata(invoice: InvoiceToCollect) -> dict[str, str]:
    return {
        "tally_app_id": invoice.app_id,
        "tally_tenant_id": invoice.tenant_id,
        "tally_invoice_id": invoice.invoice_id,
        "tally_invoice_number": invoice.number,
    }


# answers (plain dicts: a test server may leave out fields Stripe always sends) ------------


def provider_customer(customer: stripe.Customer) -> ProviderCustomer:
    data = customer.to_dict()
    return ProviderCustomer(
        id=customer.id,
        email=data.get("email"),
        name=data.get("name"),
        country=(data.get("address") or {}).get("country"),
        metadata=dict(data.get("metadata") or {}),
    )


def payment_method_info(method: stripe.PaymentMethod, *, default: bool) -> PaymentMethodInfo:
    card = method.to_dict().get("card") or {}
    return PaymentMethodInfo(
        id=method.id,
        type=method.type,
        brand=card.get("brand"),
        last4=card.get("last4"),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
        default=default,
    )


def provider_subscription(subscription: stripe.Subscription) -> ProviderSubscription:
    data = subscription.to_dict()
    items = data["items"]["data"]
    return ProviderSubscription(
        id=subscription.id,
        customer_id=_id_of(data["customer"]),
        status=data["status"],
        price_id=_price_of(items[0]) if items else None,
        cancel_at_period_end=bool(data.get("cancel_at_period_end")),
        metadata=dict(data.get("metadata") or {}),
    )


def provider_invoice(invoice: stripe.Invoice) -> ProviderInvoice:
    data = invoice.to_dict()
    return ProviderInvoice(
        id=data["id"],
        customer_id=_id_of(data["customer"]),
        status=_invoice_status(data["status"]),
        amount_due=data["amount_due"],
        amount_paid=data["amount_paid"],
        currency=data["currency"].upper(),
        metadata=dict(data.get("metadata") or {}),
    )


def _invoice_status(status: str) -> InvoiceStatus:
    known: tuple[InvoiceStatus, ...] = ("draft", "open", "paid", "void", "uncollectible")
    for candidate in known:
        if status == candidate:
            return candidate
    raise ProviderRefused(f"Stripe answered an invoice status Tally does not know: {status}")


def decline_reason(declined: stripe.CardError) -> str:
    """`<decline code or error code>: <Stripe's message>`, e.g. `card_declined: Your card was
    declined.`"""
    code = (declined.error.decline_code if declined.error else None) or declined.code
    return f"{code or 'declined'}: {declined.user_message or 'the charge was declined'}"


def _default_payment_method(customer: stripe.Customer) -> str | None:
    """The customer's default for invoices (None for a deleted customer)."""
    data = customer.to_dict()
    method = (data.get("invoice_settings") or {}).get("default_payment_method")
    method = method or data.get("default_source")
    return _id_of(method) if method and not data.get("deleted") else None


def _single_item(subscription: stripe.Subscription) -> dict[str, Any]:
    items: list[dict[str, Any]] = subscription.to_dict()["items"]["data"]
    if len(items) != 1:
        raise ProviderRefused(f"subscription {subscription.id} has {len(items)} items, not 1")
    return items[0]


def _price_of(item: dict[str, Any]) -> str | None:
    price = item.get("price")
    return _id_of(price) if price else None


def _id_of(value: Any) -> str:
    """An expandable field's id, whether Stripe sent the id or the object."""
    return value if isinstance(value, str) else str(value["id"])


def _url(url: str | None, what: str) -> str:
    if not url:
        raise ProviderRefused(f"Stripe returned no URL for the {what}")
    return url
