"""Strategy ports plugins may fill: pricing, usage aggregation, tax, invoice format, coupons.

Each port has a default that is the domain's own behaviour; adapters/plugins selects another
implementation by name (TALLY_PRICING_STRATEGY, TALLY_TAX_CALCULATOR, ...). Payloads are typed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar
from uuid import UUID

from commands.billing.ports import UsageReader
from domain.billing import UsageTotal
from domain.catalog import FeatureSpec, PlanStrategies, PlanTerms
from domain.errors import Conflict, CouponNotRedeemable, InvalidValue
from domain.invoice import InvoiceState
from domain.period import Period
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
    """One recorded usage fact (its value, fixed-width UTC time, event id and log position)."""

    quantity: int
    occurred_at: str
    event_id: str = ""
    position: int = 0


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


class UsageSamples(Protocol):
    """Port: one feature's usage facts over [start, end), up to a log position, oldest first."""

    def samples(
        self, app_id: str, tenant_id: str, feature_key: str, period: Period, cutoff: int | None
    ) -> list[UsageSample]: ...


class NoSamples:
    """UsageSamples for systems without a usage read model: no facts."""

    def samples(
        self, app_id: str, tenant_id: str, feature_key: str, period: Period, cutoff: int | None
    ) -> list[UsageSample]:
        return []


class AggregatedUsage:
    """A UsageReader whose quantities a UsageAggregator computes from the period's facts; the
    evidence (events, positions, event ids) is the inner reader's."""

    def __init__(
        self, inner: UsageReader, samples: UsageSamples, aggregator: UsageAggregator
    ) -> None:
        self.inner, self.samples, self.aggregator = inner, samples, aggregator

    def totals(
        self,
        app_id: str,
        tenant_id: str,
        features: Sequence[tuple[str, str]],
        period: Period,
        cutoff: int | None,
    ) -> dict[str, UsageTotal]:
        found = self.inner.totals(app_id, tenant_id, features, period, cutoff)
        return {
            key: total.model_copy(
                update={"quantity": self._quantity(app_id, tenant_id, total, period, cutoff)}
            )
            for key, total in found.items()
        }

    def _quantity(
        self, app_id: str, tenant_id: str, total: UsageTotal, period: Period, cutoff: int | None
    ) -> int:
        facts = self.samples.samples(app_id, tenant_id, total.feature_key, period, cutoff)
        quantity = self.aggregator.aggregate(total.meter, facts)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            raise Conflict(
                f"usage aggregator gave {quantity!r} for {total.feature_key}: a whole number "
                "from 0 is expected",
                field="usage_aggregator",
            )
        return quantity

    def safe_cutoff(self) -> int:
        return self.inner.safe_cutoff()


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
    """A CouponValidator's answer: allowed, or refused with a reason the caller is shown."""

    allowed: bool
    reason: str | None = None


class CouponValidator(Protocol):
    """Port: an app's own rules on who may use a coupon (the default allows all)."""

    def validate_coupon(self, check: CouponCheck) -> CouponVerdict: ...


class AllowAllCoupons:
    """The default CouponValidator: every coupon the domain's own rules let through."""

    def validate_coupon(self, check: CouponCheck) -> CouponVerdict:
        return CouponVerdict(allowed=True)


def require_coupon_allowed(validator: CouponValidator, check: CouponCheck) -> None:
    """Refuse (CouponNotRedeemable naming `code`, with the plugin's reason) what it refuses."""
    verdict = validator.validate_coupon(check)
    if not verdict.allowed:
        reason = verdict.reason or "refused by the app's coupon rules"
        raise CouponNotRedeemable(f"coupon {check.code} cannot be used: {reason}", field="code")


S = TypeVar("S")


@dataclass(frozen=True)
class NamedStrategies:
    """The strategy plugins plan terms may name (`strategies`), by name."""

    pricing: Mapping[str, PricingStrategy] = field(default_factory=dict)
    tax: Mapping[str, TaxCalculator] = field(default_factory=dict)
    usage: Mapping[str, UsageAggregator] = field(default_factory=dict)

    def check(self, terms: PlanTerms) -> None:
        """Refuse terms naming a strategy no registered plugin provides (the field named)."""
        chosen = terms.strategies or PlanStrategies()
        _known(chosen.pricing_strategy, self.pricing, "pricing_strategy", "PricingStrategy")
        _known(chosen.tax_calculator, self.tax, "tax_calculator", "TaxCalculator")
        _known(chosen.usage_aggregator, self.usage, "usage_aggregator", "UsageAggregator")

    def pricing_for(self, terms: PlanTerms, default: PricingStrategy) -> PricingStrategy:
        named = terms.strategies.pricing_strategy if terms.strategies else None
        return _named(named, self.pricing, default, "pricing_strategy", terms)

    def tax_for(self, terms: PlanTerms, default: TaxCalculator) -> TaxCalculator:
        named = terms.strategies.tax_calculator if terms.strategies else None
        return _named(named, self.tax, default, "tax_calculator", terms)

    def usage_for(
        self, terms: PlanTerms, default: UsageAggregator | None
    ) -> UsageAggregator | None:
        named = terms.strategies.usage_aggregator if terms.strategies else None
        return _named(named, self.usage, default, "usage_aggregator", terms)


def _known(name: str | None, known: Mapping[str, object], setting: str, port: str) -> None:
    if name is not None and name not in known:
        names = ", ".join(sorted(known)) or "none registered"
        raise InvalidValue(
            f"no strategy plugin {name!r} implements {port} (known: {names})",
            field=f"strategies.{setting}",
        )


def _named(
    name: str | None, known: Mapping[str, S], default: S, setting: str, terms: PlanTerms
) -> S:
    """The plugin the terms name (else `default`); a name no plugin has any more (removed
    since the plan was defined) stops the command rather than bill by other rules."""
    if name is None:
        return default
    found = known.get(name)
    if found is None:
        raise Conflict(
            f"plan {terms.plan_key} v{terms.version} names strategy plugin {name!r}, which "
            "is not registered in this process",
            field=f"strategies.{setting}",
        )
    return found


# the method that marks an object as implementing a port
PORT_METHODS: dict[StrategyPort, str] = {
    "PricingStrategy": "rate_feature",
    "UsageAggregator": "aggregate",
    "TaxCalculator": "tax",
    "InvoiceFormatter": "format_invoice",
    "CouponValidator": "validate_coupon",
}
