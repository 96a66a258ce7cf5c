"""Stripe routes for an app's key: checkout and portal sessions (write), a tenant's payment
methods (attach: write, list: read) and the last reconciliation report (read). Without the
Stripe settings each answers 503 not_configured; Stripe unreachable: 503 unavailable with
Retry-After; a request Stripe refused: 400 stripe_refused with Stripe's message."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request

from adapters.http.auth import Reader, Writer
from adapters.http.common import system_of
from adapters.http.errors import ERROR_RESPONSES, ApiError
from commands.base import ID_PATTERN
from commands.payments.payment_methods import (
    AttachPaymentMethod,
    attach_payment_method,
    list_payment_methods,
)
from commands.payments.ports import ProviderRefused, ProviderUnavailable
from commands.payments.sessions import (
    CheckoutRequest,
    PortalRequest,
    checkout_session,
    portal_session,
)

if TYPE_CHECKING:
    from adapters.stripe.wiring import StripeServices

router = APIRouter(tags=["stripe"], responses=ERROR_RESPONSES)

TenantId = Annotated[str, Path(pattern=ID_PATTERN, description="the app's customer")]
T = TypeVar("T")

NOT_CONFIGURED = (
    "Stripe is not configured: set TALLY_STRIPE_API_KEY (and TALLY_STRIPE_WEBHOOK_SECRET for "
    "webhooks; TALLY_STRIPE_API_BASE for a server other than api.stripe.com)"
)


def stripe_of(request: Request) -> StripeServices:
    services: StripeServices | None = system_of(request).stripe
    if services is None:
        raise ApiError(503, "not_configured", NOT_CONFIGURED)
    return services


@contextmanager
def calling_stripe() -> Iterator[None]:
    """Stripe's failures in the API's error shape: unreachable (or Tally's key refused) is
    503; a request Stripe refused (an unknown payment method, a URL it will not take) is
    400 stripe_refused with Stripe's message."""
    try:
        yield
    except ProviderUnavailable as error:
        raise ApiError(
            503,
            "unavailable",
            f"Stripe is unavailable; retry shortly ({error})",
            headers={"Retry-After": "5"},
        ) from None
    except ProviderRefused as error:
        raise ApiError(400, "stripe_refused", f"Stripe refused the request: {error}") from None


def with_stripe(request: Request, call: Callable[[StripeServices], T]) -> T:
    services = stripe_of(request)
    with calling_stripe():
        return call(services)


@router.post("/v1/checkout/sessions", summary="A Stripe Checkout session for a plan")
def create_checkout(request: Request, principal: Writer, body: CheckoutRequest) -> dict[str, Any]:
    url = with_stripe(request, lambda s: checkout_session(s.ctx, principal.app_id, body))
    return {"checkout_url": url}


@router.post("/v1/portal/sessions", summary="A Stripe customer portal session")
def create_portal(request: Request, principal: Writer, body: PortalRequest) -> dict[str, Any]:
    url = with_stripe(request, lambda s: portal_session(s.ctx, principal.app_id, body))
    return {"portal_url": url}


@router.post(
    "/v1/tenants/{tenant_id}/payment-methods",
    summary="Attach a payment method (the default for invoices)",
)
def attach_method(
    request: Request, principal: Writer, tenant_id: TenantId, body: AttachPaymentMethod
) -> dict[str, Any]:
    return with_stripe(
        request, lambda s: attach_payment_method(s.ctx, principal.app_id, tenant_id, body)
    )


@router.get("/v1/tenants/{tenant_id}/payment-methods", summary="A tenant's payment methods")
def list_methods(request: Request, principal: Reader, tenant_id: TenantId) -> dict[str, Any]:
    methods = with_stripe(
        request, lambda s: list_payment_methods(s.ctx, principal.app_id, tenant_id)
    )
    return {"tenant_id": tenant_id, "payment_methods": methods}


@router.get("/v1/stripe/reconciliation", summary="The last Stripe reconciliation report")
def last_reconciliation(request: Request, principal: Reader) -> dict[str, Any]:
    services = stripe_of(request)
    report: dict[str, Any] | None = services.reconciler.last(principal.app_id)
    if report is None:
        raise ApiError(
            404,
            "not_found",
            "no reconciliation has run for this app yet (billing runs run one daily; "
            "`tally stripe reconcile` runs one now)",
        )
    return report
