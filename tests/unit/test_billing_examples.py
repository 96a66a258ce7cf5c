"""Worked billing examples from public documentation, run through the billing engine end to
end in process (commands, billing runs on the test clock, invoices), exact to the minor unit.

Each test cites its source. Where Tally's answer differs from the source's, the test says why
(for example Lago's calendar billing against Tally's anniversary periods). The rating examples
(tiers, packages, sub-minor-unit prices) are in tests/unit/test_pricing_examples.py.

`Billing` is the driver the other billing tests share (tests/unit/test_billing_points.py,
test_billing_properties.py, test_billing_stateful.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any
from uuid import UUID

import pytest

from adapters.billing.runs import run_billing
from adapters.bootstrap import System
from adapters.eventstore.index import OwnershipIndex
from domain.clock import SettableClock
from domain.invoice import Invoice, InvoiceStatus
from domain.money import Money
from domain.period import Period
from domain.proration import credit_unused, fraction_of
from domain.subscription import Subscription
from tests.factories import T0, embedded_system

APP = "acme"

STRIPE_PRORATIONS = "https://docs.stripe.com/billing/subscriptions/prorations"
STRIPE_QUANTITIES = "https://docs.stripe.com/billing/subscriptions/quantities"
STRIPE_BILLING_CYCLE = "https://docs.stripe.com/billing/subscriptions/billing-cycle"
STRIPE_COUPONS = "https://docs.stripe.com/billing/subscriptions/coupons"
STRIPE_ZERO_DECIMAL = "https://docs.stripe.com/currencies#zero-decimal"
STRIPE_TO_THE_SECOND = "https://docs.stripe.com/billing/scripts/prorations"
STRIPE_INCLUSIVE_TAX = (
    "https://support.stripe.com/questions/"
    "inclusive-and-exclusive-tax-options-in-the-tax-rate-api-and-stripe-tax"
)
STRIPE_API_GIST = "https://gist.github.com/matthewarkin/27bcfdf622eb91d3508ea082d0ad50b8"
LAGO_PLAN_MODEL = "https://docs.getlago.com/guide/plans/plan-model"
LAGO_UPGRADES = "https://docs.getlago.com/guide/subscriptions/upgrades-downgrades"
LAGO_UPGRADES_OLD = "https://doc.getlago.com/docs/guide/plans/upgrades-downgrades"
LAGO_COUPONS = "https://docs.getlago.com/guide/coupons"
LAGO_COUPONS_BEFORE_TAX = "https://getlago.com/changelog/coupons-before-tax"
KILL_BILL_INVOICES = "https://docs.killbill.io/latest/invoice_subsystem.html"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


class Billing:
    """The embedded system (in-memory SQLite, read models fed by `sync`) on a test clock,
    driven as an app drives it: commands, then billing runs up to an instant."""

    def __init__(self, start: datetime = T0) -> None:
        self.clock = SettableClock(start)
        self.system: System = embedded_system(self.clock)
        self.index = OwnershipIndex(self.system.ledger.recorder)

    def close(self) -> None:
        self.system.close()

    def send(self, command: str, **payload: Any) -> dict[str, Any]:
        """The raw reply ({ok, result | error}); read models are brought up to date."""
        reply: dict[str, Any] = self.system.dispatch(command, {"app_id": APP, **payload})
        self.system.sync()
        return reply

    def do(self, command: str, **payload: Any) -> dict[str, Any]:
        reply = self.send(command, **payload)
        assert reply["ok"], reply
        return dict(reply["result"])

    def plan(self, key: str, price: int, currency: str = "USD", **terms: Any) -> None:
        base = {"amount": price, "currency": currency}
        self.do("define_plan", plan_key=key, name=key.title(), base_price=base, **terms)

    def start(self, plan_key: str, tenant: str = "t1", **extra: Any) -> UUID:
        result = self.do("start_subscription", tenant_id=tenant, plan_key=plan_key, **extra)
        return UUID(result["subscription_id"])

    def profile(self, tenant: str = "t1", *, country: str = "US", timezone: str = "UTC") -> None:
        self.do(
            "set_billing_profile",
            tenant_id=tenant,
            name="Acme Corp",
            email="billing@acme.example",
            country=country,
            tax_status="taxable",
            timezone=timezone,
            currency="USD",
        )

    def use(self, quantity: int, key: str, tenant: str = "t1", feature: str = "api") -> None:
        self.do(
            "consume_quota",
            tenant_id=tenant,
            feature_key=feature,
            amount=quantity,
            idempotency_key=key,
        )

    def run(self, until: datetime) -> dict[str, Any]:
        """A billing run up to `until` (the clock moves there)."""
        report = run_billing(self.system, self.index.ids, APP, self.clock, until)
        self.system.sync()
        return report

    def subscription(self, subscription_id: UUID) -> Subscription:
        found = self.system.aggregate(subscription_id)
        assert isinstance(found, Subscription)
        return found

    def invoices(self, tenant: str | None = None) -> list[Invoice]:
        """The app's invoices, numbered ones by number, then drafts by creation."""
        found = [self.system.aggregate(i) for i in self.index.ids(APP, "invoice", tenant)]
        numbered = sorted((i for i in found if i.state.number), key=lambda i: i.state.number)
        return numbered + [i for i in found if not i.state.number]


