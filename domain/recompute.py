"""Recompute and diff: usage that arrives after its period was invoiced is billed as a
correction on the next invoice, never by editing the finalized one.

For each usage feature an invoice billed (a `BilledUsage` the subscription keeps), the next
invoice re-rates the period's usage as the facts stand at its own cut-off, with the feature
as it was priced; the recomputed amount less what was billed and less what earlier
corrections already added is an `adjustment` line (either sign: late usage under `latest`
or `max` can lower a quantity), citing the usage facts and carrying the recomputed evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from domain.billed_usage import BilledUsage, UsageAdjustment
from domain.billing import FeatureRater, UsageTotal, rated_lines
from domain.invoice import InvoiceLine, LineKind
from domain.money import Money
from domain.pricing import rate_feature


def billed_usage(
    invoice_id: UUID,
    lines: Sequence[InvoiceLine],
    cutoff: int | None,
    commitment: tuple[Money, Money] | None = None,
) -> list[BilledUsage]:
    """What an invoice's usage lines billed, per feature (lines priced with their spec), with
    the period's minimum spend and the fees it counted (`commitment`), when one applied."""
    found: dict[str, BilledUsage] = {}
    for line in lines:
        evidence = line.usage
        if line.kind is not LineKind.USAGE or evidence is None or evidence.spec is None:
            continue
        if line.period is None:
            continue
        known = found.get(evidence.feature_key)
        amount = line.amount if known is None else known.amount + line.amount
        found[evidence.feature_key] = BilledUsage(
            invoice_id=invoice_id,
            feature_key=evidence.feature_key,
            meter=evidence.meter,
            period=line.period,
            spec=evidence.spec,
            amount=amount,
            cutoff=cutoff,
            minimum=commitment[0] if commitment else None,
            fees=commitment[1] if commitment else None,
        )
    return list(found.values())


def recomputed_amount(
    billed: BilledUsage, total: UsageTotal, rate: FeatureRater = rate_feature
) -> Money:
    """The feature's usage amount for the period as the facts stand now."""
    lines = rated_lines(billed.spec, total, billed.period, rate)
    return sum((line.amount for line in lines), Money.zero(billed.amount.currency))


def correction(billed: BilledUsage, total: UsageTotal, rate: FeatureRater = rate_feature) -> Money:
    """Recomputed - billed - already corrected (0 when nothing late changed the amount)."""
    adjusted = billed.adjusted or Money.zero(billed.amount.currency)
    return recomputed_amount(billed, total, rate) - billed.amount - adjusted


def invoice_corrections(
    group: Sequence[BilledUsage], totals: Sequence[UsageTotal], rate: FeatureRater = rate_feature
) -> list[Money]:
    """The corrections of one invoice's features (same order as `group`). Without a minimum
    spend each is its own `correction`; with one, the invoice's whole correction is what the
    period now owes less what it was billed (a true-up covered a shortfall: late usage inside
    it owes nothing; less usage can only lower the total to the minimum) less what was
    corrected already, spread over the features in the direction it goes."""
    raw = [correction(billed, total, rate) for billed, total in zip(group, totals, strict=True)]
    first = group[0]
    if first.minimum is None or first.fees is None:
        return raw
    zero = Money.zero(first.amount.currency)
    billed = sum((b.amount for b in group), zero)
    now = sum((recomputed_amount(b, t, rate) for b, t in zip(group, totals, strict=True)), zero)
    adjusted = sum((b.adjusted or zero for b in group), zero)
    owed_then = max(first.minimum.amount, (first.fees + billed).amount)
    owed_now = max(first.minimum.amount, (first.fees + now).amount)
    return _spread(raw, owed_now - owed_then - adjusted.amount)


def _spread(raw: Sequence[Money], net: int) -> list[Money]:
    """`net` over the features whose own correction goes its way, each at most its own;
    what is left goes to the first."""
    left = net
    spread = []
    for amount in raw:
        take = 0
        if net > 0 and amount.amount > 0:
            take = min(amount.amount, left)
        elif net < 0 and amount.amount < 0:
            take = max(amount.amount, left)
        left -= take
        spread.append(Money(amount=take, currency=amount.currency))
    if left and spread:
        spread[0] = Money(amount=spread[0].amount + left, currency=spread[0].currency)
    return spread


def adjustment_line(
    billed: BilledUsage, amount: Money, total: UsageTotal, rate: FeatureRater = rate_feature
) -> InvoiceLine:
    """The correction as a line of the next invoice, citing the facts of the period."""
    evidence = rated_lines(billed.spec, total, billed.period, rate)
    usage = evidence[0].usage if evidence else None
    invoice = billed.number_text or str(billed.invoice_id)
    return InvoiceLine(
        line_id=f"adjustment:{billed.invoice_id}:{billed.feature_key}",
        kind=LineKind.ADJUSTMENT,
        description=f"{billed.feature_key}: usage recorded after {invoice} was billed",
        quantity=1,
        unit_amount=amount,
        amount=amount,
        period=billed.period,
        source_event_ids=list(total.event_ids),
        usage=usage,
        adjusts=billed.invoice_id,
    )


def adjustments_of(lines: Sequence[InvoiceLine]) -> list[UsageAdjustment]:
    """The corrections an invoice's lines make, for the subscription to remember."""
    return [
        UsageAdjustment(
            invoice_id=line.adjusts,
            feature_key=line.usage.feature_key if line.usage else line.line_id.split(":")[-1],
            amount=line.amount,
        )
        for line in lines
        if line.kind is LineKind.ADJUSTMENT and line.adjusts is not None
    ]
