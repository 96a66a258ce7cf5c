"""Strategy plugins end to end over HTTP on the real stack (`tally serve` on PostgreSQL, NATS
JetStream and Redis): the plugins are a small package found through the `tally.plugins`
entry-point group (a dist-info on PYTHONPATH, as an installed package would be). A plan names
a pricing strategy, a tax calculator and a usage aggregator (an unknown name is refused 422
naming the field); the coupon validator the settings select refuses a coupon (409 naming
`code`, nothing recorded); the billing run invoices by the plan's strategies; the PDF route
answers the selected formatter's document when asked for its media type."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, eventually

pytestmark = pytest.mark.postgres

APP = "e2e-strategies"
TENANT = "acme"
JANUARY = datetime(datetime.now(UTC).year + 1, 1, 1, tzinfo=UTC)
USD = "USD"

PLUGINS = """
from commands.billing.strategies import CouponVerdict, FormattedInvoice
from domain.pricing import RatedLine, Rating
from domain.tax import TaxBehavior, TaxLine


class HalfPrice:
    name = "e2e-half-price"

    def rate_feature(self, spec, quantity):
        amount = spec.overage.unit_price.amount * int(quantity) // 2
        money = spec.overage.currency
        from domain.money import Money

        total = Money(amount=amount, currency=money)
        line = RatedLine(description="half price", quantity=quantity, unit_price="1", amount=total)
        return Rating(amount=total, lines=[line])


class FlatFive:
    name = "e2e-flat-five"

    def tax(self, request, context):
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


class Largest:
    name = "e2e-largest"

    def aggregate(self, meter, samples):
        return max((sample.quantity for sample in samples), default=0)


class NoStaffCoupons:
    name = "e2e-no-staff"

    def validate_coupon(self, check):
        if check.code == "staff":
            return CouponVerdict(allowed=False, reason="staff coupons are not for customers")
        return CouponVerdict(allowed=True)


class HtmlInvoice:
    name = "e2e-html"

    def format_invoice(self, invoice_id, invoice):
        body = f"<h1>{invoice.number_text}</h1>".encode()
        return FormattedInvoice("text/html", f"{invoice.number_text}.html", body)
"""

ENTRY_POINTS = """[tally.plugins]
e2e-half-price = tally_e2e_plugins:HalfPrice
e2e-flat-five = tally_e2e_plugins:FlatFive
e2e-largest = tally_e2e_plugins:Largest
e2e-no-staff = tally_e2e_plugins:NoStaffCoupons
e2e-html = tally_e2e_plugins:HtmlInvoice
"""

API: dict[str, Any] = {
    "key": "api",
    "kind": "metered",
    "enforcement": "soft",
    "overage": {"model": "per_unit", "unit_price": {"amount": 2, "currency": USD}},
}
STRATEGIES = {
    "pricing_strategy": "e2e-half-price",
    "tax_calculator": "e2e-flat-five",
    "usage_aggregator": "e2e-largest",
}
PRO: dict[str, Any] = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 5000, "currency": USD},
    "features": [API],
    "strategies": STRATEGIES,
}
PROFILE = {
    "name": "Acme",
    "email": "billing@acme.example",
    "country": "US",
    "tax_status": "taxable",
    "timezone": "UTC",
    "currency": USD,
}


def plugin_package(root: Path) -> Path:
    """A package and its dist-info (entry points in `tally.plugins`) in `root`."""
    (root / "tally_e2e_plugins.py").write_text(PLUGINS)
    info = root / "tally_e2e_plugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tally-e2e-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`tally serve` with the plugin package on its path, the coupon validator and the
    invoice formatter selected by settings."""
    running = Server("strategies")
    root = plugin_package(tmp_path_factory.mktemp("plugins"))
    path = running.env.get("PYTHONPATH")
    running.env |= {
        "PYTHONPATH": f"{root}:{path}" if path else str(root),
        "TALLY_COUPON_VALIDATOR": "e2e-no-staff",
        "TALLY_INVOICE_FORMATTER": "e2e-html",
    }
    try:
        running.start()
        yield running
    finally:
        running.cleanup()


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json()


def billing_run(admin: httpx.Client, until: datetime) -> dict[str, Any]:
    report = ok(admin.post("/v1/billing-runs", json={"until": until.isoformat()}))
    assert report["complete"] is True, report
    return dict(report)


def amounts(invoice: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(li["kind"], li["quantity"], li["amount"]["amount"]) for li in invoice["lines"]]


def field_of(response: httpx.Response) -> str:
    return str(response.json()["error"]["details"][0]["field"])


def test_a_plans_strategies_and_the_selected_ones_over_http(server: Server) -> None:
    admin = server.client(APP, "admin")
    writer = server.client(APP, "write")
    reader = server.client(APP, "read")
    billing_run(admin, JANUARY)  # moves the clock

    unknown = admin.post("/v1/plans", json={**PRO, "strategies": {"tax_calculator": "nope"}})
    assert unknown.status_code == 422, unknown.text
    assert field_of(unknown) == "strategies.tax_calculator"
    assert ok(admin.post("/v1/plans", json=PRO), 201)["version"] == 1
    plan = ok(reader.get("/v1/plans/pro"))
    assert plan["versions"][0]["strategies"] == STRATEGIES
    ok(writer.put(f"/v1/tenants/{TENANT}/profile", json=PROFILE))

    ok(admin.post("/v1/coupons", json={"code": "staff", "percent_off": 50}), 201)
    refused = writer.post(
        "/v1/subscriptions", json={"tenant_id": TENANT, "plan_key": "pro", "coupon": "staff"}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "coupon_not_redeemable"
    assert field_of(refused) == "coupon"
    assert "staff coupons are not for customers" in refused.json()["error"]["message"]
    assert ok(reader.get("/v1/coupons/staff"))["redemption_count"] == 0

    start = {"tenant_id": TENANT, "plan_key": "pro"}
    started = ok(writer.post("/v1/subscriptions", json=start), 201)
    sid = started["subscription_id"]
    attach = writer.post(f"/v1/subscriptions/{sid}/coupons", json={"code": "staff"})
    assert attach.status_code == 409 and field_of(attach) == "code", attach.text
    billing_run(admin, JANUARY)
    events = [
        {"idempotency_key": f"c{i}", "tenant_id": TENANT, "feature_key": "api", "quantity": q}
        for i, q in enumerate((300, 900, 600))
    ]
    assert ok(writer.post("/v1/usage", json={"events": events}))["accepted"] == 3

    def upcoming_has_the_usage() -> None:
        upcoming = ok(reader.get(f"/v1/subscriptions/{sid}/upcoming-invoice"))
        assert ("usage", 900, 900) in amounts(upcoming), upcoming

    eventually(upcoming_has_the_usage)
    billing_run(admin, JANUARY + timedelta(days=31, hours=1))
    listed = ok(reader.get("/v1/invoices", params={"tenant_id": TENANT}))["invoices"]
    renewal = sorted(listed, key=lambda invoice: invoice["number"] or 0)[-1]
    # the largest fact (900), half of 2 per call (900), tax 5 % on each line
    assert amounts(renewal) == [
        ("base_fee", 1, 5000),
        ("usage", 900, 900),
        ("tax", 1, 250),
        ("tax", 1, 45),
    ]

    accept = {"Accept": "text/html"}
    html = reader.get(f"/v1/invoices/{renewal['invoice_id']}/pdf", headers=accept)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert html.text == f"<h1>{renewal['number_text']}</h1>"
    pdf = reader.get(f"/v1/invoices/{renewal['invoice_id']}/pdf")
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
