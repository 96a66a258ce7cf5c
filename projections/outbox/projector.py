"""The outbox: one row per email an event asks for, written with the projector's tracking
position in one transaction (so a redelivered or replayed event writes the same row again,
never a second one).

- InvoiceFinalized, InvoicePaymentFailed and CreditNoteIssued (matched by name) each ask for
  one mail to the tenant's billing profile email, with the document's PDF attached;
- BillingProfileCreated / BillingProfileUpdated keep each tenant's address and terms here, so
  a mail goes to the address the profile had when the event happened (replay gives the same);
- a tenant without a billing profile: the row is `skipped`, with the reason.

The row's `message_id` is derived from the event id (`<event-id@tally>`): every send of that
mail, first or again after a crash, carries the same Message-ID. What was sent lives in
`outbox_deliveries`, the sender's own table (adapters/smtp/sender.py): it is not rebuilt by a
replay, so a rebuilt outbox does not send anything twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import orjson

from projections.base import Projector, ViewTx
from projections.envelope import EventEnvelope

OUTBOX = "outbox"
PROFILES = "outbox_profiles"
DELIVERIES = "outbox_deliveries"

INVOICE_FINALIZED = "InvoiceFinalized"
PAYMENT_FAILED = "InvoicePaymentFailed"
CREDIT_NOTE_ISSUED = "CreditNoteIssued"  # by name: the credit note events may come later
PROFILE_EVENTS = frozenset({"BillingProfileCreated", "BillingProfileUpdated"})
MAIL_KINDS = {
    INVOICE_FINALIZED: "invoice",
    PAYMENT_FAILED: "payment_failed",
    CREDIT_NOTE_ISSUED: "credit_note",
}
NO_PROFILE = "the tenant has no billing profile email"


def message_id(event_id: Any) -> str:
    """The Message-ID of the mail an event asks for: the same on every send."""
    return f"<{event_id}@tally>"


def dump(value: Any) -> str:
    return orjson.dumps(value).decode()


class OutboxProjector(Projector):
    """Writes the mails to send; never sends (the mailer does, and records it elsewhere)."""

    NAME: ClassVar[str] = "outbox"
    TABLES: ClassVar[dict[str, tuple[Sequence[str], Sequence[str]]]] = {
        OUTBOX: (
            [
                "message_id TEXT NOT NULL",
                "app_id TEXT NOT NULL",
                "tenant_id TEXT NOT NULL",
                "kind TEXT NOT NULL",  # invoice, payment_failed, credit_note
                "event_id TEXT NOT NULL",
                "event_type TEXT NOT NULL",
                "position BIGINT NOT NULL",
                "aggregate_id TEXT NOT NULL",
                "aggregate_version BIGINT NOT NULL",
                "number_text TEXT",
                "recipient TEXT",
                "subject TEXT NOT NULL",
                "details TEXT NOT NULL",  # JSON: what the body says
                "customer TEXT",  # JSON: the billing profile's terms at the event
                "status TEXT NOT NULL",  # pending or skipped
                "reason TEXT",
                "occurred_at TEXT NOT NULL",
            ],
            ["message_id"],
        ),
        PROFILES: (
            [
                "app_id TEXT NOT NULL",
                "tenant_id TEXT NOT NULL",
                "email TEXT NOT NULL",
                "terms TEXT NOT NULL",
            ],
            ["app_id", "tenant_id"],
        ),
    }
    HANDLES: ClassVar[frozenset[str]] = frozenset(MAIL_KINDS) | PROFILE_EVENTS

    def prefetch(self, events: Sequence[EventEnvelope], tx: ViewTx) -> None:
        keys = [
            {"app_id": e.app_id, "tenant_id": e.tenant_id or ""}
            for e in events
            if e.type in MAIL_KINDS
        ]
        if keys:
            tx.prefetch(PROFILES, keys)

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        tenant = event.tenant_id or ""
        if event.type in PROFILE_EVENTS:
            terms = event.data["profile"]
            tx.upsert(
                PROFILES,
                {"app_id": event.app_id, "tenant_id": tenant},
                {"email": terms["email"], "terms": dump(terms)},
            )
            return
        profile = tx.get(PROFILES, {"app_id": event.app_id, "tenant_id": tenant})
        kind = MAIL_KINDS[event.type]
        tx.upsert(
            OUTBOX,
            {"message_id": message_id(event.id)},
            {
                "app_id": event.app_id,
                "tenant_id": tenant,
                "kind": kind,
                "event_id": str(event.id),
                "event_type": event.type,
                "position": event.position,
                "aggregate_id": str(event.aggregate_id),
                "aggregate_version": event.version,
                "number_text": event.data.get("number_text"),
                "recipient": profile["email"] if profile else None,
                "subject": subject(kind, event.data),
                "details": dump(details(event)),
                "customer": profile["terms"] if profile else None,
                "status": "pending" if profile else "skipped",
                "reason": None if profile else NO_PROFILE,
                "occurred_at": event.occurred_at,
            },
        )


def subject(kind: str, data: dict[str, Any]) -> str:
    number = data.get("number_text") or "(no number)"
    if kind == "invoice":
        return f"Invoice {number}"
    if kind == "payment_failed":
        return f"Payment failed for invoice {number}"
    invoice = data.get("invoice_number_text")
    return f"Credit note {number}" + (f" for invoice {invoice}" if invoice else "")


def details(event: EventEnvelope) -> dict[str, Any]:
    """What the mail's text says, as the event carries it (amounts as Money dicts)."""
    data = event.data
    keys = {
        "invoice": ("total", "amount_due", "period", "currency"),
        "payment_failed": ("total", "attempt", "reason", "next_retry_at", "currency"),
        "credit_note": ("total", "reason", "method", "invoice_id", "invoice_number_text"),
    }[MAIL_KINDS[event.type]]
    return {key: data.get(key) for key in keys}


class DeliveryTables(Projector):
    """The mailer's own record of each mail's sending (not a read model: never replayed)."""

    NAME: ClassVar[str] = "outbox_sender"
    TABLES: ClassVar[dict[str, tuple[Sequence[str], Sequence[str]]]] = {
        DELIVERIES: (
            [
                "message_id TEXT NOT NULL",
                "status TEXT NOT NULL",  # sent, retrying or failed
                "attempts BIGINT NOT NULL",
                "last_error TEXT",
                "next_attempt_at TEXT",
                "sent_at TEXT",
            ],
            ["message_id"],
        ),
    }
