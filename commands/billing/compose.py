"""Compose a subscription's invoice for a billing point: the one code path behind billing
runs, immediate proration invoices and the upcoming-invoice preview.

Order (docs/pricing.md "Invoices"): fees, usage and prorations; then the subscription's
coupons on that subtotal; then tax per line on its discounted net (each line's share of
the discount by largest remainder), rounded once per line; the credit balance is drawn last,
at finalize.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from uuid import UUID

from commands.billing.late_usage import late_usage
from commands.billing.ports import NoPaymentCollector, NoUsage, PaymentCollector, UsageReader
from commands.billing.strategies import (
    AggregatedUsage,
    AllowAllCoupons,
    CouponValidator,
    DomainPricing,
    NamedStrategies,
    NoSamples,
    PricingStrategy,
    RateTableTax,
    TaxCalculator,
    TaxContext,
    UsageAggregator,
    UsageSamples,
)
from commands.profiles.lookup import profile_terms
from commands.tax.rates import rate_table
from commands.unit_of_work import UnitOfWork
from domain.billed_usage import UsageAdjustment
from domain.billing import (
    BillingPoint,
    UsageTotal,
    commitment_lines,
    discount_line,
    fee_lines,
    priced_features,
    proration_lines,
    usage_lines,
)
from domain.billing_settings import BillingSettings, BillingSettingsTerms, billing_settings_id
from domain.catalog import PlanTerms
from domain.discount import DiscountLine, SubscriptionDiscounts, subscription_discounts_id
from domain.invoice import InvoiceLine, LineKind, compute_totals
from domain.money import Money
from domain.progressive import deduction_lines
from domain.subscription import Subscription
from domain.tax import TaxableLine, TaxBehavior, TaxLine, TaxRequest, allocate_discount


@dataclass(frozen=True)
class BillingPorts:
    """What the billing engine reads outside the event store, and the strategies it prices
    and taxes with (defaults: the domain's rules; plugins may replace them)."""

    usage: UsageReader = field(default_factory=NoUsage)
    payments: PaymentCollector = field(default_factory=NoPaymentCollector)
    pricing: PricingStrategy = field(default_factory=DomainPricing)
    tax: TaxCalculator = field(default_factory=RateTableTax)
    aggregator: UsageAggregator | None = None  # None: the built-in meters
    samples: UsageSamples = field(default_factory=NoSamples)  # the facts an aggregator reads
    named: NamedStrategies = field(default_factory=NamedStrategies)  # what plan terms name
    coupons: CouponValidator = field(default_factory=AllowAllCoupons)
    resolved: bool = False  # for_terms applied

    def for_terms(self, terms: PlanTerms) -> BillingPorts:
        """These ports with the strategies `terms` name in place of the settings' ones."""
        if self.resolved:
            return self
        aggregator = self.named.usage_for(terms, self.aggregator)
        usage = self.usage
        if aggregator is not None:
            usage = AggregatedUsage(usage, self.samples, aggregator)
        pricing = self.named.pricing_for(terms, self.pricing)
        tax = self.named.tax_for(terms, self.tax)
        return replace(self, usage=usage, pricing=pricing, tax=tax, resolved=True)


@dataclass(frozen=True)
class ComposedInvoice:
    lines: list[InvoiceLine]
    prorations_billed: int
    credited: list[UsageAdjustment] = field(default_factory=list)  # late usage credited


def settings_of(uow: UnitOfWork, app_id: str) -> BillingSettingsTerms:
    """The app's billing settings (the defaults until it sets some)."""
    found = uow.find(BillingSettings, billing_settings_id(app_id))
    return found.state.terms if found is not None else BillingSettingsTerms()


def compose(
    uow: UnitOfWork,
    subscription: Subscription,
    point: BillingPoint,
    ports: BillingPorts,
    *,
    cutoff: int | None,
    invoice_id: UUID | None,
) -> ComposedInvoice:
    """The lines of the point's invoice; with `invoice_id` None nothing is recorded (a
    preview), else the coupons record what they take off this invoice."""
    state = subscription.state
    ports = ports.for_terms(point.usage_terms)
    usage = read_usage(ports.usage, subscription, point, cutoff)
    late = late_usage(uow, ports.usage, subscription, cutoff, invoice_id, ports.pricing)
    rated = usage_lines(point, usage, ports.pricing.rate_feature)
    true_up = commitment_lines(state, point, rated)  # the period's whole usage, interim too
    used = rated + deduction_lines(state, point.usage_period)
    lines = fee_lines(state, point) + used + true_up + late.lines + proration_lines(state)
    return ComposedInvoice(
        lines=finish(uow, subscription, lines, invoice_id, ports=ports),
        prorations_billed=len(state.pending_prorations),
        credited=late.credited,
    )


def finish(
    uow: UnitOfWork,
    subscription: Subscription,
    lines: list[InvoiceLine],
    invoice_id: UUID | None,
    *,
    counts_period: bool = True,
    ports: BillingPorts | None = None,
) -> list[InvoiceLine]:
    """Charges + the subscription's discounts + tax on the discounted nets."""
    discounts = discount_lines(uow, subscription, lines, invoice_id, counts_period)
    calculator = ports.for_terms(subscription.state.terms).tax if ports else RateTableTax()
    return lines + discounts + tax_lines(uow, subscription, lines, discounts, calculator)


def read_usage(
    reader: UsageReader, subscription: Subscription, point: BillingPoint, cutoff: int | None
) -> dict[str, UsageTotal]:
    features = [(f.key, f.meter.value) for f in priced_features(point.usage_terms)]
    if point.usage_period is None or not features:
        return {}
    state = subscription.state
    return reader.totals(state.app_id, state.tenant_id, features, point.usage_period, cutoff)


def discount_lines(
    uow: UnitOfWork,
    subscription: Subscription,
    lines: Sequence[InvoiceLine],
    invoice_id: UUID | None,
    counts_period: bool = True,
) -> list[InvoiceLine]:
    """The coupons' lines for this subtotal (recorded on the discounts when invoicing)."""
    state = subscription.state
    discounts = uow.find(
        SubscriptionDiscounts, subscription_discounts_id(state.app_id, subscription.id)
    )
    if discounts is None or not lines:
        return []
    subtotal = compute_totals(state.price.currency, lines).subtotal
    if subtotal.amount < 0:
        return credit_discounts(discounts, subtotal)
    taken: list[DiscountLine] = (
        discounts.preview(subtotal)
        if invoice_id is None
        else discounts.apply(invoice_id, subtotal, uow.cause, counts_period=counts_period)
    )
    return [
        discount_line(i, d.description, d.amount, d.source_event_ids) for i, d in enumerate(taken)
    ]


def credit_discounts(discounts: SubscriptionDiscounts, subtotal: Money) -> list[InvoiceLine]:
    """A credit (a downgrade's proration) gives back what was paid: the live percent coupons
    take their share off it too, as a positive adjustment (nothing recorded on the coupons:
    a credit uses up no invoice or period of theirs)."""
    percent_codes = {c.code for c in discounts.coupons if c.terms.percent_off is not None}
    shares = [d for d in discounts.preview(-subtotal) if d.code in percent_codes]
    return [
        InvoiceLine(
            line_id=f"discount:{index}",
            kind=LineKind.ADJUSTMENT,
            description=f"{share.description} on the credit",
            quantity=1,
            unit_amount=share.amount,
            amount=share.amount,
            source_event_ids=share.source_event_ids,
        )
        for index, share in enumerate(shares)
    ]


def tax_lines(
    uow: UnitOfWork,
    subscription: Subscription,
    charges: Sequence[InvoiceLine],
    discounts: Sequence[InvoiceLine],
    calculator: TaxCalculator | None = None,
) -> list[InvoiceLine]:
    """Tax per charge line on its net after its share of the discount, for the tenant's
    country and tax status (no profile: no tax)."""
    state = subscription.state
    profile = profile_terms(uow, state.app_id, state.tenant_id)
    if profile is None or not charges:
        return []
    currency = state.price.currency
    totals = compute_totals(currency, [*charges, *discounts])
    shares = allocate_discount([line.amount for line in charges], totals.discount_total)
    taxable = [
        TaxableLine(line_id=line.line_id, description=line.description, net=line.amount - share)
        for line, share in zip(charges, shares, strict=True)
    ]
    request = TaxRequest(country=profile.country, tax_status=profile.tax_status, lines=taxable)
    rates = rate_table(uow, state.app_id, [profile.country])
    context = TaxContext(app_id=state.app_id, tenant_id=state.tenant_id, rates=rates)
    taxes = (calculator or RateTableTax()).tax(request, context)
    return [_tax_line(tax) for tax in taxes]


def _tax_line(tax: TaxLine) -> InvoiceLine:
    return InvoiceLine(
        line_id=f"tax:{tax.line_id}",
        kind=LineKind.TAX,
        description=tax.description,
        quantity=1,
        unit_amount=tax.amount,
        amount=tax.amount,
        applies_to=tax.line_id,
        tax_inclusive=tax.behavior is TaxBehavior.INCLUSIVE,
    )
