"""Comparing plan terms: what differs between two plans, or two versions of one plan
(`compare_terms`), and how many of a plan's fee intervals a period spans (`fee_intervals`,
the base-fee rule of the what-if simulation). Pure: docs/pricing.md "Compare and what-if".

A comparison reads from a to b: every `difference` is b - a, and it is None when the two
prices are in different currencies (two plans may be; two versions of one plan rarely are).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.catalog import AnyPricingModel, FeatureSpec, PlanTerms, included_units
from domain.errors import MoneyOverflow
from domain.money import Money
from domain.period import Interval, Period, add_interval, local_day
from domain.pricing import MAX_QUANTITY, Quantity, Rating, rate_feature

PLAN_FIELDS = ("name", "interval", "trial_days", "base_fee_timing", "minimum_spend", "strategies")

Rater = Callable[[FeatureSpec, Quantity], Rating | None]
"""How one side prices a feature's usage (rate_feature, or its plan's PricingStrategy)."""
FEATURE_FIELDS = (
    "kind",
    "limit",
    "included",
    "enforcement",
    "soft_threshold_percent",
    "period",
    "meter",
    "seat_price",
)
TIER_FIELDS = ("up_to", "unit_price", "flat_fee")
MAX_SAMPLES = 12
FeatureStatus = Literal["added", "removed", "changed", "unchanged"]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Change(_Value):
    """One attribute that differs: its name (dotted inside a feature) and both values (JSON)."""

    field: str
    a: Any = None
    b: Any = None


class PriceDifference(_Value):
    a: Money
    b: Money
    difference: Money | None = Field(description="b - a; None across currencies")


class ZonePrice(PriceDifference):
    """A pricing zone's price on each side (the base price where a side has no override)."""

    zone: str
    a_override: bool
    b_override: bool


class TierChange(_Value):
    """A tier (numbered from 1) that one side lacks or whose bound or prices differ."""

    tier: int
    status: Literal["added", "removed", "changed"]
    a: dict[str, Any] | None = None
    b: dict[str, Any] | None = None
    changes: list[Change] = Field(default_factory=list)


class SamplePrice(_Value):
    """What a quantity of a metered feature costs on each side (None: no such feature)."""

    quantity: int
    a: Money | None
    b: Money | None
    difference: Money | None


class FeatureComparison(_Value):
    key: str
    status: FeatureStatus
    changes: list[Change] = Field(default_factory=list)
    tiers: list[TierChange] = Field(default_factory=list)
    samples: list[SamplePrice] = Field(default_factory=list)


class TermsRef(_Value):
    plan_key: str
    version: int
    name: str


class PlanComparison(_Value):
    """Everything that differs from terms a to terms b."""

    a: TermsRef
    b: TermsRef
    same_currency: bool
    base_price: PriceDifference
    zones: list[ZonePrice]
    changes: list[Change]
    features: list[FeatureComparison]
    added: list[str]
    removed: list[str]
    changed: list[str]
    identical: bool


def compare_terms(
    a: PlanTerms, b: PlanTerms, raters: tuple[Rater, Rater] = (rate_feature, rate_feature)
) -> PlanComparison:
    """The price and feature-by-feature differences from a to b (samples priced by each
    side's rater)."""
    features = _features(a, b, raters)
    zones = _zones(a, b)
    changes = _plan_changes(a, b)
    base = _price(a.base_price, b.base_price)
    keys = {status: [f.key for f in features if f.status == status] for status in _STATUSES}
    return PlanComparison(
        a=_ref(a),
        b=_ref(b),
        same_currency=a.base_price.currency == b.base_price.currency,
        base_price=base,
        zones=zones,
        changes=changes,
        features=features,
        added=keys["added"],
        removed=keys["removed"],
        changed=keys["changed"],
        identical=not changes
        and _no_price_change([base, *zones])
        and all(f.status == "unchanged" for f in features),
    )


_STATUSES: tuple[FeatureStatus, ...] = ("added", "removed", "changed")