@pytest.fixture
def billing() -> Iterator[Billing]:
    driver = Billing()
    try:
        yield driver
    finally:
        driver.close()


def lines(invoice: Invoice) -> list[tuple[str, int, int]]:
    return [(li.kind.value, li.quantity, li.amount.amount) for li in invoice.state.lines]


def total_of(invoices: list[Invoice]) -> list[int]:
    return [invoice.totals.total.amount for invoice in invoices]


# --- Stripe: prorations ----------------------------------------------------------------------


def test_stripe_upgrade_halfway_credits_unused_time_and_charges_remaining_time() -> None:
    # "If a customer upgrades from a 10 USD monthly plan to a 20 USD option halfway through
    # the billing period, the customer is billed an additional 5 USD": -5 USD unused time on
    # the original plan, +10 USD remaining time on the new plan. STRIPE_PRORATIONS
    billing = Billing(utc(2026, 4, 1))  # April has 30 days: April 16 is halfway
    try:
        billing.plan("basic", 1000)
        billing.plan("premium", 2000)
        sub = billing.start("basic")
        billing.run(utc(2026, 4, 16))
        changed = billing.do("change_plan", subscription_id=str(sub), plan_key="premium")
        pending = changed["pending_prorations"]
        assert [(p["kind"], p["amount"]["amount"]) for p in pending] == [
            ("proration_credit", -500),
            ("proration_debit", 1000),
        ]
        assert pending[0]["description"].startswith("Unused time on Basic (v1)")
        assert pending[1]["description"].startswith("Remaining time on Premium (v1)")
        assert len(billing.invoices()) == 1  # prorations wait for the next invoice
        billing.run(utc(2026, 5, 1))
        renewal = billing.invoices()[-1]
        assert lines(renewal) == [
            ("base_fee", 1, 2000),
            ("proration_credit", 1, -500),
            ("proration_debit", 1, 1000),
        ]
        assert renewal.totals.total == Money(amount=2500, currency="USD")
    finally:
        billing.close()


def test_stripe_always_invoice_bills_the_pair_at_once_and_none_skips_it() -> None:
    # proration_behavior: always_invoice invoices the prorations immediately; none creates
    # no prorations. STRIPE_PRORATIONS
    billing = Billing(utc(2026, 4, 1))
    try:
        billing.plan("basic", 1000)
        billing.plan("premium", 2000)
        billing.plan("ultimate", 3000)
        sub = billing.start("basic")
        billing.run(utc(2026, 4, 16))
        reply = billing.do(
            "change_plan", subscription_id=str(sub), plan_key="premium", proration="always_invoice"
        )
        assert reply["pending_prorations"] == []
        now = billing.invoices()[-1]
        assert (now.state.origin, now.state.number, now.status) == (
            "proration",
            2,
            InvoiceStatus.OPEN,
        )
        assert lines(now) == [("proration_credit", 1, -500), ("proration_debit", 1, 1000)]
        skipped = billing.do(
            "change_plan", subscription_id=str(sub), plan_key="ultimate", proration="none"
        )
        assert skipped["pending_prorations"] == []
        billing.run(utc(2026, 5, 1))
        assert lines(billing.invoices()[-1]) == [("base_fee", 1, 3000)]
    finally:
        billing.close()


