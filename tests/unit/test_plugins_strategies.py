"""Strategy plugins: a TaxCalculator or PricingStrategy selected by name in settings changes
the invoice the billing engine composes; none selected leaves the domain's rules; a name that
is unknown or implements another port is refused at start."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from adapters.bootstrap import bootstrap
from adapters.eventstore.index import OwnershipIndex
from adapters.plugins.registry import PluginError
from adapters.settings import Settings
from commands.billing.strategies import DomainPricing, RateTableTax, TaxContext
from domain.catalog import FeatureSpec
from domain.clock import SettableClock
from domain.money import Money
from domain.pricing import Quantity, RatedLine, Rating
from domain.tax import TaxBehavior, TaxLine, TaxRequest
from tests.factories import T0
from tests.unit.test_billing_examples import Billing, lines, utc

USAGE = {"model": "per_unit", "unit_price": {"amount": 2, "currency": "USD"}}
API = {"key": "api", "kind": "metered", "enforcement": "soft", "overage": USAGE}


class FlatTax:
    """A TaxCalculator plugin: 5 % on every line, whatever the country (rates ignored)."""

    name = "flat-five"

    def __init__(self) -> None:
        self.contexts: list[TaxContext] = []

    def tax(self, request: TaxRequest, context: TaxContext) -> list[TaxLine]:
        self.contexts.append(context)
        return [
            TaxLine(
                line_id=line.line_id,
                country=request.country,
                description="Flat tax 5%",
                taxable_amount=line.net,
                rate_percent="5.0",
                behavior=TaxBehavior.EXCLUSIVE,
                amount=line.net.with_amount(line.net.amount * 5 // 100),
            )
            for line in request.lines
        ]


class HalfPrice:
    """A PricingStrategy plugin: the plan's price for usage, halved (one line)."""

    name = "half-price"

    def rate_feature(self, spec: FeatureSpec, quantity: Quantity) -> Rating | None:
        rating = DomainPricing().rate_feature(spec, quantity)
        if rating is None:
            return None
        half = rating.amount.with_amount(rating.amount.amount // 2)
        line = RatedLine(description="half price", quantity=quantity, unit_price="1", amount=half)
        return Rating(amount=half, lines=[line])


class PluginBilling(Billing):
    """The shared billing driver, bootstrapped with plugins and strategy settings."""

    def __init__(self, plugins: list[object], **settings: Any) -> None:
        self.clock = SettableClock(T0)
        options = {"database_url": "sqlite:///:memory:", "plugins_discover": False, **settings}
        self.system = bootstrap(
            Settings(**options), self.clock, deliver_in_process=False, plugins=plugins
        )
        self.index = OwnershipIndex(self.system.ledger.recorder)


def january_invoice(billing: Billing) -> Any:
    billing.plan("pro", 5000, features=[API])
    billing.do("set_tax_rate", country="FR", rate_percent="10.0", behavior="exclusive")
    billing.profile(country="FR")
    billing.start("pro")
    billing.run(T0)
    billing.use(1000, "calls-1")
    billing.run(utc(2026, 2, 1))
    return billing.invoices()[-1]


@pytest.fixture
def drivers() -> Iterator[list[Billing]]:
    made: list[Billing] = []
    yield made
    for driver in made:
        driver.close()


def test_by_default_the_domain_prices_and_taxes(drivers: list[Billing]) -> None:
    billing = PluginBilling([FlatTax(), HalfPrice()])  # registered, not selected
    drivers.append(billing)
    assert lines(january_invoice(billing)) == [
        ("base_fee", 1, 5000),
        ("usage", 1000, 2000),
        ("tax", 1, 500),
        ("tax", 1, 200),
    ]


def test_a_selected_tax_calculator_taxes_the_invoice(drivers: list[Billing]) -> None:
    plugin = FlatTax()
    billing = PluginBilling([plugin], tax_calculator="flat-five")
    drivers.append(billing)
    invoice = january_invoice(billing)
    assert lines(invoice) == [
        ("base_fee", 1, 5000),
        ("usage", 1000, 2000),
        ("tax", 1, 250),
        ("tax", 1, 100),
    ]
    assert invoice.state.lines[-1].description == "Flat tax 5%"
    assert invoice.totals.total == Money(amount=7350, currency="USD")
    context = plugin.contexts[-1]
    assert (context.app_id, context.tenant_id) == ("acme", "t1")
    assert context.rates["FR"].rate_percent == "10.0"  # the app's own rates are offered


def test_a_selected_pricing_strategy_prices_the_usage(drivers: list[Billing]) -> None:
    billing = PluginBilling([HalfPrice()], pricing_strategy="half-price")
    drivers.append(billing)
    invoice = january_invoice(billing)
    assert lines(invoice) == [
        ("base_fee", 1, 5000),
        ("usage", 1000, 1000),
        ("tax", 1, 500),
        ("tax", 1, 100),
    ]
    assert invoice.state.lines[1].description == "api: half price"


def test_the_upcoming_invoice_over_http_prices_as_billing_does(drivers: list[Billing]) -> None:
    from fastapi.testclient import TestClient

    from adapters.http.app import create_app

    billing = PluginBilling([HalfPrice()], pricing_strategy="half-price")
    drivers.append(billing)
    billing.plan("pro", 5000, features=[API])
    subscription = billing.start("pro")
    billing.run(T0)
    billing.use(1000, "calls-1")
    key = billing.do("create_api_key", scope="read", label="t")["api_key"]
    with TestClient(create_app(billing.system)) as client:
        reply = client.get(
            f"/v1/subscriptions/{subscription}/upcoming-invoice",
            headers={"Authorization": f"Bearer {key}"},
        )
    assert reply.status_code == 200, reply.text
    usage = [line for line in reply.json()["lines"] if line["kind"] == "usage"]
    assert [line["amount"]["amount"] for line in usage] == [1000]


def test_an_unknown_or_wrong_kind_of_strategy_is_refused_at_start() -> None:
    settings: dict[str, Any] = {"database_url": "sqlite:///:memory:", "plugins_discover": False}
    with pytest.raises(PluginError, match="TALLY_TAX_CALCULATOR='nope': no plugin"):
        bootstrap(Settings(**settings, tax_calculator="nope"), deliver_in_process=False)
    with pytest.raises(PluginError, match="does not implement TaxCalculator"):
        bootstrap(
            Settings(**settings, tax_calculator="half-price"),
            deliver_in_process=False,
            plugins=[HalfPrice()],
        )


def test_the_defaults_are_the_domain_rules() -> None:
    from domain.tax import TaxableLine, TaxRateTerms

    request = TaxRequest(
        country="DE",
        tax_status="taxable",
        lines=[TaxableLine(line_id="l", description="x", net=Money(amount=1000, currency="EUR"))],
    )
    rates = {"DE": TaxRateTerms(rate_percent="19.0", behavior=TaxBehavior.EXCLUSIVE)}
    [line] = RateTableTax().tax(request, TaxContext("acme", "t1", rates))
    assert line.amount == Money(amount=190, currency="EUR")
    spec = FeatureSpec.model_validate(API)
    rating = DomainPricing().rate_feature(spec, Decimal(3))
    assert rating is not None and rating.amount == Money(amount=6, currency="USD")
