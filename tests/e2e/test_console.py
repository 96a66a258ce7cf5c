"""The operator console in a real browser against a real `tally serve` (PostgreSQL, and NATS
and Redis when they answer): headless Chromium (Debian's `chromium`, never a downloaded
browser) driven by Playwright.

One app gets a catalog, two tenants, usage, billing runs (an opening and a renewal invoice
with usage lines), a payment, a churned subscription, credits and an alert; then the tests
sign in with its keys and load every page: the charts must have drawn (Chart.js laid out
points and painted the canvas), a tenant leads to an invoice and its explain view, a bad key
is refused, a read key sees no action, a POST without the CSRF token is 403, a revoked key
stops working, and no page asks anything of another host (Swagger UI and ReDoc included).
A screenshot of each page goes to var/console-screenshots/.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import orjson
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Request,
    expect,
    sync_playwright,
)

from tests.e2e.conftest import ROOT, Server, eventually, tally_command

pytestmark = pytest.mark.postgres

CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "var" / "console-screenshots"
APP = "console"
EUR = "EUR"
ACME, GLOBEX = "acme-gmbh", "globex"
NEXT_YEAR = datetime.now(UTC).year + 1
JANUARY = datetime(NEXT_YEAR, 1, 1, tzinfo=UTC)
FEBRUARY = datetime(NEXT_YEAR, 2, 1, tzinfo=UTC)
WAIT_MS = 15_000

API: dict[str, Any] = {
    "key": "api",
    "kind": "metered",
    "limit": 1000,
    "enforcement": "soft",
    "overage": {
        "model": "graduated",
        "tiers": [
            {"up_to": 1000, "unit_price": {"amount": 2, "currency": EUR}},
            {"up_to": None, "unit_price": {"amount_decimal": "0.5", "currency": EUR}},
        ],
    },
}
PRO: dict[str, Any] = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 4900, "currency": EUR},
    "interval": "month",
    "features": [API],
}
BIG = {**PRO, "plan_key": "big", "name": "Big", "base_price": {"amount": 9900, "currency": EUR}}
PROFILE = {
    "name": "Acme GmbH",
    "email": "billing@acme.example",
    "country": "DE",
    "tax_status": "taxable",
    "timezone": "Europe/Berlin",
    "currency": EUR,
}


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json()


@dataclass(frozen=True)
class Seeded:
    """What the app holds once seeded: the invoices the tests open."""

    opening: dict[str, Any]
    renewal: dict[str, Any]
    drafts: list[str]


def billing_run(admin: httpx.Client, until: datetime) -> None:
    report = ok(admin.post("/v1/billing-runs", json={"until": until.isoformat()}))
    assert report["complete"] is True, report


def draft_invoice(writer: httpx.Client) -> str:
    line = {
        "kind": "base_fee",
        "description": "Onboarding",
        "quantity": 1,
        "unit_amount": {"amount": 15000, "currency": EUR},
    }
    body = {"tenant_id": ACME, "currency": EUR, "lines": [line]}
    return str(ok(writer.post("/v1/invoices", json=body), 201)["invoice_id"])


def seed(server: Server) -> Seeded:
    admin, writer = server.client(APP, "admin"), server.client(APP, "write")
    billing_run(admin, JANUARY)
    ok(admin.post("/v1/plans", json=PRO), 201)
    ok(admin.post("/v1/plans", json=BIG), 201)
    ok(writer.put(f"/v1/tenants/{ACME}/profile", json=PROFILE))
    ok(writer.post("/v1/subscriptions", json={"tenant_id": ACME, "plan_key": "pro"}), 201)
    start = {"tenant_id": GLOBEX, "plan_key": "big"}
    churned = ok(writer.post("/v1/subscriptions", json=start), 201)
    revision = {**{k: v for k, v in PRO.items() if k != "plan_key"}, "trial_days": 14}
    ok(admin.post("/v1/plans/pro/revisions", json=revision), 201)
    billing_run(admin, JANUARY + timedelta(days=2))
    ok(writer.post("/v1/usage", json={"events": usage_events(700, 700, 701)}))
    ok(writer.post(f"/v1/subscriptions/{churned['subscription_id']}/cancel", json={}))
    grant = {"amount": {"amount": 2500, "currency": EUR}, "reason": "welcome credit"}
    ok(writer.post(f"/v1/tenants/{ACME}/credits", json=grant), 201)
    alert = {
        "tenant_id": ACME,
        "kind": "usage",
        "feature_key": "api",
        "thresholds": [{"percent": 80}],
    }
    ok(writer.post("/v1/alerts", json=alert), 201)
    billing_run(admin, FEBRUARY + timedelta(hours=1))
    ok(writer.post("/v1/usage", json={"events": usage_events(120, 180)}))  # the new period's
    return _settled(server, writer)


def usage_events(*quantities: int) -> list[dict[str, Any]]:
    return [
        {"idempotency_key": uuid4().hex, "tenant_id": ACME, "feature_key": "api", "quantity": q}
        for q in quantities
    ]


def _settled(server: Server, writer: httpx.Client) -> Seeded:
    reader = server.client(APP, "read")
    listed = ok(reader.get("/v1/invoices", params={"tenant_id": ACME}))["invoices"]
    opening, renewal = sorted(listed, key=lambda invoice: invoice["number"] or 0)[-2:]
    assert any(line["kind"] == "usage" for line in renewal["lines"]), renewal
    ok(writer.post(f"/v1/invoices/{opening['invoice_id']}/pay", json={}))
    drafts = [draft_invoice(writer) for _ in range(3)]

    def read_models_caught_up() -> None:
        revenue = ok(reader.get("/v1/revenue"))
        assert revenue["recognized"] and revenue["invoices"]["paid"] == 1, revenue
        churn = ok(reader.get("/v1/metrics/subscriptions"))["churned_by_month"]
        assert churn, churn
        api = ok(reader.get(f"/v1/tenants/{ACME}/entitlements/api"))
        assert api["used"] == 300, api

    eventually(read_models_caught_up, timeout=30)
    return Seeded(opening, renewal, drafts)


@pytest.fixture(scope="module")
def seeded(server: Server) -> Seeded:
    return seed(server)


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Browser]:
    """Chromium for the module, closed before the server's teardown (which runs asyncio)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no {CHROMIUM}: apt-get install -y chromium (as .ci/run does)", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


