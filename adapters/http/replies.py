"""Response models of the typed command routes, for /openapi.json (with examples).

The routes answer the command's result as it is (`command_reply`); these models describe it
for the document and the generated client. Each lists the fields clients rely on and allows
the rest (a view may grow a field without breaking a client).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

USD_0 = {"amount": 0, "currency": "USD"}

QUOTA_EXAMPLE: dict[str, Any] = {
    "quota_id": "6b1d7e43-0c4f-5d3a-9a0e-2f4b8c1d9e21",
    "tenant_id": "tenant-1",
    "feature_key": "api-calls",
    "subscription_id": None,
    "enabled": True,
    "limit": 1000,
    "effective_limit": 1500,
    "enforcement": "hard",
    "soft_threshold_percent": 80,
    "period": "month",
    "meter": "sum",
    "window": {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"},
    "used": 120,
    "remaining": 1380,
    "overage": 0,
    "soft_limit_reached": False,
    "grants": [
        {
            "grant_id": "launch-week",
            "amount": 500,
            "reason": "launch week",
            "actor": "api-key:3f9c0a1b2c3d4e5f (support)",
            "granted_at": "2026-01-10T09:30:00Z",
            "expires_at": None,
            "active": True,
        }
    ],
    "version": 3,
}

COUPON_EXAMPLE: dict[str, Any] = {
    "coupon_id": "0f5e2a4c-8b1d-5c3e-9f7a-6d2b4e8c1a90",
    "code": "welcome",
    "percent_off": 10,
    "amount_off": None,
    "duration": "forever",
    "duration_in_periods": None,
    "max_redemptions": 100,
    "redemption_count": 1,
    "valid_from": None,
    "valid_until": None,
    "carry_forward": False,
    "active": True,
    "version": 2,
}

SUBSCRIPTION_EXAMPLE: dict[str, Any] = {
    "subscription_id": "3f2a9c1e-7b4d-4e8a-9c0f-1d2e3f4a5b6c",
    "tenant_id": "tenant-1",
    "status": "active",
    "plan_key": "pro",
    "plan_version": 1,
    "price": {"amount": 4900, "currency": "USD"},
    "current_period": {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"},
    "trial_end": None,
    "cancel_at_period_end": False,
    "seats": 1,
    "version": 2,
}

INVOICE_EXAMPLE: dict[str, Any] = {
    "invoice_id": "ee76572c-1f0b-5e7d-8c3a-4b9d2e6f1a07",
    "tenant_id": "tenant-1",
    "subscription_id": "3f2a9c1e-7b4d-4e8a-9c0f-1d2e3f4a5b6c",
    "status": "open",
    "currency": "USD",
    "number": 3,
    "number_text": "INV-000003",
    "total": {"amount": 4900, "currency": "USD"},
    "amount_due": {"amount": 4900, "currency": "USD"},
    "payment_attempts": 1,
    "last_payment_error": "card_declined",
    "next_retry_at": "2026-01-04T00:00:00+00:00",
    "version": 4,
}


def _reply(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="allow", json_schema_extra={"examples": [example]})


class QuotaReply(BaseModel):
    """A tenant's quota of one metered feature: limit, allowances (`grants`), the window."""

    model_config = _reply(QUOTA_EXAMPLE)

    quota_id: str
    tenant_id: str
    feature_key: str
    limit: int | None
    effective_limit: int | None
    enforcement: str
    period: str
    used: int
    remaining: int | None
    grants: list[dict[str, Any]]
    version: int


class QuotaResetReply(QuotaReply):
    """The quota after a reset; `reset` says whether a new window started."""

    model_config = _reply({**QUOTA_EXAMPLE, "used": 0, "remaining": 1500, "reset": True})

    reset: bool


class CouponReply(BaseModel):
    """A coupon: its discount, duration, redemptions and whether it is active."""

    model_config = _reply(COUPON_EXAMPLE)

    coupon_id: str
    code: str
    duration: str
    redemption_count: int
    active: bool
    version: int


class SubscriptionReply(BaseModel):
    """A subscription's state after the command."""

    model_config = _reply(SUBSCRIPTION_EXAMPLE)

    subscription_id: str
    tenant_id: str
    status: str
    plan_key: str
    plan_version: int
    version: int


class InvoiceReply(BaseModel):
    """An invoice after the command (the invoice view of `GET /v1/invoices/{id}`)."""

    model_config = _reply(INVOICE_EXAMPLE)

    invoice_id: str
    tenant_id: str
    status: str
    currency: str
    total: dict[str, Any]
    amount_due: dict[str, Any]
    payment_attempts: int
    version: int


class PaymentRetryReply(BaseModel):
    """A payment retry: whether it was made (`retried`), whether it paid, and the invoice."""

    model_config = _reply(
        {
            "retried": True,
            "paid": True,
            "invoice": {**INVOICE_EXAMPLE, "status": "paid", "amount_due": USD_0},
        }
    )

    retried: bool
    paid: bool
    invoice: dict[str, Any]


def documented(model: type[BaseModel], status: int = 200) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entry documenting a command route's answer as `model`."""
    return {status: {"model": model, "description": "the command's result"}}
