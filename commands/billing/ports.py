"""Ports the billing engine reads through: recorded usage, the app's billing settings, and
the payment provider that collects invoices (dunning retries)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Protocol

from pydantic import Field

from domain.billing import UsageTotal
from domain.invoice import Invoice
from domain.period import Period

UsageCutoff = Annotated[
    int | None,
    Field(
        ge=0,
        description="count usage up to this log position (default: all the usage read model "
        "has applied)",
    ),
]
"""The billing cut-off a command may carry (commands that invoice)."""


class UsageReader(Protocol):
    """Port: metered quantities over a period, counting only facts up to a log position."""

    def totals(
        self,
        app_id: str,
        tenant_id: str,
        features: Sequence[tuple[str, str]],
        period: Period,
        cutoff: int | None,
    ) -> dict[str, UsageTotal]:
        """(feature_key, meter) pairs -> the feature's total over [start, end)."""

    def safe_cutoff(self) -> int:
        """The highest log position the usage read model has applied."""


class NoUsage:
    """A UsageReader for systems without a usage read model: nothing was used."""

    def totals(
        self,
        app_id: str,
        tenant_id: str,
        features: Sequence[tuple[str, str]],
        period: Period,
        cutoff: int | None,
    ) -> dict[str, UsageTotal]:
        return {}

    def safe_cutoff(self) -> int:
        return 0


@dataclass(frozen=True)
class CollectionOutcome:
    """What one attempt to collect an invoice gave: paid (with the provider's reference) or
    failed (with the reason)."""

    succeeded: bool
    reference: str | None = None
    reason: str | None = None


class PaymentCollector(Protocol):
    """Port: charge an open invoice's amount due with the tenant's payment method.

    Called inside a command that may run again after a write conflict: a provider must be
    idempotent per (invoice id, attempt number = payment_attempts + 1)."""

    def collect(self, invoice: Invoice) -> CollectionOutcome: ...


class NoPaymentCollector:
    """The PaymentCollector without a payment provider: every attempt fails."""

    REASON = "no payment provider configured"

    def collect(self, invoice: Invoice) -> CollectionOutcome:
        return CollectionOutcome(succeeded=False, reason=self.REASON)
