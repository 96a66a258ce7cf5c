"""Hypothesis properties of the billing engine over random histories (subscriptions, usage,
plan and seat changes, pauses, cancels, coupons, tax and billing runs on the test clock):

- every invoice's total is its charge lines - its discounts + its exclusive tax, and its
  discounts never pass its charges;
- a proration's credit + debit is the price difference times the remaining fraction of the
  period, within 1 minor unit per line (each line rounded once, half-up);
- a billing run twice is a billing run once: the second records no event;
- once the clock is past every period, the revenue recognized over a subscription's life is
  what was invoiced, net of discounts and without tax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any
from uuid import UUID, uuid4

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.invoice import Invoice, InvoiceStatus, LineKind
from domain.money import Money
from domain.period import Interval, Period
from domain.proration import FeeTiming, ProrationItem, ProrationUnit, fraction_of, prorate
from domain.subscription import PlanChanged, SeatsChanged, Subscription
from tests.factories import T0, cause, terms
from tests.unit.test_billing_examples import APP, Billing

FAR = datetime(2100, 1, 1, tzinfo=UTC)
TENANTS = ("t1", "t2", "t3")
USAGE = {
    "model": "graduated",
    "tiers": [
        {"up_to": 100, "unit_price": {"amount": 3, "currency": "USD"}},
        {"up_to": None, "unit_price": {"amount_decimal": "0.5", "currency": "USD"}},
    ],
}


def seats(price: int) -> dict[str, Any]:
    return {
        "key": "seats",
        "kind": "seats",
        "limit": 20,
        "seat_price": {"amount": price, "currency": "USD"},
    }


API = {"key": "api", "kind": "metered", "limit": 50, "enforcement": "soft", "overage": USAGE}
# (key, price, timing, features): tenants change plans within one fee timing
PLANS: dict[str, tuple[int, str, list[dict[str, Any]]]] = {
    "basic": (1000, "in_advance", [API, seats(500)]),
    "plus": (2900, "in_advance", [API, seats(700)]),
    "trial": (1500, "in_advance", [API]),
    "meter": (700, "in_arrears", [API, seats(300)]),
    "meter-plus": (1900, "in_arrears", [API, seats(400)]),
}
COUPONS: dict[str, dict[str, Any]] = {
    "ten": {"percent_off": 10, "duration": "forever"},
    "q2": {"percent_off": "12.5", "duration": "repeating", "duration_in_periods": 2},
    "credit": {"amount_off": {"amount": 1500, "currency": "USD"}, "carry_forward": True},
    "five": {"amount_off": {"amount": 500, "currency": "USD"}, "duration": "once"},
}
PROFILES = {"t1": ("US", "America/New_York"), "t2": ("DE", "Europe/Berlin")}


# --- the random history ------------------------------------------------------------------


@dataclass
class History:
    """Applies generated steps; refusals (a pause of a canceled subscription...) are fine,
    errors are not."""

    billing: Billing
    subscriptions: dict[str, UUID] = field(default_factory=dict)

    @classmethod
    def open(cls, grace_hours: int, unit: str) -> History:
        billing = Billing()
        for key, (price, timing, features) in PLANS.items():
            trial = 10 if key == "trial" else 0
            billing.plan(key, price, features=features, base_fee_timing=timing, trial_days=trial)
        for code, coupon in COUPONS.items():
            billing.do("create_coupon", code=code, **coupon)
        billing.do("set_tax_rate", country="US", rate_percent="8.875", behavior="exclusive")
        billing.do("set_tax_rate", country="DE", rate_percent="19.0", behavior="inclusive")
        for tenant, (country, zone) in PROFILES.items():
            billing.profile(tenant, country=country, timezone=zone)
        billing.do("configure_billing", grace_period_hours=grace_hours, proration_unit=unit)
        return cls(billing)

    def subscription(self, tenant: str) -> str | None:
        found = self.subscriptions.get(tenant)
        return str(found) if found else None

    def apply(self, step: tuple[Any, ...]) -> None:
        kind, tenant, *args = step
        sub = self.subscription(tenant)
        if kind == "start":
            self.start(tenant, *args)
        elif kind == "run":
            self.run(timedelta(hours=args[0]))
        elif sub is None:
            return
        elif kind == "change_plan":
            self.change_plan(tenant, sub, *args)
        elif kind == "seats":
            self.change_seats(tenant, sub, *args)
        elif kind == "use":
            self.billing.send(
                "consume_quota",
                tenant_id=tenant,
                feature_key="api",
                amount=args[0],
                idempotency_key=uuid4().hex,
            )
        elif kind == "cancel":
            self.billing.send(
                "cancel_subscription",
                subscription_id=sub,
                at_period_end=args[0],
                proration=args[1],
            )
        else:  # pause, resume
            self.billing.send(f"{kind}_subscription", subscription_id=sub)

    def start(self, tenant: str, plan: str, coupon: str | None) -> None:
        extra = {"coupon": coupon} if coupon else {}
        reply = self.billing.send("start_subscription", tenant_id=tenant, plan_key=plan, **extra)
        if reply["ok"]:
            self.subscriptions[tenant] = UUID(reply["result"]["subscription_id"])

    def change_plan(self, tenant: str, sub: str, plan: str, timing: str, proration: str) -> None:
        state = self.billing.subscription(UUID(sub)).state
        timings = {state.terms.base_fee_timing, PLANS[plan][1]}
        if state.scheduled_terms is not None:
            timings.add(state.scheduled_terms.base_fee_timing)
        if len(timings) > 1:
            return  # a change of fee timing is not part of these histories (see the report)
        self.billing.send(
            "change_plan", subscription_id=sub, plan_key=plan, timing=timing, proration=proration
        )

    def change_seats(self, tenant: str, sub: str, quantity: int, proration: str) -> None:
        state = self.billing.subscription(UUID(sub)).state
        if not any(f.seat_price for f in state.terms.features):
            return  # seats of a plan without a seat price crash today (see the report)
        self.billing.send(
            "change_seats", subscription_id=sub, quantity=quantity, proration=proration
        )

    def run(self, step: timedelta) -> dict[str, Any]:
        until = self.billing.clock.now() + step
        report = self.billing.run(until)
        assert report["errors"] == [], report
        assert report["complete"], report
        return report

    def end(self) -> None:
        """Bill another month or so, cancel whatever is live and bill everything up to far
        past every period."""
        self.run(timedelta(days=40))
        for tenant in self.subscriptions:
            self.billing.send(
                "cancel_subscription",
                subscription_id=self.subscription(tenant),
                proration="create_prorations",
            )
        far = max(FAR, self.billing.clock.now() + timedelta(days=3660))
        self.billing.run(far)
        # a draft made during a run is finalized by the next run, even when its grace
        # period ended before the first run's `until` (see the report)
        self.billing.run(far)


plan_keys = st.sampled_from(sorted(PLANS))
coupons = st.none() | st.sampled_from(sorted(COUPONS))
prorations = st.sampled_from(["create_prorations", "create_prorations", "always_invoice", "none"])
tenants = st.sampled_from(TENANTS)
change_plans = st.tuples(
    st.just("change_plan"),
    tenants,
    plan_keys,
    st.sampled_from(["now", "now", "period_end"]),
    prorations,
)
steps = st.one_of(
    st.tuples(st.just("start"), tenants, plan_keys, coupons),
    st.tuples(st.just("run"), tenants, st.integers(1, 24 * 45)),
    st.tuples(st.just("run"), tenants, st.integers(1, 24 * 45)),
    change_plans,
    change_plans,
    st.tuples(st.just("seats"), tenants, st.integers(1, 20), prorations),
    st.tuples(st.just("use"), tenants, st.integers(1, 400)),
    st.tuples(st.just("pause"), tenants),
    st.tuples(st.just("resume"), tenants),
    st.tuples(
        st.just("cancel"),
        tenants,
        st.booleans(),
        st.sampled_from(["none", "create_prorations", "always_invoice"]),
    ),
)
# every tenant starts first, so the random steps have subscriptions to act on
prologues = st.tuples(
    *(st.tuples(st.just("start"), st.just(tenant), plan_keys, coupons) for tenant in TENANTS)
).map(list)
histories = st.tuples(prologues, st.lists(steps, min_size=4, max_size=30)).map(
    lambda parts: parts[0] + parts[1]
)
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- checks shared with the stateful test ----------------------------------------------------


def check_totals(invoice: Invoice) -> None:
    """total = charge lines - discounts + exclusive tax; discounts never pass the charges;
    every tax line taxes a charge line of the invoice."""
    state = invoice.state
    zero = Money.zero(state.currency)
    charges = [li for li in state.lines if li.kind not in (LineKind.DISCOUNT, LineKind.TAX)]
    discounts = [li for li in state.lines if li.kind is LineKind.DISCOUNT]
    taxes = [li for li in state.lines if li.kind is LineKind.TAX]
    charged = sum((li.amount for li in charges), zero)
    discounted = -sum((li.amount for li in discounts), zero)
    exclusive = sum((li.amount for li in taxes if not li.tax_inclusive), zero)
    assert discounted <= max(charged, zero), state.lines
    assert invoice.totals.subtotal == charged
    assert invoice.totals.discount_total == discounted
    assert invoice.totals.total == charged - discounted + exclusive
    assert {li.applies_to for li in taxes} <= {li.line_id for li in charges}
    if invoice.status is not InvoiceStatus.DRAFT:
        assert invoice.state.totals == invoice.totals  # frozen at finalize
        due = invoice.amount_due + (invoice.state.balance_applied or zero)
        assert due == max(invoice.totals.total, zero)


def revenue_of(billing: Billing) -> dict[str, int]:
    """Everything recognized up to now (past every period once History.end ran), per
    currency."""
    as_of = billing.clock.now().isoformat()
    answer = billing.system.query("revenue", app_id=APP, granularity="month", as_of=as_of)
    recognized: dict[str, int] = {}
    for row in answer["recognized"]:
        recognized[row["currency"]] = recognized.get(row["currency"], 0) + row["amount"]
    return recognized


def invoiced_net(invoices: list[Invoice]) -> dict[str, int]:
    """What finalized, not voided invoices billed, net of discounts, without tax."""
    net: dict[str, int] = {}
    for invoice in invoices:
        if invoice.status in (InvoiceStatus.DRAFT, InvoiceStatus.VOID):
            continue
        totals = invoice.totals
        inclusive = totals.inclusive_tax.amount if totals.inclusive_tax else 0
        amount = totals.subtotal.amount - totals.discount_total.amount - inclusive
        net[invoice.state.currency] = net.get(invoice.state.currency, 0) + amount
    return {currency: amount for currency, amount in net.items() if amount}


def check_proration_pair(
    items: list[ProrationItem],
    period: Period,
    exact: Fraction,
    unit: ProrationUnit = "second",
    zone: str = "UTC",
) -> None:
    """The lines of one fee's change (a line that rounds to zero is left out): each within
    half a minor unit of its exact amount, so the pair within 1 of (new - old) x the
    fraction of the period re-priced."""
    total = 0
    for item in items:
        share = fraction_of(period, item.window, unit, zone)
        line = Fraction(item.unit_amount.amount) * share
        assert abs(Fraction(item.amount.amount) - line) <= Fraction(1, 2), item
        total += item.amount.amount
    assert len(items) <= 2
    assert abs(total - exact) <= 1, (items, exact)


# --- the properties --------------------------------------------------------------------------


@SETTINGS
@given(
    history=histories,
    grace=st.sampled_from([0, 0, 30]),
    unit=st.sampled_from(["second", "day"]),
)
def test_every_invoice_of_a_random_history_adds_up_and_revenue_equals_what_was_invoiced(
    history: list[tuple[Any, ...]], grace: int, unit: str
) -> None:
    run = History.open(grace, unit)
    try:
        for step in history:
            run.apply(step)
        run.end()
        invoices = run.billing.invoices()
        for invoice in invoices:
            check_totals(invoice)
            assert invoice.status is not InvoiceStatus.DRAFT  # the grace period ended
        numbers = [i.state.number for i in invoices]
        assert numbers == list(range(1, len(invoices) + 1))
        assert revenue_of(run.billing) == invoiced_net(invoices)
    finally:
        run.billing.close()


@SETTINGS
@given(history=histories)
def test_a_billing_run_twice_records_nothing_the_second_time(
    history: list[tuple[Any, ...]],
) -> None:
    run = History.open(0, "second")
    try:
        recorder = run.billing.system.ledger.recorder
        for step in history:
            run.apply(step)
            if step[0] != "run":
                continue
            head = recorder.max_notification_id()
            again = run.billing.run(run.billing.clock.now())
            assert recorder.max_notification_id() == head, again
            assert (again["invoiced"], again["renewed"], again["finalized"]) == (0, 0, 0)
    finally:
        run.billing.close()


instants_in = st.integers(1, 10**6 - 1).map(lambda k: Fraction(k, 10**6))


@settings(max_examples=200, deadline=None)
@given(
    interval=st.sampled_from([Interval.DAY, Interval.MONTH, Interval.YEAR]),
    start=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
    ),
    at=instants_in,
    old=st.integers(0, 10**7),
    new=st.integers(0, 10**7),
    timing=st.sampled_from(["in_advance", "in_arrears"]),
    unit=st.sampled_from(["second", "day"]),
    zone=st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]),
    currency=st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_credit_plus_debit_is_the_price_difference_over_the_remaining_fraction(
    interval: Interval,
    start: datetime,
    at: Fraction,
    old: int,
    new: int,
    timing: FeeTiming,
    unit: ProrationUnit,
    zone: str,
    currency: str,
) -> None:
    period = Period.starting(start, interval, timezone=zone)
    _, total = period.fraction(period)
    instant = period.start + timedelta(microseconds=int(total * at))
    before, after = Money(amount=old, currency=currency), Money(amount=new, currency=currency)
    # in advance the old price was charged: credit it, charge the new one; in arrears the
    # new price will be: credit it, charge the old one (domain/proration.py)
    charged, due = (before, after) if timing == "in_advance" else (after, before)
    items = prorate(
        period,
        instant,
        ("old", charged),
        ("new", due),
        timing=timing,
        unit=unit,
        timezone=zone,
    )
    if not items:
        return
    window = items[0].window
    assert all(item.window == window for item in items)
    share = fraction_of(period, window, unit, zone)
    sign = 1 if timing == "in_advance" else -1
    check_proration_pair(items, period, sign * Fraction(new - old) * share, unit, zone)
    if unit == "second":
        assert window.start == instant or window.end == instant


@settings(max_examples=100, deadline=None)
@given(
    renewals=st.integers(0, 3),
    offset=st.integers(1, 30 * 86_400 - 1),
    old=st.integers(0, 10**6),
    new=st.integers(0, 10**6),
    old_seats=st.integers(1, 50),
    new_seats=st.integers(1, 50),
    timing=st.sampled_from(["in_advance", "in_arrears"]),
    zone=st.sampled_from(["UTC", "America/New_York", "Pacific/Auckland"]),
)
def test_a_plan_or_seat_change_prorates_each_fee_within_a_minor_unit(
    renewals: int,
    offset: int,
    old: int,
    new: int,
    old_seats: int,
    new_seats: int,
    timing: FeeTiming,
    zone: str,
) -> None:
    def plan(key: str, price: int, seat: int) -> Any:
        seat_feature = seats(seat) | {"limit": None}
        made = terms(key, price=price, features=[seat_feature])
        return made.model_copy(update={"base_fee_timing": timing})

    sub = Subscription.start(
        uuid4(),
        APP,
        "t1",
        plan("a", old, old // 7 + 1),
        cause(),
        timezone=zone,
        seats=old_seats,
    )
    for _ in range(renewals):
        sub.renew(cause(sub.state.current_period.end))
    period = sub.state.current_period
    # the period's fee was invoiced at its start (in advance the change then credits it)
    sub.record_invoice(uuid4(), cause(period.start), period.start, 0)
    at = period.start + timedelta(seconds=offset % int(period.duration.total_seconds()) or 1)
    sign = 1 if timing == "in_advance" else -1
    sub.change_plan(plan("b", new, new // 7 + 1), cause(at))
    changed = sub.pending_events[-1]
    assert isinstance(changed, PlanChanged)
    base = [i for i in changed.prorations if "seat" not in i.description]
    if base:
        share = fraction_of(period, base[0].window)
        check_proration_pair(base, period, sign * Fraction(new - old) * share)
    if new_seats != old_seats:
        sub.change_seats(new_seats, cause(at + timedelta(seconds=1)))
        event = sub.pending_events[-1]
        assert isinstance(event, SeatsChanged) and event.seat_price is not None
        if event.prorations:
            share = fraction_of(period, event.prorations[0].window)
            difference = event.seat_price.amount * (new_seats - old_seats)
            check_proration_pair(event.prorations, period, sign * difference * share)
    assert T0 <= period.start
