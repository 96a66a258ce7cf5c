"""What a subscription remembers of the usage it billed, so later usage can be corrected.

Each usage feature an invoice billed is kept as a `BilledUsage` (its period, meter, the
feature as priced, the amount billed, the log position usage was read up to, and what later
invoices already adjusted) for as long as usage can still arrive for that period
(`domain/recompute.py` does the arithmetic; docs/pricing.md "Late usage").
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from domain.catalog import FeatureSpec
from domain.money import Money
from domain.period import Period
from domain.value import FrozenValue

KEPT_FOR = timedelta(days=36)
"""A billed period is remembered this long after it ended (usage may be 35 days late)."""


class BilledUsage(FrozenValue):
    """One usage feature of one invoice, as billed."""

    invoice_id: UUID
    number_text: str | None = None
    feature_key: str
    meter: str
    period: Period
    spec: FeatureSpec
    amount: Money
    cutoff: int | None = None
    adjusted: Money | None = None  # the adjustments later invoices made for it, summed
    minimum: Money | None = None  # the period's minimum spend, when one applied
    fees: Money | None = None  # the fees that minimum counted


class UsageAdjustment(FrozenValue):
    """An adjustment line of a later invoice, for one BilledUsage."""

    invoice_id: UUID
    feature_key: str
    amount: Money
