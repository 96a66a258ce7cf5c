"""Credits: one row per grant (its terms, status and `remaining`, the sum of its movements)
and one row per movement (granted, drawn, expired, voided, reinstated), keyed by the event's log
position, so a replay writes the same rows.

Money is stored as minor units beside its currency; times as the events carry them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from domain.credit_grant import (
    CreditDrawn,
    CreditExpired,
    CreditGranted,
    CreditReinstated,
    CreditVoided,
)
from projections.base import Projector, ViewTx
from projections.envelope import EventEnvelope

GRANTS = "credit_grants"
MOVEMENTS = "credit_movements"

KINDS = {
    CreditGranted.NAME: "granted",
    CreditDrawn.NAME: "drawn",
    CreditExpired.NAME: "expired",
    CreditVoided.NAME: "voided",
    CreditReinstated.NAME: "reinstated",
}
STATUS_AFTER = {CreditExpired.NAME: "expired", CreditVoided.NAME: "voided"}


class CreditsProjector(Projector):
    NAME: ClassVar[str] = "credits"
    TABLES: ClassVar[dict[str, tuple[Sequence[str], Sequence[str]]]] = {
        GRANTS: (
            [
                "app_id TEXT NOT NULL",
                "tenant_id TEXT NOT NULL",
                "grant_id TEXT NOT NULL",
                "sequence BIGINT NOT NULL",
                "currency TEXT NOT NULL",
                "amount BIGINT NOT NULL",
                "remaining BIGINT NOT NULL",
                "priority BIGINT NOT NULL",
                "expires_at TEXT",
                "reason TEXT NOT NULL",
                "actor TEXT NOT NULL",
                "granted_at TEXT NOT NULL",
                "status TEXT NOT NULL",
            ],
            ["app_id", "tenant_id", "grant_id"],
        ),
        MOVEMENTS: (
            [
                "app_id TEXT NOT NULL",
                "tenant_id TEXT NOT NULL",
                "position BIGINT NOT NULL",
                "grant_id TEXT NOT NULL",
                "kind TEXT NOT NULL",
                "amount BIGINT NOT NULL",
                "currency TEXT NOT NULL",
                "invoice_id TEXT",
                "event_id TEXT NOT NULL",
                "occurred_at TEXT NOT NULL",
            ],
            ["app_id", "tenant_id", "position"],
        ),
    }
    HANDLES: ClassVar[frozenset[str]] = frozenset(KINDS)

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        data = event.data
        tenant = event.tenant_id or ""
        key = {"app_id": event.app_id, "tenant_id": tenant, "grant_id": str(data["grant_id"])}
        amount, currency = int(data["amount"]["amount"]), data["amount"]["currency"]
        if event.type == CreditGranted.NAME:
            tx.upsert(GRANTS, key, _granted_row(event, amount, currency))
        else:
            row = tx.get(GRANTS, key)
            if row is not None:  # every column: an upsert's insert half checks NOT NULL
                values = {k: v for k, v in row.items() if k not in key}
                remaining = int(values["remaining"]) + amount
                status = STATUS_AFTER.get(event.type, "active" if remaining > 0 else "depleted")
                tx.upsert(GRANTS, key, {**values, "remaining": remaining, "status": status})
        tx.upsert(
            MOVEMENTS,
            {"app_id": event.app_id, "tenant_id": tenant, "position": event.position},
            {
                "grant_id": key["grant_id"],
                "kind": KINDS[event.type],
                "amount": amount,
                "currency": currency,
                "invoice_id": str(data["invoice_id"]) if data.get("invoice_id") else None,
                "event_id": str(event.id),
                "occurred_at": event.occurred_at,
            },
        )


def _granted_row(event: EventEnvelope, amount: int, currency: str) -> dict[str, Any]:
    data = event.data
    return {
        "sequence": int(data["sequence"]),
        "currency": currency,
        "amount": amount,
        "remaining": amount,
        "priority": int(data["priority"]),
        "expires_at": data.get("expires_at"),
        "reason": data["reason"],
        "actor": event.actor or "system",
        "granted_at": event.occurred_at,
        "status": "active",
    }