def test_stripe_a_seat_quantity_change_is_prorated_like_a_price_change() -> None:
    # Hosting at 9.99 USD per site and month, subscribed as a quantity; quantities "are
    # prorated when the subscription changes, including when you change just the
    # quantities". STRIPE_QUANTITIES, STRIPE_PRORATIONS. One site -> three sites halfway:
    # credit 9.99 x 1/2 = 4.995 -> -5.00, debit 29.97 x 1/2 = 14.985 -> 14.99 (half-up per
    # line); together 9.99, the two added sites for half a month.
    billing = Billing(utc(2026, 4, 1))
    try:
        seats = {"key": "sites", "kind": "seats", "seat_price": {"amount": 999, "currency": "USD"}}
        billing.plan("hosting", 0, features=[seats])
        sub = billing.start("hosting")
        billing.run(utc(2026, 4, 16))
        billing.do("change_seats", subscription_id=str(sub), quantity=3)
        billing.run(utc(2026, 5, 1))
        opening, renewal = billing.invoices()
        assert lines(opening) == [("base_fee", 1, 0), ("seats", 1, 999)]
        assert lines(renewal) == [
            ("base_fee", 1, 0),
            ("seats", 3, 2997),
            ("proration_credit", 1, -500),
            ("proration_debit", 1, 1499),
        ]
    finally:
        billing.close()


def test_stripe_prorates_to_the_second() -> None:
    # A Stripe API response: "Unused time on monthly widgets after 03 Mar 2017", -3.64 USD on
    # a 10.00 USD monthly plan, period start 1488568488 (the change) to end 1489449600
    # (2017-03-14 00:00 UTC). STRIPE_API_GIST. With the billing period February 14 to March 14
    # (28 days, the 14th being the anchor), 10.00 x 881,112 s / 2,419,200 s = 3.6422 -> 3.64.
    # "Stripe calculates proration down to the second": STRIPE_TO_THE_SECOND
    period = Period(start=utc(2017, 2, 14), end=utc(2017, 3, 14))
    at = datetime.fromtimestamp(1488568488, UTC)
    [credit] = credit_unused(period, at, ("monthly widgets", Money(amount=1000, currency="USD")))
    assert credit.amount == Money(amount=-364, currency="USD")
    assert credit.window.end == datetime.fromtimestamp(1489449600, UTC)


def test_proration_by_days_and_by_seconds_of_the_same_change() -> None:
    # Stripe prorates to the second (STRIPE_TO_THE_SECOND); Lago by days: "Subscription fees
    # are calculated on a pro rata basis according to the number of days" (LAGO_UPGRADES_OLD).
    # January (31 days), 31.00 -> 62.00 on January 16 at 18:00: by second 15.25 of 31 days
    # remain, by day the change counts from the start of January 16, so 16 of 31 days.
    for unit, expected in (("second", (-1525, 3050)), ("day", (-1600, 3200))):
        billing = Billing()
        try:
            billing.do("configure_billing", proration_unit=unit)
            billing.plan("small", 3100)
            billing.plan("large", 6200)
            sub = billing.start("small")
            billing.run(utc(2026, 1, 16, 18))
            reply = billing.do("change_plan", subscription_id=str(sub), plan_key="large")
            amounts = tuple(p["amount"]["amount"] for p in reply["pending_prorations"])
            assert amounts == expected, unit
        finally:
            billing.close()


# --- Stripe: billing cycle anchors -----------------------------------------------------------


