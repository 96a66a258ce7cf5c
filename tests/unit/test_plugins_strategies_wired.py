"""Strategy plugins called everywhere they apply (docs/plugins.md): plan terms naming a
pricing strategy, tax calculator or usage aggregator (refused when unknown), the coupon
validator on every redemption, the invoice formatter on the PDF route and the invoice mail,
proration invoices taxed by the selected calculator, recompute, compare and what-if rated
by the selected pricing."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from adapters.http.app import create_app
from commands.billing.strategies import (
    CouponCheck,
    CouponVerdict,
    DomainAggregation,
    FormattedInvoice,
    UsageSample,
)
from domain.coupon import Coupon, coupon_id
from domain.invoice import InvoiceState
from tests.factories import T0
from tests.unit.test_billing_examples import Billing, lines, utc
from tests.unit.test_plugins_strategies import API, FlatTax, HalfPrice, PluginBilling

FEB = utc(2026, 2, 1)


class SecondLargest:
    """A UsageAggregator plugin: a period's second largest fact (the built-ins otherwise)."""

    name = "second-largest"

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[UsageSample]]] = []

    def aggregate(self, meter: str, samples: list[UsageSample]) -> int:
        self.seen.append((meter, samples))
        values = sorted((s.quantity for s in samples), reverse=True)
        return values[1] if len(values) > 1 else DomainAggregation().aggregate(meter, samples)


class StaffOnly:
    """A CouponValidator plugin: coupon `staff` only for tenants whose id starts staff-."""

    name = "staff-only"

    def __init__(self) -> None:
        self.checks: list[CouponCheck] = []

    def validate_coupon(self, check: CouponCheck) -> CouponVerdict:
        self.checks.append(check)
        if check.code == "staff" and not check.tenant_id.startswith("staff-"):
            return CouponVerdict(allowed=False, reason="staff coupons are for staff tenants")
        return CouponVerdict(allowed=True)


class HtmlInvoice:
    """An InvoiceFormatter plugin: a small HTML document."""

    name = "html-invoice"

    def format_invoice(self, invoice_id: UUID, invoice: InvoiceState) -> FormattedInvoice:
        body = f"<h1>{invoice.number_text or invoice_id}</h1><p>{invoice.currency}</p>"
        return FormattedInvoice("text/html", f"{invoice.number_text}.html", body.encode())


def field_of(reply: dict[str, Any]) -> str:
    return str(reply["error"]["details"][0]["field"])


@pytest.fixture
def drivers() -> Iterator[list[Billing]]:
    made: list[Billing] = []
    yield made
    for driver in made:
        driver.close()


def driver(drivers: list[Billing], plugins: list[object], **settings: Any) -> PluginBilling:
    billing = PluginBilling(plugins, **settings)
    drivers.append(billing)
    return billing


def january(billing: Billing, *plans: str) -> list[list[Any]]:
    """Lines of each plan's tenant's January invoice (1000 api calls, taxed 10 % in FR)."""
    tenants = [f"t{index}" for index, _ in enumerate(plans, 1)]
    for tenant, plan in zip(tenants, plans, strict=True):
        billing.profile(tenant, country="FR")
        billing.start(plan, tenant)
    billing.run(T0)
    for tenant in tenants:
        billing.use(1000, f"{tenant}-calls", tenant)
    billing.run(FEB)
    return [lines(billing.invoices(tenant)[-1]) for tenant in tenants]


def with_fr_tax(billing: Billing) -> None:
    billing.do("set_tax_rate", country="FR", rate_percent="10.0", behavior="exclusive")


# --- plan terms name strategies ------------------------------------------------------------


def test_a_plan_naming_a_pricing_strategy_prices_only_its_subscriptions(
    drivers: list[Billing],
) -> None:
    billing = driver(drivers, [HalfPrice()])  # registered, not selected in the settings
    with_fr_tax(billing)
    billing.plan("pro", 5000, features=[API], strategies={"pricing_strategy": "half-price"})
    billing.plan("std", 5000, features=[API])
    pro, std = january(billing, "pro", "std")
    assert pro == [("base_fee", 1, 5000), ("usage", 1000, 1000), ("tax", 1, 500), ("tax", 1, 100)]
    assert std[1] == ("usage", 1000, 2000)


