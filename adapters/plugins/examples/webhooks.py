"""Signed outgoing webhooks: every event POSTed as its envelope JSON to one URL.

The `Tally-Signature` header is `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
with the shared secret (the scheme Stripe uses), so a receiver can check both who sent it and
that it is fresh. Each delivery is tried up to `attempts` times with a doubling backoff; every
attempt is appended to the delivery log (JSON lines). Settings: TALLY_WEBHOOK_URL,
TALLY_WEBHOOK_SECRET, TALLY_WEBHOOK_LOG (default var/webhook-deliveries.jsonl).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from projections.envelope import EventEnvelope

SIGNATURE_HEADER = "Tally-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for a body sent at `timestamp`."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    secret: str, header: str, body: bytes, tolerance: int = 300, now: int | None = None
) -> bool:
    """What a receiver does: the HMAC matches and the timestamp is within `tolerance` s."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    fresh = abs((now if now is not None else int(time.time())) - timestamp) <= tolerance
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookDeliveryFailed(Exception):
    """Every attempt failed (the hook runner retries the event, then dead-letters it)."""


class WebhookEmitter:
    """Posts every event, signed, with retries; logs each attempt."""

    name = "webhooks"

    def __init__(
        self,
        url: str,
        secret: str,
        log_path: Path,
        *,
        attempts: int = 3,
        backoff_seconds: float = 0.2,
        timeout_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url, self.secret, self.log_path = url, secret, log_path
        self.attempts, self.backoff, self.timeout = attempts, backoff_seconds, timeout_seconds
        self.clock = clock
        self._log_lock = threading.Lock()
        self.collector_registry = CollectorRegistry()  # shown on the API's /metrics
        self.outcomes = Counter(
            "tally_webhook_deliveries_total",
            "Outgoing webhooks by outcome (delivered, retried: an attempt failed and another "
            "follows, failed: every attempt failed)",
            ("outcome",),
            registry=self.collector_registry,
        )

    def on_event(self, event: EventEnvelope) -> None:
        body = event.model_dump_json().encode()
        last = ""
        for attempt in range(1, self.attempts + 1):
            status, last = self._post(body)
            self._log(event, attempt, status, last)
            if status is not None and 200 <= status < 300:
                self.outcomes.labels("delivered").inc()
                return
            if attempt < self.attempts:
                self.outcomes.labels("retried").inc()
                time.sleep(self.backoff * 2 ** (attempt - 1))
        self.outcomes.labels("failed").inc()
        raise WebhookDeliveryFailed(f"{self.url}: {last}")

    def _post(self, body: bytes) -> tuple[int | None, str]:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, int(self.clock()), body),
        }
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return int(response.status), "ok"
        except urllib.error.HTTPError as error:
            return int(error.code), f"HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            return None, repr(error)

    def _log(self, event: EventEnvelope, attempt: int, status: int | None, result: str) -> None:
        entry = {
            "at": datetime.now(UTC).isoformat(),
            "event_id": str(event.id),
            "event_type": event.type,
            "position": event.position,
            "url": self.url,
            "attempt": attempt,
            "status": status,
            "result": result,
        }
        with self._log_lock:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a", encoding="utf-8") as log_file:
                log_file.write(json.dumps(entry) + "\n")


def plugin() -> WebhookEmitter | None:
    """The entry point: configured by TALLY_WEBHOOK_URL and TALLY_WEBHOOK_SECRET."""
    url, secret = os.environ.get("TALLY_WEBHOOK_URL"), os.environ.get("TALLY_WEBHOOK_SECRET")
    if not url or not secret:
        return None
    log_path = Path(os.environ.get("TALLY_WEBHOOK_LOG", "var/webhook-deliveries.jsonl"))
    return WebhookEmitter(url, secret, log_path)