def test_stripe_a_january_31_anchor_bills_on_the_last_day_of_shorter_months() -> None:
    # "A monthly subscription with a billing cycle anchor date of January 31 bills the last
    # day of the month closest to the anchor date, so February 28 (or February 29 in a leap
    # year), then March 31, April 30, and so on." STRIPE_BILLING_CYCLE
    for year, february in ((2026, 28), (2028, 29)):
        billing = Billing(utc(year, 1, 31))
        try:
            billing.plan("pro", 1000)
            billing.start("pro")
            billing.run(utc(year, 6, 1))
            fee_periods = [i.state.lines[0].period for i in billing.invoices()]
            starts = [(p.start.month, p.start.day) for p in fee_periods if p is not None]
            assert starts == [(1, 31), (2, february), (3, 31), (4, 30), (5, 31)], year
        finally:
            billing.close()


def test_stripe_a_september_2_anchor_always_bills_on_the_2nd() -> None:
    # "A monthly subscription with a billing cycle anchor date of September 2 always bills on
    # the 2nd day of the month." STRIPE_BILLING_CYCLE
    billing = Billing(utc(2025, 9, 2))
    try:
        billing.plan("pro", 1000)
        billing.start("pro")
        billing.run(utc(2026, 3, 1))
        assert [i.state.finalized_at.day for i in billing.invoices() if i.state.finalized_at] == [
            2
        ] * 6
    finally:
        billing.close()


# --- Stripe: coupons across invoices ---------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "extra", "expected"),
    [
        ("once", {}, [1500, 2000, 2000, 2000]),
        ("repeating", {"duration_in_periods": 3}, [1500, 1500, 1500, 2000]),
        ("forever", {}, [1500, 1500, 1500, 1500]),
    ],
)
def test_stripe_coupon_durations_over_four_monthly_invoices(
    billing: Billing, duration: str, extra: dict[str, Any], expected: list[int]
) -> None:
    # duration once: "applies to the first invoice"; repeating with duration_in_months 3: the
    # first three; forever: every invoice. STRIPE_COUPONS. 25 % off a 20.00 plan.
    billing.do("create_coupon", code="quarter", percent_off=25, duration=duration, **extra)
    billing.plan("pro", 2000)
    billing.start("pro", coupon="quarter")
    billing.run(utc(2026, 4, 1))
    assert total_of(billing.invoices()) == expected
    first = billing.invoices()[0]
    assert lines(first) == [("base_fee", 1, 2000), ("discount", 1, -500)]
    assert first.totals.discount_total == Money(amount=500, currency="USD")


def test_lago_an_amount_off_larger_than_the_invoices_is_carried_forward(billing: Billing) -> None:
    # "When the coupon only applies once and its value is higher than the invoice amount, the
    # remaining unused amount will be applied to the following invoices, until the coupon is
    # totally consumed" (a 50.00 USD coupon). LAGO_COUPONS. On 20.00 monthly invoices it takes
    # 20.00, 20.00, then the 10.00 left.
    amount = {"amount": 5000, "currency": "USD"}
    billing.do("create_coupon", code="startup", amount_off=amount, carry_forward=True)
    billing.plan("pro", 2000)
    billing.start("pro", coupon="startup")
    billing.run(utc(2026, 4, 1))
    invoices = billing.invoices()
    assert total_of(invoices) == [0, 0, 1000, 2000]
    assert [i.totals.discount_total.amount for i in invoices] == [2000, 2000, 1000, 0]
    assert [i.amount_due.amount for i in invoices] == [0, 0, 1000, 2000]


# --- tax on a discounted invoice -------------------------------------------------------------