def test_a_plan_naming_a_tax_calculator_overrides_the_settings(drivers: list[Billing]) -> None:
    billing = driver(drivers, [FlatTax(), HalfPrice()], pricing_strategy="half-price")
    with_fr_tax(billing)
    billing.plan("pro", 5000, features=[API], strategies={"tax_calculator": "flat-five"})
    [pro] = january(billing, "pro")
    assert pro == [
        ("base_fee", 1, 5000),
        ("usage", 1000, 1000),  # the settings' pricing still applies
        ("tax", 1, 250),
        ("tax", 1, 50),
    ]


@pytest.mark.parametrize(
    ("strategies", "field"),
    [
        ({"pricing_strategy": "nope"}, "strategies.pricing_strategy"),
        ({"tax_calculator": "half-price"}, "strategies.tax_calculator"),  # another port
        ({"usage_aggregator": "flat-five"}, "strategies.usage_aggregator"),
    ],
)
def test_a_plan_naming_an_unknown_strategy_is_refused(
    drivers: list[Billing], strategies: dict[str, str], field: str
) -> None:
    billing = driver(drivers, [FlatTax(), HalfPrice()])
    base = {"amount": 5000, "currency": "USD"}
    reply = billing.send(
        "define_plan", plan_key="pro", name="Pro", base_price=base, strategies=strategies
    )
    assert not reply["ok"] and field_of(reply) == field, reply
    assert "no strategy plugin" in reply["error"]["message"]
    assert billing.send("define_plan", plan_key="pro", name="Pro", base_price=base)["ok"]
    revised = billing.send(
        "revise_plan", plan_key="pro", name="Pro", base_price=base, strategies=strategies
    )
    assert not revised["ok"] and field_of(revised) == field


def test_a_plan_naming_a_usage_aggregator_bills_its_quantity(drivers: list[Billing]) -> None:
    aggregator = SecondLargest()
    billing = driver(drivers, [aggregator])
    billing.plan("pro", 5000, features=[API], strategies={"usage_aggregator": "second-largest"})
    billing.plan("std", 5000, features=[API])
    for tenant, plan in (("t1", "pro"), ("t2", "std")):
        billing.start(plan, tenant)
    billing.run(T0)
    for tenant in ("t1", "t2"):
        for index, quantity in enumerate((700, 300, 500)):
            billing.use(quantity, f"{tenant}-{index}", tenant)
    billing.run(FEB)
    assert lines(billing.invoices("t1")[-1])[1] == ("usage", 500, 1000)  # second largest
    assert lines(billing.invoices("t2")[-1])[1] == ("usage", 1500, 3000)  # built-in sum
    meter, samples = aggregator.seen[-1]
    assert meter == "sum"
    assert sorted(s.quantity for s in samples) == [300, 500, 700]
    assert all(s.event_id and s.position > 0 for s in samples)
    usage = billing.invoices("t1")[-1].state.lines[1].usage
    assert usage is not None and usage.events == 3  # the evidence stays the read model's


def test_a_selected_usage_aggregator_counts_every_plan(drivers: list[Billing]) -> None:
    billing = driver(drivers, [SecondLargest()], usage_aggregator="second-largest")
    billing.plan("std", 5000, features=[API])
    billing.start("std")
    billing.run(T0)
    for index, quantity in enumerate((700, 300, 500)):
        billing.use(quantity, f"c-{index}")
    billing.run(FEB)
    assert lines(billing.invoices()[-1])[1] == ("usage", 500, 1000)


# --- coupons ---------------------------------------------------------------------------------


def coupon_redemptions(billing: Billing, code: str) -> int:
    coupon = billing.system.aggregate(coupon_id("acme", code))
    assert isinstance(coupon, Coupon)
    return coupon.state.redemption_count


def test_the_coupon_validator_refuses_attach_start_and_redeem(drivers: list[Billing]) -> None:
    validator = StaffOnly()
    billing = driver(drivers, [validator], coupon_validator="staff-only")
    billing.plan("pro", 5000)
    billing.do("create_coupon", code="staff", percent_off=50)
    sub = billing.start("pro", "t1")
    refused = billing.send("attach_coupon", subscription_id=str(sub), code="staff")
    assert not refused["ok"]
    error = refused["error"]
    assert (error["code"], field_of(refused)) == ("coupon_not_redeemable", "code")
    assert "staff coupons are for staff tenants" in error["message"]
    started = billing.send("start_subscription", tenant_id="t2", plan_key="pro", coupon="staff")
    assert not started["ok"] and field_of(started) == "coupon"
    redeemed = billing.send("redeem_coupon", code="staff", tenant_id="t3")
    assert not redeemed["ok"] and field_of(redeemed) == "code"
    assert coupon_redemptions(billing, "staff") == 0  # nothing recorded
    assert billing.index.ids("acme", "subscription", "t2") == []
    staff = billing.start("pro", "staff-1", coupon="staff")
    assert coupon_redemptions(billing, "staff") == 1
    last = validator.checks[-1]
    assert (last.app_id, last.tenant_id, last.code, last.subscription_id) == (
        "acme",
        "staff-1",
        "staff",
        staff,
    )