def _ref(terms: PlanTerms) -> TermsRef:
    return TermsRef(plan_key=terms.plan_key, version=terms.version, name=terms.name)


def _difference(a: Money, b: Money) -> Money | None:
    return b - a if a.currency == b.currency else None


def _price(a: Money, b: Money) -> PriceDifference:
    return PriceDifference(a=a, b=b, difference=_difference(a, b))


def _no_price_change(prices: list[PriceDifference]) -> bool:
    return all(p.a == p.b for p in prices)


def _json(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _changes(a: Any, b: Any, fields: tuple[str, ...], prefix: str = "") -> list[Change]:
    """The fields whose JSON values differ between a and b."""
    found = []
    for name in fields:
        left, right = _json(getattr(a, name)), _json(getattr(b, name))
        if left != right:
            found.append(Change(field=prefix + name, a=left, b=right))
    return found


def _plan_changes(a: PlanTerms, b: PlanTerms) -> list[Change]:
    changes = _changes(a, b, PLAN_FIELDS)
    if a.base_price.currency != b.base_price.currency:
        changes.append(Change(field="currency", a=a.base_price.currency, b=b.base_price.currency))
    return changes


def _zones(a: PlanTerms, b: PlanTerms) -> list[ZonePrice]:
    zones = sorted(set(a.price_overrides) | set(b.price_overrides))
    return [_zone(zone, a.price_for(zone), b.price_for(zone), a, b) for zone in zones]


def _zone(zone: str, left: Money, right: Money, a: PlanTerms, b: PlanTerms) -> ZonePrice:
    return ZonePrice(
        zone=zone,
        a=left,
        b=right,
        difference=_difference(left, right),
        a_override=zone in a.price_overrides,
        b_override=zone in b.price_overrides,
    )


# --- features ------------------------------------------------------------------------------


def _features(a: PlanTerms, b: PlanTerms, raters: tuple[Rater, Rater]) -> list[FeatureComparison]:
    """a's features in a's order, then the ones only b has, in b's order."""
    keys = list(dict.fromkeys([f.key for f in a.features] + [f.key for f in b.features]))
    return [_feature(key, a, b, raters) for key in keys]


def _feature(
    key: str, a: PlanTerms, b: PlanTerms, raters: tuple[Rater, Rater]
) -> FeatureComparison:
    left, right = a.feature(key), b.feature(key)
    samples = _samples((left, a.base_price.currency), (right, b.base_price.currency), raters)
    if left is None or right is None:
        status: FeatureStatus = "added" if left is None else "removed"
        return FeatureComparison(key=key, status=status, samples=samples)
    changes = _changes(left, right, FEATURE_FIELDS)
    overage, tiers = _overage(left.overage, right.overage)
    changes += overage
    status = "changed" if changes or tiers else "unchanged"
    return FeatureComparison(key=key, status=status, changes=changes, tiers=tiers, samples=samples)


def _overage(
    a: AnyPricingModel | None, b: AnyPricingModel | None
) -> tuple[list[Change], list[TierChange]]:
    """The overage model's changes: the model kind, its other fields, and tier by tier when
    both sides are tiered."""
    if a is None or b is None:
        same = a is None and b is None
        return ([] if same else [Change(field="overage", a=_json(a), b=_json(b))]), []
    left, right = a.model_dump(mode="json"), b.model_dump(mode="json")
    tiered = "tiers" in left and "tiers" in right
    names = [n for n in dict.fromkeys([*left, *right]) if not (tiered and n == "tiers")]
    changes = [
        Change(field=f"overage.{name}", a=left.get(name), b=right.get(name))
        for name in names
        if left.get(name) != right.get(name)
    ]
    return changes, _tiers(left["tiers"], right["tiers"]) if tiered else []


def _tiers(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[TierChange]:
    found = []
    for index in range(max(len(a), len(b))):
        left = a[index] if index < len(a) else None
        right = b[index] if index < len(b) else None
        if left is None or right is None:
            status: Literal["added", "removed"] = "added" if left is None else "removed"
            found.append(TierChange(tier=index + 1, status=status, a=left, b=right))
            continue
        changes = [
            Change(field=name, a=left.get(name), b=right.get(name))
            for name in TIER_FIELDS
            if left.get(name) != right.get(name)
        ]
        if changes:
            found.append(
                TierChange(tier=index + 1, status="changed", a=left, b=right, changes=changes)
            )
    return found


# --- sample prices ---------------------------------------------------------------------------


Side = tuple[FeatureSpec | None, str]  # a side's feature (if it has it) and its currency


def _samples(a: Side, b: Side, raters: tuple[Rater, Rater]) -> list[SamplePrice]:
    """Prices of a few telling quantities of a metered feature priced on either side."""
    priced = [spec for spec, _ in (a, b) if spec is not None and spec.overage is not None]
    found = []
    for quantity in sample_quantities(priced):
        try:
            left = _cost(a, quantity, raters[0])
            right = _cost(b, quantity, raters[1])
        except MoneyOverflow:
            continue  # a quantity too large to price on one side tells nothing
        difference = _difference(left, right) if left is not None and right is not None else None
        found.append(SamplePrice(quantity=quantity, a=left, b=right, difference=difference))
    return found


def sample_quantities(specs: list[FeatureSpec]) -> list[int]:
    """0, where billing starts (included and free units), each tier bound or package size
    past it, and twice the largest bound past it; at most MAX_SAMPLES, smallest first."""
    if not specs:
        return []
    points = {0}
    for spec in specs:
        assert spec.overage is not None
        start = included_units(spec) + spec.overage.free_units
        bounds = _bounds(spec.overage)
        points |= {start, start + 2 * max(bounds, default=100)}
        points |= {start + bound for bound in bounds}
    return sorted(q for q in points if q <= MAX_QUANTITY)[:MAX_SAMPLES]


def _bounds(model: AnyPricingModel) -> list[int]:
    tiers = getattr(model, "tiers", None)
    if tiers is not None:
        return [t.up_to for t in tiers if t.up_to is not None]
    size = getattr(model, "package_size", None)
    return [size] if isinstance(size, int) else []


def _cost(side: Side, quantity: int, rate: Rater) -> Money | None:
    """What `quantity` units cost (zero when the usage is not priced); None without the
    feature."""
    spec, currency = side
    if spec is None:
        return None
    rating = rate(spec, quantity)
    return rating.amount if rating is not None else Money.zero(currency)


# --- the fee of a period ---------------------------------------------------------------------


def fee_intervals(period: Period, interval: Interval, timezone: str | None) -> tuple[int, int]:
    """How many fee intervals `period` spans, as an exact fraction (numerator, denominator):
    whole intervals counted on the wall clock of `timezone` from the period's start (its day
    of the month as the anchor), plus the part of the next interval the rest covers, to the
    microsecond. One calendar month from Jan 31 to Feb 28 is (1, 1); Jan 1 to Jan 16 of a
    monthly plan is 15 days of 31: (15, 31)."""
    anchor = local_day(period.start, timezone)

    def boundary(count: int) -> Any:
        return add_interval(period.start, interval, count, anchor, timezone)

    whole = 0
    while boundary(whole + 1) <= period.end:
        whole += 1
    start = boundary(whole)
    if start >= period.end:
        return whole, 1
    rest = Period(start=start, end=boundary(whole + 1))
    covered, total = rest.fraction(Period(start=start, end=period.end))
    share = Fraction(whole * total + covered, total)
    return share.numerator, share.denominator


__all__ = [
    "Change",
    "FeatureComparison",
    "PlanComparison",
    "PriceDifference",
    "SamplePrice",
    "TermsRef",
    "TierChange",
    "ZonePrice",
    "compare_terms",
    "fee_intervals",
    "sample_quantities",
]