def test_lago_exclusive_tax_on_the_net_after_the_coupon(billing: Billing) -> None:
    # Subscription 50 + usage 20 = 70, a 10 coupon, then 10 % tax on the net 60: 6, total 66.
    # LAGO_COUPONS_BEFORE_TAX. Tally taxes each line on its share of the discount (5000 and
    # 2000 take 714 and 286 of 1000): 10 % of 4286 and of 1714, rounded once per line: 429 + 171.
    usage = {"model": "per_unit", "unit_price": {"amount": 2, "currency": "USD"}}
    billing.plan(
        "pro",
        5000,
        features=[{"key": "api", "kind": "metered", "enforcement": "soft", "overage": usage}],
    )
    billing.do("create_coupon", code="ten", amount_off={"amount": 1000, "currency": "USD"})
    billing.do("set_tax_rate", country="FR", rate_percent="10.0", behavior="exclusive")
    billing.profile(country="FR")
    sub = billing.start("pro")
    billing.run(T0)
    billing.use(1000, "calls-1")
    billing.do("attach_coupon", subscription_id=str(sub), code="ten")
    billing.run(utc(2026, 2, 1))
    invoice = billing.invoices()[-1]
    assert lines(invoice) == [
        ("base_fee", 1, 5000),
        ("usage", 1000, 2000),
        ("discount", 1, -1000),
        ("tax", 1, 429),
        ("tax", 1, 171),
    ]
    tax = invoice.totals
    assert (tax.subtotal.amount, tax.discount_total.amount, tax.tax_total.amount) == (
        7000,
        1000,
        600,
    )
    assert tax.total == Money(amount=6600, currency="USD")


def test_stripe_inclusive_tax_on_a_discounted_invoice(billing: Billing) -> None:
    # 600 EUR with 10 % tax included: "the tax amount is 54.55 EUR", the total stays 600 EUR.
    # STRIPE_INCLUSIVE_TAX. Here 660.00 less a 60.00 coupon leaves 600.00, the tax included
    # in it is 600 - 600 / 1.1 = 54.545 -> 54.55 and the total does not grow.
    billing.plan("pro", 66000, "EUR")
    billing.do("create_coupon", code="sixty", amount_off={"amount": 6000, "currency": "EUR"})
    billing.do("set_tax_rate", country="DE", rate_percent="10.0", behavior="inclusive")
    billing.profile(country="DE", timezone="Europe/Berlin")
    billing.start("pro", coupon="sixty")
    billing.run(T0)
    [invoice] = billing.invoices()
    assert lines(invoice) == [("base_fee", 1, 66000), ("discount", 1, -6000), ("tax", 1, 5455)]
    assert invoice.state.lines[-1].tax_inclusive
    assert invoice.totals.total == Money(amount=60000, currency="EUR")
    assert invoice.totals.inclusive_tax == Money(amount=5455, currency="EUR")


# --- zero-decimal currencies -----------------------------------------------------------------


def test_a_jpy_invoice_is_in_whole_yen(billing: Billing) -> None:
    # JPY is a zero-decimal currency: amounts are whole yen ("to charge ¥500, provide an
    # amount value of 500"). STRIPE_ZERO_DECIMAL. 980 -> 1,980 JPY on April 16 (15 of 30
    # days left): credit -490, debit 990, each a whole yen.
    billing.clock.set(utc(2026, 4, 1))
    billing.plan("lite", 980, "JPY")
    billing.plan("plus", 1980, "JPY")
    sub = billing.start("lite")
    billing.run(utc(2026, 4, 16))
    billing.do("change_plan", subscription_id=str(sub), plan_key="plus")
    billing.run(utc(2026, 5, 1))
    opening, renewal = billing.invoices()
    assert lines(opening) == [("base_fee", 1, 980)]
    assert lines(renewal) == [
        ("base_fee", 1, 1980),
        ("proration_credit", 1, -490),
        ("proration_debit", 1, 990),
    ]
    assert renewal.totals.total == Money(amount=2480, currency="JPY")


# --- Lago: pay in advance / in arrears, trial, upgrade in arrears ----------------------------


