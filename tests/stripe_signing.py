"""Stripe webhook deliveries for tests: events as Stripe sends them, signed with Stripe's scheme
(`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the endpoint secret>`), written here
from the scheme rather than with the SDK that the intake verifies with; and a processor that
records what it is handed."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from typing import Any

import orjson

SECRET = "whsec_test_0123456789abcdef"


def sign(payload: bytes | str, secret: str = SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe would send for this body (now, or at `timestamp`)."""
    at = int(time.time()) if timestamp is None else timestamp
    body = payload if isinstance(payload, bytes) else payload.encode()
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def stripe_event(
    event_id: str = "evt_1",
    type_: str = "invoice.paid",
    app_id: str | None = "acme",
    obj: dict[str, Any] | None = None,
) -> bytes:
    """A snapshot event's body; its object carries `tally_app_id` unless app_id is None."""
    metadata = {"tally_app_id": app_id, "tally_tenant_id": "t-1"} if app_id else {}
    body = {
        "id": event_id,
        "object": "event",
        "type": type_,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj or {"id": "in_1", "object": "invoice", "metadata": metadata}},
    }
    return orjson.dumps(body)


def headers(payload: bytes, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    return {
        "Stripe-Signature": sign(payload, secret, timestamp),
        "Content-Type": "application/json",
    }


class RecordingProcessor:
    """A WebhookProcessor that records each call, failing the first `failures` of them and
    taking `delay` seconds per call (to overlap concurrent deliveries)."""

    def __init__(self, failures: int = 0, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures, self.delay = failures, delay
        self._lock = threading.Lock()

    def process(self, app_id: str, event: dict[str, Any]) -> str:
        with self._lock:
            self.calls.append((app_id, event))
            failing = len(self.calls) <= self.failures
        time.sleep(self.delay)
        if failing:
            raise ConnectionError("cannot reach billing@customer.example just now")
        return f"recorded {event['type']}"

    def event_ids(self) -> list[str]:
        with self._lock:
            return [event["id"] for _, event in self.calls]
