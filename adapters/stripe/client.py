"""The official SDK's StripeClient as Tally uses it, and Stripe's errors in the port's words.

Connection errors, rate limits, 5xx, 409 (a request with the same idempotency key still in
flight) and a refused API key (401/403) are `ProviderUnavailable`: the same request later may
succeed. Every other Stripe error (4xx: a bad request, an unknown object) is `ProviderRefused`
with Stripe's message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import stripe

from commands.payments.ports import ProviderRefused, ProviderUnavailable

MAX_NETWORK_RETRIES = 2  # the SDK retries connection errors and 409/429/5xx with backoff
RETRY_LATER_STATUS = 409


def make_client(api_key: str, api_base: str | None, timeout: float) -> stripe.StripeClient:
    """A StripeClient on api.stripe.com, or on `api_base` (e.g. a test Stripe server)."""
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base.rstrip("/")} if api_base else None,
        http_client=stripe.RequestsClient(timeout=timeout),
        max_network_retries=MAX_NETWORK_RETRIES,
    )


@contextmanager
def translated() -> Iterator[None]:
    """Raise the port's exceptions for the Stripe errors raised in the block."""
    try:
        yield
    except stripe.StripeError as error:
        raise translate(error) from error


def translate(error: stripe.StripeError) -> ProviderUnavailable | ProviderRefused:
    message = error.user_message or str(error)
    if is_transient(error):
        return ProviderUnavailable(message)
    return ProviderRefused(message)


def is_transient(error: stripe.StripeError) -> bool:
    """Worth trying again later: also a key Stripe refuses (the operator's to fix, not the
    request's), so the sync backs off instead of failing its tasks."""
    transient = stripe.APIConnectionError | stripe.RateLimitError | stripe.AuthenticationError
    if isinstance(error, transient | stripe.PermissionError):
        return True
    status = error.http_status
    return status is None or status >= 500 or status == RETRY_LATER_STATUS


def is_missing(error: stripe.StripeError) -> bool:
    """Stripe's answer for an id it does not know (404 resource_missing)."""
    return isinstance(error, stripe.InvalidRequestError) and error.http_status == 404


def replayed(obj: stripe.StripeObject) -> bool:
    """Whether Stripe answered with the saved result of an earlier request with the key."""
    response = obj.last_response
    headers = response.headers if response is not None else {}
    return any(
        name.lower() == "idempotent-replayed" and value == "true" for name, value in headers.items()
    )
