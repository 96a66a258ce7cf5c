"""`POST /v1/webhooks/stripe`: Stripe's deliveries. No API key: Stripe calls it, and the
`Stripe-Signature` header (HMAC of the raw body with TALLY_STRIPE_WEBHOOK_SECRET) is the
authentication. 200 once the event is stored (processed or not); 400 for a request refused
(nothing stored); 503 when Stripe is not configured or the inbox cannot store the event, so
Stripe delivers it again.

Not in /openapi.json: it is Stripe's endpoint, not one for API clients (whose routes all take
a key, as the API's description and the isolation tests say).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from adapters.http.common import system_of
from adapters.http.errors import ApiError, status_for_code
from adapters.stripe.intake import (
    SIGNATURE_HEADER,
    InboxUnavailable,
    WebhookIntake,
    WebhookRejected,
)

router = APIRouter(tags=["stripe"])

MAX_BODY_BYTES = 2 * 1024 * 1024  # Stripe's events are far smaller; the route is public


@router.post("/v1/webhooks/stripe", include_in_schema=False)
async def stripe_webhook(request: Request) -> dict[str, Any]:
    intake = _intake_of(request)
    payload = await _body(request)
    metrics = system_of(request).metrics
    try:
        answer = await run_in_threadpool(
            intake.receive, payload, request.headers.get(SIGNATURE_HEADER)
        )
    except WebhookRejected as rejected:
        metrics.webhook("stripe", rejected.code)
        raise _refused(rejected) from None
    except InboxUnavailable as error:
        metrics.webhook("stripe", "unavailable")
        raise ApiError(
            status_for_code("unavailable"),
            "unavailable",
            str(error),
            headers={"Retry-After": "5"},
        ) from None
    metrics.webhook("stripe", "duplicate" if answer.get("duplicate") else str(answer["status"]))
    return answer


def _intake_of(request: Request) -> WebhookIntake:
    intake = getattr(system_of(request).stripe, "intake", None)
    if intake is None:
        raise ApiError(
            status_for_code("not_configured"),
            "not_configured",
            "Stripe is not configured: set TALLY_STRIPE_API_KEY and TALLY_STRIPE_WEBHOOK_SECRET",
        )
    return intake  # type: ignore[no-any-return]


async def _body(request: Request) -> bytes:
    """The raw body exactly as sent (the signature covers its bytes), at most MAX_BODY_BYTES."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(
                status_for_code("payload_too_large"),
                "payload_too_large",
                f"body: more than {MAX_BODY_BYTES} bytes",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _refused(rejected: WebhookRejected) -> ApiError:
    where = "header" if rejected.field == SIGNATURE_HEADER else "body"
    detail = {"field": rejected.field, "in": where, "rule": rejected.code}
    return ApiError(status_for_code(rejected.code), rejected.code, rejected.message, [detail])