class Visit:
    """A browser context on the server, recording every URL it requests."""

    def __init__(self, browser: Browser, server: Server) -> None:
        self.server = server
        self.context: BrowserContext = browser.new_context(viewport={"width": 1400, "height": 900})
        self.requested: list[str] = []
        self.blocked: list[str] = []  # refused by the page's content security policy
        self.context.on("request", lambda request: self.requested.append(request.url))
        self.context.on("requestfailed", self._failed)
        self.page: Page = self.context.new_page()

    def go(self, path: str) -> Page:
        response = self.page.goto(f"{self.server.base_url}{path}")
        assert response is not None and response.ok, (path, response and response.status)
        return self.page

    def sign_in(self, key: str) -> Page:
        self.page.goto(f"{self.server.base_url}/console")
        expect(self.page).to_have_url(f"{self.server.base_url}/console/login?next=%2Fconsole")
        self.page.fill("input[name=api_key]", key)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page).to_have_url(f"{self.server.base_url}/console")
        return self.page

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def csrf(self) -> str:
        token = self.page.locator("input[name=csrf_token]").first.get_attribute("value")
        assert token
        return token

    def _failed(self, request: Request) -> None:
        if request.failure in ("csp", "net::ERR_BLOCKED_BY_CSP"):  # Chromium's wording
            self.blocked.append(request.url)

    def only_local(self) -> None:
        """Every request went to this server (or stayed in the page: data:, blob:); one
        for elsewhere the content security policy refused never left the browser."""
        elsewhere = [
            url
            for url in self.requested
            if not url.startswith((self.server.base_url, "data:", "blob:"))
            and url not in self.blocked
        ]
        assert elsewhere == []

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Browser, server: Server) -> Iterator[Visit]:
    opened = Visit(browser, server)
    try:
        yield opened
        opened.only_local()
    finally:
        opened.close()


def assert_drawn(chart: Locator) -> None:
    """Chart.js drew this canvas: points laid out, data above zero, pixels painted."""
    expect(chart).to_have_attribute("data-drawn", "true", timeout=WAIT_MS)
    assert int(chart.get_attribute("data-points") or 0) > 0
    has_data = "c => Chart.getChart(c).data.datasets.some(d => d.data.some(v => v > 0))"
    assert chart.evaluate(has_data) is True
    painted = chart.evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
    )
    assert painted > 100


