"""One contract for the PaymentProvider port, run on the in-memory fake and on the real
Stripe gateway against a test Stripe server (localstripe, patched: tests/stripe_server.py).

Each test works in an app id of its own, so the session's one server needs no cleaning.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import pytest
import stripe

from adapters.settings import Settings
from adapters.stripe.client import translate
from adapters.stripe.gateway import StripeGateway
from commands.payments.ports import (
    CustomerDetails,
    InvoiceItem,
    InvoiceToCollect,
    PaymentProvider,
    PlanPrice,
    ProviderRefused,
    ProviderUnavailable,
)
from tests.fake_payment_provider import FakePaymentProvider
from tests.stripe_server import (
    API_KEY,
    DECLINING_CARD,
    GOOD_CARD,
    StripeTestKnobs,
    free_port,
    request,
)

SUCCESS, CANCEL = "https://app.example/welcome", "https://app.example/pricing"


class Knobs(Protocol):
    def make_card(self, number: str = GOOD_CARD) -> str: ...

    def attach_card_only(self, customer_id: str, payment_method: str) -> None: ...

    def pay_outside(self, invoice_id: str) -> None: ...

    def void_outside(self, invoice_id: str) -> None: ...

    def delete_customer(self, customer_id: str) -> None: ...


@dataclass
class Side:
    provider: PaymentProvider
    knobs: Knobs
    offline: Callable[[], PaymentProvider]  # the same provider, its server not answering
    app_id: str


def _fake_side() -> Side:
    fake = FakePaymentProvider()

    def offline() -> PaymentProvider:
        fake.unavailable = True
        return fake

    return Side(fake, fake, offline, _new_app())


def _stripe_side(api_base: str) -> Side:
    def offline() -> PaymentProvider:
        return StripeGateway(API_KEY, f"http://127.0.0.1:{free_port()}", timeout=2.0)

    gateway = StripeGateway(API_KEY, api_base, timeout=10.0)
    return Side(gateway, StripeTestKnobs(api_base), offline, _new_app())


def _new_app() -> str:
    return f"app-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["fake", "stripe"])
def side(request: pytest.FixtureRequest) -> Side:
    if request.param == "fake":
        return _fake_side()
    return _stripe_side(request.getfixturevalue("stripe_api"))


def test_the_fake_and_the_gateway_are_payment_providers() -> None:
    providers: list[PaymentProvider] = [FakePaymentProvider(), StripeGateway(API_KEY)]
    assert len(providers) == 2  # mypy checks the assignment against the port


# customers -------------------------------------------------------------------------------


def _details(side: Side, tenant: str = "t-1", **changes: str) -> CustomerDetails:
    fields = {"name": "Acme GmbH", "email": "billing@acme.example", "country": "DE"}
    return CustomerDetails(app_id=side.app_id, tenant_id=tenant, **(fields | changes))


def test_a_customer_is_created_read_and_updated(side: Side) -> None:
    customer_id = side.provider.create_customer(_details(side))
    customer = side.provider.get_customer(customer_id)
    assert customer is not None
    assert (customer.name, customer.email, customer.country) == (
        "Acme GmbH",
        "billing@acme.example",
        "DE",
    )
    assert customer.metadata == {"tally_app_id": side.app_id, "tally_tenant_id": "t-1"}

    side.provider.update_customer(customer_id, _details(side, name="Acme SE", country="AT"))
    updated = side.provider.get_customer(customer_id)
    assert updated is not None
    assert (updated.name, updated.country) == ("Acme SE", "AT")


def test_creating_the_same_customer_again_makes_no_second_one(side: Side) -> None:
    first = side.provider.create_customer(_details(side))
    assert side.provider.create_customer(_details(side)) == first
    assert [c.id for c in side.provider.list_customers(side.app_id)] == [first]


def test_customers_are_listed_per_app(side: Side) -> None:
    mine = {side.provider.create_customer(_details(side, tenant)) for tenant in ("t-1", "t-2")}
    other = CustomerDetails("another-" + side.app_id, "t-1", "Other", "o@x.example", "FR")
    theirs = side.provider.create_customer(other)
    assert {c.id for c in side.provider.list_customers(side.app_id)} == mine
    assert [c.id for c in side.provider.list_customers(other.app_id)] == [theirs]


def test_a_deleted_customer_is_gone_and_made_again_on_create(side: Side) -> None:
    deleted = side.provider.create_customer(_details(side))
    side.knobs.delete_customer(deleted)
    assert side.provider.get_customer(deleted) is None
    assert side.provider.list_customers(side.app_id) == []
    again = side.provider.create_customer(_details(side))
    assert again != deleted
    assert side.provider.get_customer(again) is not None


@pytest.mark.parametrize("tax_id", ["DE 123 456 789", "not-a-known-format"])
def test_a_customer_with_a_tax_id_is_created_even_when_the_tax_id_is_refused(
    side: Side, tax_id: str
) -> None:
    customer_id = side.provider.create_customer(_details(side, tax_id=tax_id))
    assert side.provider.get_customer(customer_id) is not None
    side.provider.update_customer(customer_id, _details(side, tax_id="ATU12345678"))


def test_an_unknown_customer_is_refused_or_none(side: Side) -> None:
    missing = "cus_missing0000"
    assert side.provider.get_customer(missing) is None
    with pytest.raises(ProviderRefused):
        side.provider.update_customer(missing, _details(side))
    with pytest.raises(ProviderRefused):
        side.provider.list_payment_methods(missing)
    with pytest.raises(ProviderRefused):
        side.provider.create_portal_session(missing, SUCCESS)


# payment methods -------------------------------------------------------------------------


def test_the_last_attached_card_is_the_default(side: Side) -> None:
    customer_id = side.provider.create_customer(_details(side))
    first = side.provider.attach_payment_method(customer_id, side.knobs.make_card())
    assert (first.type, first.last4, first.default) == ("card", "4242", True)
    assert first.brand == "visa" and first.exp_month and first.exp_year
    second = side.provider.attach_payment_method(customer_id, side.knobs.make_card(DECLINING_CARD))
    listed = {method.id: method for method in side.provider.list_payment_methods(customer_id)}
    assert set(listed) == {first.id, second.id}
    assert [m.id for m in listed.values() if m.default] == [second.id]
    assert listed[second.id].last4 == "0341"


def test_an_unknown_payment_method_is_refused(side: Side) -> None:
    customer_id = side.provider.create_customer(_details(side))
    with pytest.raises(ProviderRefused):
        side.provider.attach_payment_method(customer_id, "pm_missing0000")


# catalog and sessions --------------------------------------------------------------------


def _plan(side: Side, version: int = 1, amount: int = 4900) -> PlanPrice:
    return PlanPrice(side.app_id, "pro", version, "Pro", amount, "EUR", "month")


def test_a_plan_is_one_product_with_a_price_per_version(side: Side) -> None:
    first = side.provider.sync_price(_plan(side), None)
    second = side.provider.sync_price(_plan(side, 2, 5900), first.product_id)
    assert second.product_id == first.product_id
    assert second.price_id != first.price_id
    assert side.provider.sync_price(_plan(side), first.product_id) == first  # a retry


def test_deactivated_prices_are_no_longer_sold(side: Side) -> None:
    customer_id = side.provider.create_customer(_details(side))
    price = side.provider.sync_price(_plan(side), None)
    side.provider.deactivate_prices(price.product_id, [price.price_id])
    with pytest.raises(ProviderRefused):
        side.provider.create_subscription(customer_id, price.price_id, {}, "k-" + side.app_id)
    with pytest.raises(ProviderRefused):
        side.provider.create_checkout_session(customer_id, price.price_id, SUCCESS, CANCEL, {}, 7)


def test_checkout_and_portal_sessions_have_urls(side: Side) -> None:
    customer_id = side.provider.create_customer(_details(side))
    price = side.provider.sync_price(_plan(side), None)
    metadata = {"tally_app_id": side.app_id, "tally_tenant_id": "t-1"}
    urls = {
        side.provider.create_checkout_session(
            customer_id, price.price_id, SUCCESS, CANCEL, metadata, 14
        )
        for _ in range(2)
    }
    assert len(urls) == 2 and all(url.startswith("https://checkout.stripe.") for url in urls)
    portal = side.provider.create_portal_session(customer_id, SUCCESS)
    assert portal.startswith("https://billing.stripe.")


def test_a_checkout_session_needs_a_known_price(side: Side) -> None:
    customer_id = side.provider.create_customer(_details(side))
    with pytest.raises(ProviderRefused):
        side.provider.create_checkout_session(customer_id, "price_missing", SUCCESS, CANCEL, {}, 7)


# the subscription mirror -----------------------------------------------------------------


def _mirror(side: Side) -> tuple[str, str, str]:
    """(customer, price of version 1, subscription) with a card on file."""
    customer_id = side.provider.create_customer(_details(side))
    side.provider.attach_payment_method(customer_id, side.knobs.make_card())
    price = side.provider.sync_price(_plan(side), None)
    metadata = {"tally_app_id": side.app_id, "tally_tenant_id": "t-1", "tally_plan_key": "pro"}
    key = f"tally-subscription-{side.app_id}"
    subscription_id = side.provider.create_subscription(customer_id, price.price_id, metadata, key)
    assert side.provider.create_subscription(customer_id, price.price_id, metadata, key) == (
        subscription_id
    )
    return customer_id, price.price_id, subscription_id


def test_a_mirrored_subscription_follows_plan_changes_and_cancels(side: Side) -> None:
    customer_id, price_id, subscription_id = _mirror(side)
    [mirror] = side.provider.list_subscriptions(customer_id)
    assert (mirror.id, mirror.status, mirror.price_id) == (subscription_id, "active", price_id)
    assert not mirror.cancel_at_period_end
    assert mirror.metadata["tally_app_id"] == side.app_id

    newer = side.provider.sync_price(_plan(side, 2, 9900), None)
    side.provider.update_subscription(
        subscription_id, price_id=newer.price_id, cancel_at_period_end=True
    )
    [moved] = side.provider.list_subscriptions(customer_id)
    assert (moved.price_id, moved.cancel_at_period_end) == (newer.price_id, True)

    side.provider.cancel_subscription(subscription_id)
    side.provider.cancel_subscription(subscription_id)  # again: already done
    [ended] = side.provider.list_subscriptions(customer_id)
    assert ended.status == "canceled"
    with pytest.raises(ProviderRefused):
        side.provider.update_subscription(
            subscription_id, price_id=None, cancel_at_period_end=False
        )


def test_the_mirror_collects_nothing(side: Side) -> None:
    customer_id, _, _ = _mirror(side)
    invoices = side.provider.list_invoices(customer_id)
    assert all(invoice.status == "void" and invoice.amount_paid == 0 for invoice in invoices)
    assert all("tally_invoice_id" not in invoice.metadata for invoice in invoices)


# collection ------------------------------------------------------------------------------


def _invoice(side: Side, amount_due: int = 4760, number: str = "INV-0001") -> InvoiceToCollect:
    items = (InvoiceItem("Pro plan", 4900), InvoiceItem("Discounts", -900), InvoiceItem("Tax", 760))
    return InvoiceToCollect(
        app_id=side.app_id,
        tenant_id="t-1",
        invoice_id=str(uuid.uuid4()),
        number=number,
        currency="EUR",
        amount_due=amount_due,
        items=items,
    )


def _customer_with_card(side: Side, number: str | None = GOOD_CARD) -> str:
    customer_id = side.provider.create_customer(_details(side))
    if number is not None:
        side.provider.attach_payment_method(customer_id, side.knobs.make_card(number))
    return customer_id


def test_a_pushed_invoice_is_open_then_paid_by_its_charge(side: Side) -> None:
    customer_id = _customer_with_card(side)
    invoice = _invoice(side)
    provider_id = side.provider.push_invoice(customer_id, invoice)
    assert side.provider.push_invoice(customer_id, invoice) == provider_id  # a retry
    pushed = side.provider.get_invoice(provider_id)
    assert pushed is not None
    assert (pushed.status, pushed.amount_due, pushed.amount_paid) == ("open", 4760, 0)
    assert (pushed.customer_id, pushed.currency) == (customer_id, "EUR")
    assert pushed.metadata == {
        "tally_app_id": side.app_id,
        "tally_tenant_id": "t-1",
        "tally_invoice_id": invoice.invoice_id,
        "tally_invoice_number": "INV-0001",
    }

    outcome = side.provider.charge_invoice(provider_id)
    assert (outcome.paid, outcome.reason) == (True, None)
    paid = side.provider.get_invoice(provider_id)
    assert paid is not None and (paid.status, paid.amount_paid) == ("paid", 4760)
    assert side.provider.charge_invoice(provider_id).paid  # charging a paid invoice again


def test_an_invoice_whose_items_miss_the_amount_due_is_refused(side: Side) -> None:
    customer_id = _customer_with_card(side)
    with pytest.raises(ProviderRefused):
        side.provider.push_invoice(customer_id, _invoice(side, amount_due=5000))
    assert side.provider.list_invoices(customer_id) == []


def test_a_declined_card_fails_the_charge_with_the_reason(side: Side) -> None:
    customer_id = _customer_with_card(side, DECLINING_CARD)
    provider_id = side.provider.push_invoice(customer_id, _invoice(side))
    for _ in range(2):  # a dunning retry is declined again
        outcome = side.provider.charge_invoice(provider_id)
        assert not outcome.paid
        assert outcome.reason is not None and "declined" in outcome.reason
    invoice = side.provider.get_invoice(provider_id)
    assert invoice is not None and invoice.status == "open"

    side.provider.attach_payment_method(customer_id, side.knobs.make_card())
    assert side.provider.charge_invoice(provider_id).paid


def test_a_card_on_file_without_a_default_is_used_and_becomes_the_default(side: Side) -> None:
    customer_id = _customer_with_card(side, None)
    card = side.knobs.make_card()
    side.knobs.attach_card_only(customer_id, card)  # as Checkout leaves it
    provider_id = side.provider.push_invoice(customer_id, _invoice(side))
    assert side.provider.charge_invoice(provider_id).paid
    (method,) = side.provider.list_payment_methods(customer_id)
    assert (method.id, method.default) == (card, True)


def test_a_customer_without_a_payment_method_fails_the_charge(side: Side) -> None:
    customer_id = _customer_with_card(side, None)
    provider_id = side.provider.push_invoice(customer_id, _invoice(side))
    outcome = side.provider.charge_invoice(provider_id)
    assert not outcome.paid and outcome.reason and "payment method" in outcome.reason


def test_invoices_paid_or_voided_outside_tally_read_so(side: Side) -> None:
    customer_id = _customer_with_card(side)
    paid_id = side.provider.push_invoice(customer_id, _invoice(side, number="INV-1"))
    void_id = side.provider.push_invoice(customer_id, _invoice(side, number="INV-2"))
    side.knobs.pay_outside(paid_id)
    side.knobs.void_outside(void_id)
    statuses = {i.id: i.status for i in side.provider.list_invoices(customer_id)}
    assert statuses == {paid_id: "paid", void_id: "void"}
    assert side.provider.charge_invoice(paid_id).paid
    with pytest.raises(ProviderRefused):
        side.provider.charge_invoice(void_id)


def test_tally_voids_and_marks_paid_at_the_provider_and_replaces_an_invoice(side: Side) -> None:
    customer_id = _customer_with_card(side, None)
    voided = side.provider.push_invoice(customer_id, _invoice(side, number="INV-3"))
    side.provider.void_invoice(voided)
    side.provider.void_invoice(voided)  # voiding twice is done, not refused
    invoice = _invoice(side, number="INV-4")
    marked = side.provider.push_invoice(customer_id, invoice)
    side.provider.mark_invoice_paid(marked)
    side.provider.mark_invoice_paid(marked)
    statuses = {i.id: (i.status, i.amount_paid) for i in side.provider.list_invoices(customer_id)}
    assert statuses == {voided: ("void", 0), marked: ("paid", 4760)}
    with pytest.raises(ProviderRefused):
        side.provider.void_invoice(marked)  # a paid invoice is not voided
    replacing = replace(invoice, replaces=marked)
    again = side.provider.push_invoice(customer_id, replacing)
    assert again != marked  # a new idempotency key: a new provider invoice
    assert side.provider.push_invoice(customer_id, replacing) == again


def test_an_unknown_invoice_is_none_or_refused(side: Side) -> None:
    assert side.provider.get_invoice("in_missing0000") is None
    with pytest.raises(ProviderRefused):
        side.provider.charge_invoice("in_missing0000")
    with pytest.raises(ProviderRefused):
        side.provider.push_invoice("cus_missing0000", _invoice(side))


# availability ----------------------------------------------------------------------------


def test_a_provider_that_does_not_answer_is_unavailable_within_seconds(side: Side) -> None:
    provider = side.offline()
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable):
        provider.create_customer(_details(side))
    with pytest.raises(ProviderUnavailable):
        provider.get_invoice("in_any")
    assert time.monotonic() - started < 10


# the gateway and the fake alone ----------------------------------------------------------


def test_the_gateway_is_made_from_settings_only_with_an_api_key(stripe_api: str) -> None:
    assert StripeGateway.from_settings(Settings()) is None
    gateway = StripeGateway.from_settings(
        Settings(stripe_api_key=API_KEY, stripe_api_base=stripe_api)
    )
    assert gateway is not None
    assert gateway.get_customer("cus_missing0000") is None


def test_the_gateway_sends_an_eu_vat_number_as_a_tax_id(stripe_api: str) -> None:
    side = _stripe_side(stripe_api)
    customer_id = side.provider.create_customer(_details(side, tax_id="DE 123 456 789"))
    listed = request(stripe_api, "GET", f"/v1/customers/{customer_id}/tax_ids")["data"]
    assert [(t["type"], t["value"]) for t in listed] == [("eu_vat", "DE123456789")]
    side.provider.update_customer(customer_id, replace(_details(side), tax_id=None))
    assert request(stripe_api, "GET", f"/v1/customers/{customer_id}/tax_ids")["data"] == []


def test_the_fake_fails_the_next_charge_when_told() -> None:
    side = _fake_side()
    fake = side.provider
    assert isinstance(fake, FakePaymentProvider)
    customer_id = _customer_with_card(side)
    provider_id = fake.push_invoice(customer_id, _invoice(side))
    fake.fail_next_charge("insufficient_funds: Your card has insufficient funds.")
    assert fake.charge_invoice(provider_id).reason == (
        "insufficient_funds: Your card has insufficient funds."
    )
    assert fake.charge_invoice(provider_id).paid
    assert fake.calls.count("charge_invoice") == 2


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (stripe.APIConnectionError("connection refused"), ProviderUnavailable),  # type: ignore[no-untyped-call]
        (stripe.RateLimitError("too many requests", http_status=429), ProviderUnavailable),
        (stripe.APIError("internal error", http_status=500), ProviderUnavailable),
        (stripe.APIError("in flight", http_status=409), ProviderUnavailable),
        (stripe.InvalidRequestError("No such customer", "id", http_status=404), ProviderRefused),  # type: ignore[no-untyped-call]
        (stripe.AuthenticationError("Invalid API Key", http_status=401), ProviderUnavailable),
        (stripe.CardError("Declined", None, "card_declined", http_status=402), ProviderRefused),  # type: ignore[no-untyped-call]
    ],
)
def test_stripe_errors_are_unavailable_or_refused(
    error: stripe.StripeError, kind: type[Exception]
) -> None:
    translated = translate(error)
    assert type(translated) is kind
    assert str(translated) == error.user_message