def test_without_a_validator_every_coupon_passes(drivers: list[Billing]) -> None:
    billing = driver(drivers, [StaffOnly()])  # registered, not selected
    billing.plan("pro", 5000)
    billing.do("create_coupon", code="staff", percent_off=50)
    sub = billing.start("pro", "t1")
    assert billing.send("attach_coupon", subscription_id=str(sub), code="staff")["ok"]


# --- proration, recompute, compare, what-if --------------------------------------------------


def test_an_immediate_proration_invoice_uses_the_selected_tax(drivers: list[Billing]) -> None:
    billing = PluginBilling([FlatTax()], tax_calculator="flat-five")
    billing.clock.set(utc(2026, 4, 1))
    drivers.append(billing)
    billing.plan("basic", 1000)
    billing.plan("premium", 2000)
    billing.profile(country="FR")
    sub = billing.start("basic")
    billing.run(utc(2026, 4, 16))
    billing.do(
        "change_plan", subscription_id=str(sub), plan_key="premium", proration="always_invoice"
    )
    now = billing.invoices()[-1]
    assert now.state.origin == "proration"
    assert lines(now) == [
        ("proration_credit", 1, -500),
        ("proration_debit", 1, 1000),
        ("tax", 1, -25),
        ("tax", 1, 50),
    ]


def client_for(billing: Billing, scope: str = "admin") -> tuple[TestClient, dict[str, str]]:
    key = billing.do("create_api_key", scope=scope, label="t")["api_key"]
    return TestClient(create_app(billing.system)), {"Authorization": f"Bearer {key}"}


def test_recompute_rates_with_the_plans_pricing(drivers: list[Billing]) -> None:
    billing = driver(drivers, [HalfPrice()])
    billing.plan("pro", 5000, features=[API], strategies={"pricing_strategy": "half-price"})
    billing.start("pro")
    billing.run(T0)
    billing.use(1000, "calls")
    billing.run(FEB)
    invoice = billing.invoices()[-1]
    client, auth = client_for(billing, "read")
    with client:
        reply = client.get(f"/v1/invoices/{invoice.id}/recompute", headers=auth)
    assert reply.status_code == 200, reply.text
    [api] = reply.json()["features"]
    assert (api["billed"]["amount"], api["recomputed"]["amount"]) == (1000, 1000)
    assert api["difference"]["amount"] == 0