def test_a_bad_key_is_refused_and_pages_need_signing_in(
    visit: Visit, server: Server, seeded: Seeded
) -> None:
    page = visit.page
    page.goto(f"{server.base_url}/console/invoices")
    expect(page).to_have_url(f"{server.base_url}/console/login?next=%2Fconsole%2Finvoices")
    page.fill("input[name=api_key]", "tk_0123456789abcdef_not-the-secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown API key")
    visit.shot("sign-in-refused")
    page.fill("input[name=api_key]", server.key(APP, "read"))
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.base_url}/console/invoices")  # back where it was sent
    anonymous = httpx.get(f"{server.base_url}/console/tenants", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/console/login")


def test_dashboard_draws_its_charts(visit: Visit, server: Server, seeded: Seeded) -> None:
    page = visit.sign_in(server.key(APP, "admin"))
    expect(page.get_by_test_id("app-id")).to_have_text(server.app_id(APP))
    expect(page.get_by_test_id("mrr-EUR")).to_have_text("49.00 EUR")
    for name in ("mrr", "mrr_history", "recognized", "plans", "churn", "invoices"):
        assert_drawn(page.get_by_test_id(f"chart-{name}"))
    visit.shot("dashboard")


def test_a_tenant_leads_to_an_invoice_and_its_explain_view(
    visit: Visit, server: Server, seeded: Seeded
) -> None:
    page = visit.sign_in(server.key(APP, "admin"))
    page.get_by_role("link", name="Tenants").click()
    expect(page.get_by_test_id("tenants")).to_contain_text(GLOBEX)
    page.fill("input[name=q]", "acme")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("tenants")).not_to_contain_text(GLOBEX)
    visit.shot("tenants")
    page.get_by_role("link", name=ACME).click()
    expect(page.get_by_test_id("profile")).to_contain_text("billing@acme.example")
    expect(page.get_by_test_id("meter-api")).to_have_attribute("value", "300")
    expect(page.get_by_test_id("timeline").first).to_contain_text("SubscriptionStarted")
    expect(page.get_by_test_id("credits")).to_contain_text("25.00 EUR")
    expect(page.get_by_test_id("alerts")).to_contain_text("usage")
    assert_drawn(page.get_by_test_id("chart-usage-api"))
    page.get_by_test_id("usage-api-hour").click()
    expect(page.get_by_test_id("usage-api-hour")).to_have_class("on", timeout=WAIT_MS)
    assert_drawn(page.get_by_test_id("chart-usage-api"))
    visit.shot("tenant")

    renewal = seeded.renewal
    page.get_by_role("link", name=renewal["number_text"]).first.click()
    expect(page.get_by_test_id("lines")).to_contain_text("usage")
    expect(page.get_by_test_id("invoice-status")).to_have_text(renewal["status"])
    visit.shot("invoice")
    pdf_path = page.get_by_test_id("pdf-link").get_attribute("href") or ""
    pdf = page.request.get(f"{server.base_url}{pdf_path}")
    assert pdf.status == 200 and pdf.headers["content-type"].startswith("application/pdf")
    assert pdf.body().startswith(b"%PDF")
    page.get_by_test_id("explain-link").click()
    usage_line = page.get_by_test_id("explained-line").filter(has_text="usage").first
    expect(usage_line.get_by_test_id("explain-event").first).to_contain_text("UsageRecorded")
    visit.shot("explain")


def test_plans_compare_and_what_if(visit: Visit, server: Server, seeded: Seeded) -> None:
    page = visit.sign_in(server.key(APP, "write"))
    page.get_by_role("link", name="Plans").click()
    expect(page.get_by_test_id("plans")).to_contain_text("big")
    visit.shot("plans")
    page.select_option("select[name=a]", "pro@2")
    page.select_option("select[name=b]", "big@1")
    page.get_by_role("button", name="Compare").click()
    expect(page.get_by_test_id("comparison")).to_contain_text("pro v2 (Pro) → big v1 (Big)")
    expect(page.locator("main table").first).to_contain_text("50.00 EUR")
    visit.shot("plan-compare")

    visit.go("/console/plans/pro")
    expect(page.get_by_test_id("versions")).to_contain_text("Pro")
    draft = orjson.loads(page.locator("textarea[name=draft]").input_value())
    draft["base_price"]["amount"] = 5900
    page.fill("textarea[name=draft]", orjson.dumps(draft).decode())
    page.fill("input[name=start]", JANUARY.isoformat())
    page.fill("input[name=end]", FEBRUARY.isoformat())
    page.get_by_test_id("simulate").click()
    row = page.get_by_test_id("simulation-row").filter(has_text=ACME)
    expect(row).to_contain_text("10.00 EUR")  # 59.00 instead of 49.00, the usage the same
    visit.shot("plan-what-if")