def test_lago_base_fee_in_advance_or_in_arrears_and_usage_always_in_arrears() -> None:
    # "If the toggle is on, the Plan is paid upfront (in advance) for the period"; otherwise
    # "paid for the past period (in arrears)". "Additional charges for per-usage Billable
    # metrics are always paid in arrears". LAGO_PLAN_MODEL. 1,000 calls at 0.05 USD = 50 USD.
    usage = {"model": "per_unit", "unit_price": {"amount": 5, "currency": "USD"}}
    api = {"key": "api", "kind": "metered", "enforcement": "soft", "overage": usage}
    for timing, expected in (
        ("in_advance", [[("base_fee", 1, 4900)], [("base_fee", 1, 4900), ("usage", 1000, 5000)]]),
        ("in_arrears", [[("base_fee", 1, 4900), ("usage", 1000, 5000)]]),
    ):
        billing = Billing()
        try:
            billing.plan("pro", 4900, features=[api], base_fee_timing=timing)
            billing.start("pro")
            billing.run(T0)
            billing.use(1000, "january")
            billing.run(utc(2026, 2, 1))
            assert [lines(i) for i in billing.invoices()] == expected, timing
            last = billing.invoices()[-1].state
            assert last.period == Period(start=T0, end=utc(2026, 2, 1))
        finally:
            billing.close()


def test_lago_trial_in_advance_by_days_and_tallys_anniversary_period() -> None:
    # "You create a monthly plan of $50 that needs to be paid in advance, with a trial period
    # of 5 days. If the customer's subscription starts on April 1st, then Lago will
    # immediately issue an invoice for the period April 6th to April 30th ... $50 x 25 days
    # due / 30 days in April = $41.67." LAGO_PLAN_MODEL
    # Lago bills calendar months there; Tally bills anniversary periods from the trial's end
    # (as Stripe: the anchor defaults to "the trial end date", STRIPE_BILLING_CYCLE), so the
    # first invoice is a whole month from April 6. The proration-by-day rule gives Lago's
    # number for Lago's calendar period.
    april = Period(start=utc(2026, 4, 1), end=utc(2026, 5, 1))
    share = fraction_of(april, Period(start=utc(2026, 4, 6), end=april.end), "day")
    assert share == Fraction(25, 30)
    assert Money(amount=5000, currency="USD").scale(share).amount == 4167
    billing = Billing(utc(2026, 4, 1))
    try:
        billing.plan("pro", 5000, trial_days=5)
        billing.start("pro")
        billing.run(utc(2026, 4, 5, 23))
        assert billing.invoices() == []  # the trial is not billed
        billing.run(utc(2026, 4, 6))
        [first] = billing.invoices()
        assert lines(first) == [("base_fee", 1, 5000)]
        assert first.state.period == Period(start=utc(2026, 4, 6), end=utc(2026, 5, 6))
    finally:
        billing.close()


def test_lago_upgrade_of_a_plan_paid_in_arrears() -> None:
    # "A customer subscribes to Plan A (€100/month, paid in arrears, calendar billing) on
    # January 1st, then upgrades to Plan B (€200/month) on January 15th. January 15th -
    # Invoice for Plan A: 14 days prorated = €45.16 (14/31 x €100)"; at the end of the
    # period "a second invoice is issued for the prorated portion of the new plan (i.e., the
    # days used after the upgrade)": 17/31 x €200 = €109.68. LAGO_UPGRADES
    # Tally puts it on one invoice at the period's end: Plan B for the period, less Plan B for
    # the 14 days before the change (-90.32), plus Plan A for them (+45.16): 154.84, Lago's
    # 45.16 + 109.68.
    billing = Billing()
    try:
        billing.plan("plan-a", 10000, "EUR", base_fee_timing="in_arrears")
        billing.plan("plan-b", 20000, "EUR", base_fee_timing="in_arrears")
        sub = billing.start("plan-a")
        billing.run(utc(2026, 1, 15))
        billing.do("change_plan", subscription_id=str(sub), plan_key="plan-b")
        assert billing.invoices() == []
        billing.run(utc(2026, 2, 1))
        [invoice] = billing.invoices()
        assert lines(invoice) == [
            ("base_fee", 1, 20000),
            ("proration_credit", 1, -9032),
            ("proration_debit", 1, 4516),
        ]
        assert invoice.totals.total == Money(amount=4516 + 10968, currency="EUR")
    finally:
        billing.close()


# --- Kill Bill: in advance after a trial, a change of plan by day, in arrears -----------------


