"""The Stripe routes over HTTP (in process, the fake provider): checkout and portal sessions,
payment methods, the reconciliation report, their errors, and 503 without Stripe."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.bootstrap import System, bootstrap
from adapters.http.app import create_app
from adapters.settings import Settings
from commands.payments.ports import ProviderUnavailable
from domain.clock import SettableClock
from tests.factories import T0
from tests.fake_payment_provider import FakePaymentProvider
from tests.unit.http.support import Api, assert_error

PROFILE = {
    "name": "Tenant One",
    "email": "billing@t1.example",
    "country": "FR",
    "tax_status": "taxable",
    "timezone": "Europe/Paris",
    "currency": "EUR",
}
URLS = {"success_url": "https://app.example/ok", "cancel_url": "https://app.example/back"}


@pytest.fixture
def provider() -> FakePaymentProvider:
    return FakePaymentProvider()


def build(provider: FakePaymentProvider | None) -> System:
    return bootstrap(
        Settings(database_url="sqlite:///:memory:"),
        SettableClock(T0),
        deliver_in_process=False,
        payment_provider=provider,
    )


@pytest.fixture
def api(provider: FakePaymentProvider) -> Iterator[Api]:
    system = build(provider)
    with TestClient(create_app(system)) as client:
        yield Api(client, system, "acme")
    system.close()


def plan_and_profile(api: Api) -> None:
    plan = {"plan_key": "pro", "name": "Pro", "base_price": {"amount": 2900, "currency": "EUR"}}
    assert api.call("POST", "/v1/plans", json=plan).status_code == 201
    response = api.call("PUT", "/v1/tenants/t1/profile", json=PROFILE)
    assert response.status_code == 200, response.text


def test_checkout_answers_the_stripe_url_for_the_plans_price(
    api: Api, provider: FakePaymentProvider
) -> None:
    plan_and_profile(api)
    body = {"tenant_id": "t1", "plan_key": "pro", **URLS}
    response = api.call("POST", "/v1/checkout/sessions", scope="write", json=body)
    assert response.status_code == 200, response.text
    url = response.json()["checkout_url"]
    (session,) = provider.checkout_sessions.values()
    assert url == session.url
    assert session.metadata == {
        "tally_app_id": "acme",
        "tally_tenant_id": "t1",
        "tally_plan_key": "pro",
        "tally_plan_version": "1",
    }
    assert provider.prices[session.price_id or ""].price.amount == 2900
    assert session.trial_days == 1  # Stripe collects the card; Tally's invoices charge


def test_checkout_and_portal_need_a_profile_first(api: Api) -> None:
    plan = {"plan_key": "pro", "name": "Pro", "base_price": {"amount": 2900, "currency": "EUR"}}
    api.call("POST", "/v1/plans", json=plan)
    body = {"tenant_id": "t9", "plan_key": "pro", **URLS}
    response = api.call("POST", "/v1/checkout/sessions", json=body)
    assert_error(response, 409, "no_billing_profile", "tenant_id")
    portal = {"tenant_id": "t9", "return_url": "https://app.example/account"}
    assert_error(api.call("POST", "/v1/portal/sessions", json=portal), 409, "no_billing_profile")


def test_portal_makes_the_customer_once_and_answers_its_url(
    api: Api, provider: FakePaymentProvider
) -> None:
    plan_and_profile(api)
    portal = {"tenant_id": "t1", "return_url": "https://app.example/account"}
    first = api.call("POST", "/v1/portal/sessions", json=portal)
    second = api.call("POST", "/v1/portal/sessions", json=portal)
    assert first.status_code == second.status_code == 200, first.text
    assert first.json()["portal_url"].startswith("https://")
    assert len(provider.list_customers("acme")) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tenant_id": "t1", "plan_key": "pro", "success_url": "nope", "cancel_url": "x"}, None),
        ({"tenant_id": "t1", "plan_key": "pro", **URLS, "extra": 1}, "extra"),
        ({"plan_key": "pro", **URLS}, "tenant_id"),
    ],
)
def test_checkout_refuses_bad_bodies_naming_the_field(
    api: Api, body: dict[str, Any], field: str | None
) -> None:
    response = api.call("POST", "/v1/checkout/sessions", json=body)
    assert_error(response, 422, "validation_error")
    if field:
        assert any(d.get("field") == field for d in response.json()["error"]["details"])


def test_checkout_for_an_unknown_plan_is_404(api: Api) -> None:
    plan_and_profile(api)
    body = {"tenant_id": "t1", "plan_key": "gold", **URLS}
    assert_error(api.call("POST", "/v1/checkout/sessions", json=body), 404, "not_found", "plan_key")


def test_payment_methods_attach_and_list(api: Api, provider: FakePaymentProvider) -> None:
    plan_and_profile(api)
    card = provider.make_card()
    path = "/v1/tenants/t1/payment-methods"
    attached = api.call("POST", path, scope="write", json={"payment_method": card})
    assert attached.status_code == 200, attached.text
    assert attached.json()["id"] == card
    listed = api.call("GET", path, scope="read").json()
    assert [m["id"] for m in listed["payment_methods"]] == [card]
    assert listed["payment_methods"][0]["default"] is True
    bad = api.call("POST", path, json={"payment_method": "card_123"})
    assert_error(bad, 422, "validation_error", "payment_method")


def test_stripe_unavailable_is_503_with_retry_after(
    api: Api, provider: FakePaymentProvider
) -> None:
    plan_and_profile(api)
    provider.unavailable = True
    response = api.call(
        "POST", "/v1/portal/sessions", json={"tenant_id": "t1", "return_url": URLS["success_url"]}
    )
    assert_error(response, 503, "unavailable")
    assert response.headers["Retry-After"] == "5"
    assert isinstance(ProviderUnavailable("x"), Exception)


def test_the_reconciliation_report_is_served_after_a_run(api: Api) -> None:
    assert_error(api.call("GET", "/v1/stripe/reconciliation", scope="read"), 404, "not_found")
    plan_and_profile(api)
    system: System = api.client.app.state.system  # type: ignore[attr-defined]
    assert system.stripe is not None
    system.index.refresh()
    system.stripe.reconciler.reconcile("acme")
    report = api.call("GET", "/v1/stripe/reconciliation", scope="read").json()
    assert report["app_id"] == "acme"
    assert report["in_step"] is True


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/checkout/sessions", {"tenant_id": "t1", "plan_key": "pro", **URLS}),
        ("POST", "/v1/portal/sessions", {"tenant_id": "t1", "return_url": URLS["success_url"]}),
        ("POST", "/v1/tenants/t1/payment-methods", {"payment_method": "pm_1"}),
        ("GET", "/v1/tenants/t1/payment-methods", None),
        ("GET", "/v1/stripe/reconciliation", None),
        ("POST", "/v1/webhooks/stripe", {}),
    ],
)
def test_without_stripe_every_stripe_route_is_503_not_configured(
    method: str, path: str, body: dict[str, Any] | None
) -> None:
    system = build(None)
    try:
        with TestClient(create_app(system)) as client:
            api = Api(client, system, "acme")
            response = api.call(method, path, json=body)
            assert_error(response, 503, "not_configured")
            assert "TALLY_STRIPE_API_KEY" in response.json()["error"]["message"]
    finally:
        system.close()


def test_a_payment_method_stripe_does_not_know_is_400_stripe_refused(api: Api) -> None:
    plan_and_profile(api)
    path = "/v1/tenants/t1/payment-methods"
    response = api.call("POST", path, json={"payment_method": "pm_unknown"})
    assert_error(response, 400, "stripe_refused")
    assert "Stripe refused" in response.json()["error"]["message"]