def test_invoice_list_filters_and_actions_with_csrf(
    visit: Visit, server: Server, seeded: Seeded
) -> None:
    page = visit.sign_in(server.key(APP, "write"))
    visit.go("/console/invoices")
    page.select_option("select[name=status]", "draft")
    page.get_by_role("button", name="Filter").click()
    listed = page.get_by_test_id("invoices")
    expect(listed.get_by_test_id("invoice-link")).to_have_count(len(seeded.drafts))
    visit.shot("invoices")

    draft = seeded.drafts[0]
    visit.go(f"/console/invoices/{draft}")
    url = f"{server.base_url}/console/invoices/{draft}/finalize"
    assert page.request.post(url, form={}).status == 403  # no CSRF token
    assert page.request.post(url, form={"csrf_token": "forged"}).status == 403
    expect(page.get_by_test_id("invoice-status")).to_have_text("draft")
    page.get_by_test_id("finalize").click()
    expect(page.get_by_test_id("done")).to_contain_text("finalize")
    expect(page.get_by_test_id("invoice-status")).to_have_text("open")
    page.fill("form[action$='/void'] input[name=reason]", "entered twice")
    page.get_by_test_id("void").click()
    expect(page.get_by_test_id("invoice-status")).to_have_text("void")
    visit.shot("invoice-voided")

    visit.go(f"/console/invoices/{seeded.renewal['invoice_id']}")
    credit = page.locator("form[action$='/credit-note']")
    credit.locator("input[name=reason]").fill("goodwill")
    credit.locator("select[name=method]").select_option("credit_balance")
    page.get_by_test_id("credit-note").click()
    expect(page.get_by_test_id("done")).to_contain_text("credit-note")
    expect(page.locator("main")).to_contain_text("CN-000001")
    visit.shot("invoice-credited")


def test_a_read_key_sees_no_action_and_cannot_post_one(
    visit: Visit, server: Server, seeded: Seeded
) -> None:
    page = visit.sign_in(server.key(APP, "read"))
    expect(page.get_by_test_id("scopes")).to_have_text("read")
    draft = seeded.drafts[1]
    visit.go(f"/console/invoices/{draft}")
    expect(page.get_by_test_id("lines")).to_contain_text("Onboarding")
    expect(page.get_by_test_id("actions")).to_have_count(0)
    expect(page.get_by_test_id("finalize")).to_have_count(0)
    refused = page.request.post(
        f"{server.base_url}/console/invoices/{draft}/finalize", form={"csrf_token": visit.csrf()}
    )
    assert refused.status == 403 and "write scope" in refused.text()
    visit.go("/console/plans/pro")
    expect(page.get_by_test_id("simulate-form")).to_have_count(0)
    reader = server.client(APP, "read")
    assert ok(reader.get(f"/v1/invoices/{draft}"))["status"] == "draft"


def test_events_with_a_live_tail(visit: Visit, server: Server, seeded: Seeded) -> None:
    page = visit.sign_in(server.key(APP, "read"))
    visit.go(f"/console/events?tenant_id={ACME}&after=0")
    expect(page.get_by_test_id("events")).to_contain_text("SubscriptionStarted")
    expect(page.get_by_test_id("events")).not_to_contain_text(GLOBEX)
    writer = server.client(APP, "write")
    ok(writer.put(f"/v1/tenants/{ACME}/profile", json={**PROFILE, "name": "Acme AG"}))
    tail = page.get_by_test_id("tail")
    expect(tail.get_by_test_id("event").first).to_contain_text("BillingProfile", timeout=WAIT_MS)
    visit.shot("events")
    visit.go(f"/console/events?aggregate_id={seeded.renewal['invoice_id']}")
    expect(page.get_by_test_id("events")).to_contain_text("InvoiceDrafted")


def test_operations_shows_readiness_and_positions(
    visit: Visit, server: Server, seeded: Seeded
) -> None:
    page = visit.sign_in(server.key(APP, "read"))
    page.get_by_role("link", name="Operations").click()
    expect(page.get_by_test_id("ready-status")).to_have_text("ok")
    expect(page.get_by_test_id("check-event_store")).to_contain_text("yes")
    expect(page.get_by_test_id("projector-revenue")).to_be_visible()
    expect(page.get_by_test_id("relay")).to_have_count(1 if server.nats else 0)
    visit.shot("operations")


def test_a_revoked_key_stops_working(visit: Visit, server: Server, seeded: Seeded) -> None:
    key = server.key("console-revoked", "read")
    page = visit.sign_in(key)
    done = subprocess.run(
        [*tally_command(), "keys", "revoke", key],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    def signed_out() -> None:
        page.goto(f"{server.base_url}/console/tenants")
        assert "/console/login" in page.url, page.url

    eventually(signed_out, timeout=20, interval=1)


def test_swagger_ui_and_redoc_load_from_this_server(visit: Visit, server: Server) -> None:
    page = visit.go("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Tally", timeout=WAIT_MS)
    expect(page.locator(".opblock").first).to_be_visible()
    visit.shot("swagger-ui")
    visit.go("/redoc")
    expect(page.locator("h1").first).to_contain_text("Tally", timeout=WAIT_MS)
    expect(page.get_by_text("/v1/plans").first).to_be_attached()
    visit.shot("redoc")
    paths = httpx.get(f"{server.base_url}/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/console", "/docs", "/redoc"))]