def test_kill_bill_in_advance_after_a_30_day_trial() -> None:
    # shotgun-monthly: a 30-day TRIAL, then EVERGREEN at 249.95 USD a month, subscribed on
    # 2012-04-01; the invoice of 2012-05-01 has a RECURRING item for the service period
    # 2012-05-01 to 2012-06-01 of 249.95. KILL_BILL_INVOICES (Kill Bill also writes a 0.00
    # FIXED item for the trial; Tally makes no invoice for a trial.)
    billing = Billing(utc(2012, 4, 1, 0, 1, 14))
    try:
        billing.plan("shotgun-monthly", 24995, trial_days=30)
        billing.start("shotgun-monthly")
        billing.run(utc(2012, 4, 30))
        assert billing.invoices() == []
        billing.run(utc(2012, 5, 2))
        [invoice] = billing.invoices()
        assert lines(invoice) == [("base_fee", 1, 24995)]
        period = invoice.state.period
        assert period is not None
        assert (period.start.date().isoformat(), period.end.date().isoformat()) == (
            "2012-05-01",
            "2012-06-01",
        )
    finally:
        billing.close()


def test_kill_bill_change_of_plan_prorated_by_day() -> None:
    # On 2012-05-02 the subscriber of shotgun-monthly (249.95, paid for 2012-05-01 to
    # 2012-06-01) changes to blowdart-monthly (its DISCOUNT phase, 9.95): the new RECURRING
    # item for 2012-05-02 to 2012-06-01 is 9.63 (30 of 31 days). KILL_BILL_INVOICES
    # Kill Bill's repair shows -239.95 only because an administrator had adjusted that item
    # by 10.00 first; unadjusted, 30 of 31 days of 249.95 is 241.89, which Tally credits.
    billing = Billing(utc(2012, 4, 1, 0, 1, 14))
    try:
        billing.do("configure_billing", proration_unit="day")
        billing.plan("shotgun-monthly", 24995, trial_days=30)
        billing.plan("blowdart-monthly", 995)
        sub = billing.start("shotgun-monthly")
        billing.run(utc(2012, 5, 2, 0, 37, 59))
        reply = billing.do(
            "change_plan",
            subscription_id=str(sub),
            plan_key="blowdart-monthly",
            proration="always_invoice",
        )
        invoice = reply["invoice"]
        assert [(li["kind"], li["amount"]["amount"]) for li in invoice["lines"]] == [
            ("proration_credit", -24189),
            ("proration_debit", 963),
        ]
        window = invoice["lines"][1]["period"]
        assert (window["start"][:10], window["end"][:10]) == ("2012-05-02", "2012-06-01")
        # the credit beyond the charge becomes the account's credit, as Kill Bill's CBA
        assert invoice["amount_due"]["amount"] == 0
        assert invoice["balance_created"]["amount"] == 24189 - 963
    finally:
        billing.close()


def test_kill_bill_in_arrear_never_credits_and_in_advance_credits_a_cancel() -> None:
    # "IN_ARREAR: ... each recurring subscription is charged at the end of the period (in
    # arrear), and as a consequence there is never any pro-ration credit generated";
    # "IN_ADVANCE: ... this can lead to pro-ration credits upon certain cancellation".
    # KILL_BILL_INVOICES. 31.00 a month, canceled on January 11 (10 of 31 days used).
    for timing, expected in (
        ("in_arrears", [[("base_fee", 1, 1000)]]),
        ("in_advance", [[("base_fee", 1, 3100)], [("proration_credit", 1, -2100)]]),
    ):
        billing = Billing()
        try:
            billing.plan("monthly", 3100, base_fee_timing=timing)
            sub = billing.start("monthly")
            billing.run(utc(2026, 1, 11))
            billing.do(
                "cancel_subscription", subscription_id=str(sub), proration="create_prorations"
            )
            billing.run(utc(2026, 3, 1))
            invoices = billing.invoices()
            assert [lines(i) for i in invoices] == expected, timing
            assert invoices[-1].state.origin == "final"
        finally:
            billing.close()
