"""A tenant's payment methods at the provider: attach one (it becomes the default for
invoices) and list them."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from commands.payments.context import PaymentContext
from commands.payments.customers import ensure_customer


class AttachPaymentMethod(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    payment_method: str = Field(pattern=r"^pm_[A-Za-z0-9_]{1,250}$", description="pm_…")


def attach_payment_method(
    ctx: PaymentContext, app_id: str, tenant_id: str, request: AttachPaymentMethod
) -> dict[str, Any]:
    customer = ensure_customer(ctx, app_id, tenant_id)
    return asdict(ctx.provider.attach_payment_method(customer, request.payment_method))


def list_payment_methods(ctx: PaymentContext, app_id: str, tenant_id: str) -> list[dict[str, Any]]:
    account = ctx.account(app_id, tenant_id)
    if account is None:
        return []
    return [asdict(method) for method in ctx.provider.list_payment_methods(account.customer_id)]