def test_compare_and_what_if_rate_with_each_plans_pricing(drivers: list[Billing]) -> None:
    billing = driver(drivers, [HalfPrice()])
    billing.plan("pro", 5000, features=[API], strategies={"pricing_strategy": "half-price"})
    billing.plan("std", 5000, features=[API])
    billing.start("pro")
    billing.run(T0)
    billing.use(1000, "calls")
    client, auth = client_for(billing)
    with client:
        compared = client.get("/v1/plans/compare?a=pro&b=std", headers=auth)
        draft = {"name": "Pro", "base_price": {"amount": 5000, "currency": "USD"}}
        simulated = client.post(
            "/v1/simulations/pricing",
            headers=auth,
            json={
                "plan_key": "pro",
                "draft": {**draft, "features": [API]},  # the draft names no strategy
                "period": {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"},
            },
        )
    assert compared.status_code == 200, compared.text
    [feature] = compared.json()["features"]
    priced = {s["quantity"]: (s["a"]["amount"], s["b"]["amount"]) for s in feature["samples"]}
    assert priced[200] == (200, 400)  # pro halves, std does not
    assert "strategies" in {c["field"] for c in compared.json()["changes"]}
    assert simulated.status_code == 200, simulated.text
    [row] = simulated.json()["tenants"]
    assert (row["current"]["amount"], row["draft"]["amount"]) == (6000, 7000)


# --- invoice documents -----------------------------------------------------------------------


def test_the_pdf_route_serves_the_formatters_document_when_asked(drivers: list[Billing]) -> None:
    billing = driver(drivers, [HtmlInvoice()], invoice_formatter="html-invoice")
    billing.plan("pro", 5000)
    billing.start("pro")
    billing.run(T0)
    invoice = billing.invoices()[-1]
    client, auth = client_for(billing, "read")
    with client:
        html = client.get(f"/v1/invoices/{invoice.id}/pdf", headers={**auth, "Accept": "text/html"})
        pdf = client.get(f"/v1/invoices/{invoice.id}/pdf", headers=auth)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert html.text == "<h1>INV-000001</h1><p>USD</p>"
    assert 'filename="INV-000001.html"' in html.headers["content-disposition"]
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")


def test_the_invoice_mail_attaches_the_formatters_document(drivers: list[Billing]) -> None:
    from adapters.smtp.compose import compose

    billing = driver(drivers, [HtmlInvoice()], invoice_formatter="html-invoice")
    billing.plan("pro", 5000)
    billing.start("pro")
    billing.run(T0)
    invoice = billing.invoices()[-1]
    row = {
        "kind": "invoice",
        "aggregate_id": str(invoice.id),
        "aggregate_version": invoice.version,
        "app_id": "acme",
        "message_id": "<m@tally>",
        "occurred_at": "2026-01-01T00:00:00+00:00",
        "recipient": "billing@acme.example",
        "subject": "Invoice",
        "event_type": "InvoiceFinalized",
        "event_id": "e1",
        "number_text": "INV-000001",
        "details": "{}",
        "customer": None,
    }
    mail: EmailMessage = compose(
        row, "tally@example.com", billing.system.ledger, billing.system.plugins.strategies.invoices
    )
    names = [(part.get_filename(), part.get_content_type()) for part in mail.iter_attachments()]
    assert names == [("INV-000001.pdf", "application/pdf"), ("INV-000001.html", "text/html")]


def test_a_what_if_draft_naming_an_unknown_strategy_is_refused(drivers: list[Billing]) -> None:
    billing = driver(drivers, [HalfPrice()])
    billing.plan("pro", 5000, features=[API])
    client, auth = client_for(billing)
    draft = {
        "name": "Pro",
        "base_price": {"amount": 5000, "currency": "USD"},
        "strategies": {"pricing_strategy": "nope"},
    }
    period = {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}
    with client:
        reply = client.post(
            "/v1/simulations/pricing",
            headers=auth,
            json={"plan_key": "pro", "draft": draft, "period": period},
        )
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["details"][0]["field"] == "draft.strategies.pricing_strategy"


def test_the_default_formatter_answers_json_when_asked(drivers: list[Billing]) -> None:
    billing = driver(drivers, [])
    billing.plan("pro", 5000)
    billing.start("pro")
    billing.run(T0)
    invoice = billing.invoices()[-1]
    client, auth = client_for(billing, "read")
    with client:
        asked = {**auth, "Accept": "application/json"}
        document = client.get(f"/v1/invoices/{invoice.id}/pdf", headers=asked)
    assert document.headers["content-type"] == "application/json"
    assert document.json()["number_text"] == "INV-000001"


def test_an_aggregator_answering_no_whole_number_stops_the_invoice() -> None:
    from commands.billing.ports import NoUsage
    from commands.billing.strategies import AggregatedUsage, NoSamples
    from domain.billing import UsageTotal
    from domain.errors import Conflict
    from domain.period import Period

    class Negative:
        def aggregate(self, meter: str, samples: list[UsageSample]) -> int:
            return -1

    class OneFeature(NoUsage):
        def totals(self, *args: Any) -> dict[str, UsageTotal]:
            return {"api": UsageTotal(feature_key="api", meter="sum", quantity=5)}

    reader = AggregatedUsage(OneFeature(), NoSamples(), Negative())
    period = Period(start=T0, end=FEB)
    with pytest.raises(Conflict, match="whole number from 0"):
        reader.totals("acme", "t1", [("api", "sum")], period, None)


def test_the_mailer_composes_with_the_selected_formatter(drivers: list[Billing]) -> None:
    from adapters.smtp.transport import SmtpTransport
    from adapters.smtp.worker import build_sender

    transport = SmtpTransport.from_url("smtp://127.0.0.1:1", 1.0)  # never connected here
    selected = driver(drivers, [HtmlInvoice()], invoice_formatter="html-invoice")
    plain = driver(drivers, [HtmlInvoice()])
    composer = build_sender(selected.system, transport).composer
    assert getattr(composer, "keywords", {}) == {
        "formatter": selected.system.plugins.strategies.invoices
    }
    assert not hasattr(build_sender(plain.system, transport).composer, "keywords")
