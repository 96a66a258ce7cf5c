"""Drift between Stripe and the ledger: what a reconciliation finds, one record per object.

Kinds: `missing` (the ledger links or expects an object Stripe lacks), `extra` (Stripe has
an object naming this app that the ledger does not link), `amount` (the amounts differ),
`status` (a payment or state differs). `repair` names what `--repair` does, None when the
drift is only reported (a human decides: Tally never deletes or rewrites at Stripe silently).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

DriftKind = Literal["missing", "extra", "amount", "status"]
ObjectKind = Literal["customer", "subscription", "invoice", "payment"]


@dataclass(frozen=True)
class Drift:
    drift: DriftKind
    object: ObjectKind
    tenant_id: str
    object_id: str  # the Tally id (or the Stripe id of an extra object)
    provider_id: str | None
    detail: str
    repair: str | None = None  # relink_customer, cancel_at_stripe, cancel_in_tally, pay_in_tally,
    # push_again, collect, link_customer

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def invoice_drift(
    tenant_id: str,
    invoice_id: str,
    tally_status: str,
    tally_due: int,
    provider: Any,
) -> Drift | None:
    """A linked invoice against its Stripe invoice (None: in step)."""
    if provider is None:
        return Drift(
            "missing",
            "invoice",
            tenant_id,
            invoice_id,
            None,
            "the Stripe invoice is gone",
            "push_again" if tally_status == "open" else None,
        )
    if provider.status == "paid" and tally_status in ("open", "uncollectible"):
        return Drift(
            "status",
            "payment",
            tenant_id,
            invoice_id,
            provider.id,
            f"paid at Stripe ({provider.amount_paid}), {tally_status} in Tally",
            "pay_in_tally",
        )
    if provider.status == "void" and tally_status == "open":
        return Drift(
            "status",
            "invoice",
            tenant_id,
            invoice_id,
            provider.id,
            "voided at Stripe, still owed in Tally",
            "push_again",
        )
    if provider.status in ("open", "draft") and tally_status in ("paid", "void"):
        return Drift(
            "status",
            "invoice",
            tenant_id,
            invoice_id,
            provider.id,
            f"{tally_status} in Tally, {provider.status} at Stripe",
        )
    if provider.amount_due != tally_due and provider.status != "void":
        return Drift(
            "amount",
            "invoice",
            tenant_id,
            invoice_id,
            provider.id,
            f"amount due {tally_due} in Tally, {provider.amount_due} at Stripe",
        )
    return None


def subscription_drift(
    tenant_id: str, subscription_id: str, tally_live: bool, provider: Any
) -> Drift | None:
    """A linked subscription against its Stripe mirror (None: in step)."""
    if provider is None:
        # not among the customer's (e.g. its customer was deleted and Tally relinked a new
        # one): nothing says the subscription ended, so a human decides
        return Drift(
            "missing",
            "subscription",
            tenant_id,
            subscription_id,
            None,
            "the Stripe subscription is not among the customer's",
        )
    ended = provider.status in ("canceled", "incomplete_expired")
    if tally_live and ended:
        return Drift(
            "status",
            "subscription",
            tenant_id,
            subscription_id,
            provider.id,
            "live in Tally, the Stripe subscription was canceled",
            "cancel_in_tally",
        )
    if not tally_live and not ended:
        return Drift(
            "status",
            "subscription",
            tenant_id,
            subscription_id,
            provider.id,
            f"ended in Tally, {provider.status} at Stripe",
            "cancel_at_stripe",
        )
    return None
