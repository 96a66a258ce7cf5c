"""Strategy ports plugins may fill: pricing, usage aggregation, tax, invoice format, coupons.

Each port has a default that is the domain's own behaviour; adapters/plugins selects another
implementation by name (TALLY_PRICING_STRATEGY, TALLY_TAX_CALCULATOR, ...). Payloads are typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol
from uuid import UUID

from domain.catalog import FeatureSpec
from domain.invoice import InvoiceState
from domain.pricing import Quantity, Rating, rate_feature
from domain.tax import RateTableTaxCalculator, TaxLine, TaxRateTerms, TaxRequest

StrategyPort = Literal[
    "PricingStrategy", "UsageAggregator", "TaxCalculator", "InvoiceFormatter", "CouponValidator"
]


class PricingStrategy(Protocol):
    """Port: what a metered feature's usage costs (None: the feature has no price)."""

    def rate_feature(self, spec: FeatureSpec, quantity: Quantity) -> Rating | None: ...


class DomainPricing:
    """The default PricingStrategy: the plan's overage model, rated by domain.pricing."""

    def rate_feature(self, spec: FeatureSpec, quantity: Quantity) -> Rating | None:
        return rate_feature(spec, quantity)


@dataclass(frozen=True)
class TaxContext:
    """Who is taxed and the app's rates for the customer's country (may be empty)."""

    app_id: str
    tenant_id: str
    rates: Mapping[str, TaxRateTerms] = field(default_factory=dict)


class TaxCalculator(Protocol):
    """Port: the tax lines of an invoice's (discounted) lines for one customer."""

    def tax(self, request: TaxRequest, context: TaxContext) -> list[TaxLine]: ...


class RateTableTax:
    """The default TaxCalculator: the app's TaxRate per country (domain.tax rules)."""

    def tax(self, request: TaxRequest, context: TaxContext) -> list[TaxLine]:
        return RateTableTaxCalculator(context.rates).tax(request)


@dataclass(frozen=True)
class UsageSample:
    """One recorded usage quantity, as a meter aggregates it."""

    quantity: int
    occurred_at: str


class UsageAggregator(Protocol):
    """Port: one total from a period's samples for a meter (sum, max, ...)."""

    def aggregate(self, meter: str, samples: list[UsageSample]) -> int: ...


class DomainAggregation:
    """The default UsageAggregator: the built-in meters on plain quantities."""

    def aggregate(self, meter: str, samples: list[UsageSample]) -> int:
        quantities = [sample.quantity for sample in samples]
        if meter == "max":
            return max(quantities, default=0)
        if meter == "count":
            return len(quantities)
        if meter == "latest":
            ordered = sorted(samples, key=lambda sample: sample.occurred_at)
            return ordered[-1].quantity if ordered else 0
        return sum(quantities)


@dataclass(frozen=True)
class FormattedInvoice:
    """An invoice rendered for a reader: its bytes, media type and a file name."""

    media_type: str
    filename: str
    body: bytes


class InvoiceFormatter(Protocol):
    """Port: an invoice as a document (the default is its JSON state)."""

    def format_invoice(self, invoice_id: UUID, invoice: InvoiceState) -> FormattedInvoice: ...


class JsonInvoiceFormatter:
    """The default InvoiceFormatter: the invoice's state as JSON."""

    def format_invoice(self, invoice_id: UUID, invoice: InvoiceState) -> FormattedInvoice:
        body = invoice.model_dump_json().encode()
        return FormattedInvoice("application/json", f"{invoice_id}.json", body)


@dataclass(frozen=True)
class CouponCheck:
    """A coupon about to be applied to a tenant (and maybe one subscription)."""

    app_id: str
    tenant_id: str
    code: str
    subscription_id: UUID | None = None


@dataclass(frozen=True)
class CouponVerdict:
    allowed: bool
    reason: str | None = None


class CouponValidator(Protocol):
    """Port: an app's own rules on who may use a coupon (the default allows all)."""

    def validate_coupon(self, check: CouponCheck) -> CouponVerdict: ...


class AllowAllCoupons:
    def validate_coupon(self, check: CouponCheck) -> CouponVerdict:
        return CouponVerdict(allowed=True)


# the method that marks an object as implementing a port
PORT_METHODS: dict[StrategyPort, str] = {
    "PricingStrategy": "rate_feature",
    "UsageAggregator": "aggregate",
    "TaxCalculator": "tax",
    "InvoiceFormatter": "format_invoice",
    "CouponValidator": "validate_coupon",
}
