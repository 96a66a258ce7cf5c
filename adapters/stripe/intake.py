"""Stripe webhook intake: verify the signature, store the event in the inbox, process it once.

`receive` checks `Stripe-Signature` with the official SDK (HMAC over the raw body and its
timestamp, within the tolerance) before anything is stored; a refused request stores nothing.
Then it inserts the event (a redelivery finds the row: a duplicate, not processed again) and
the inserter hands it to the WebhookProcessor. A processor error leaves the row `failed` for
`drain` to retry with backoff; the answer is still 200, as the event is safe in the inbox.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog

from adapters.stripe.inbox import StripeInbox
from commands.payments.webhook_port import WebhookProcessor

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "Stripe-Signature"
PENDING_GRACE = timedelta(seconds=30)  # a pending row older than this was never processed
LEASE = timedelta(minutes=2)  # how long a drain owns a row it claimed
FIRST_RETRY = timedelta(seconds=5)
LAST_RETRY = timedelta(hours=1)
APP_METADATA_KEY = "tally_app_id"


class WebhookRejected(ValueError):
    """A request refused before anything was stored (the route answers 400)."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.code, self.field, self.message = code, field, message


class InboxUnavailable(RuntimeError):
    """The inbox could not store the event: Stripe should deliver it again (503)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class WebhookIntake:
    """Between the HTTP request and the WebhookProcessor: verify, store once, process."""

    def __init__(
        self,
        inbox: StripeInbox,
        processor: WebhookProcessor,
        secret: str,
        tolerance_seconds: int = 300,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        if not secret or not secret.strip():
            raise ValueError("TALLY_STRIPE_WEBHOOK_SECRET is not set: webhooks cannot be verified")
        self.inbox, self.processor, self.secret = inbox, processor, secret
        self.tolerance_seconds, self.now = tolerance_seconds, now

    def receive(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """Verify, store and (the first time) process one delivery; raises WebhookRejected
        for a request to refuse, InboxUnavailable when the event could not be stored."""
        self._verify(payload, signature)
        event = parse_event(payload)
        app_id = app_of(event)
        if not self._store(event, app_id, payload):
            log.info("stripe_webhook_duplicate", event_id=event["id"], type=event["type"])
            return {"received": True, "duplicate": True}
        if app_id is None:
            log.warning("stripe_webhook_unrouted", event_id=event["id"], type=event["type"])
            return {"received": True, "duplicate": False, "status": "unrouted"}
        status = self._process(event["id"], app_id, event, attempts_before=0)
        return {"received": True, "duplicate": False, "status": status}

    def drain(self, limit: int = 100) -> int:
        """Process the rows due again (failed and due, or pending and never processed);
        returns how many were attempted."""
        now = self.now()
        claimed = self.inbox.claim(now, now - PENDING_GRACE, now + LEASE, limit)
        for row in claimed:
            self._process(row.event_id, row.app_id, row.event, row.attempts)
        return len(claimed)

    def rows(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The inbox, newest first (for `tally stripe inbox` and tests)."""
        return self.inbox.rows(status, limit)

    def _verify(self, payload: bytes, signature: str | None) -> None:
        import stripe  # the SDK costs 0.3 s to import: not at start-up (TARGETS.md P9)

        if not signature:
            raise WebhookRejected(
                "signature_missing", SIGNATURE_HEADER, f"the {SIGNATURE_HEADER} header is missing"
            )
        # First the signature alone, then its age: so a stale but genuine request is told
        # apart from a forged one without reading the SDK's messages.
        try:
            stripe.WebhookSignature.verify_header(payload, signature, self.secret)
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            raise WebhookRejected(
                "signature_invalid",
                SIGNATURE_HEADER,
                f"the {SIGNATURE_HEADER} header does not match the body (another secret, "
                "or the body changed after signing)",
            ) from None
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature, self.secret, self.tolerance_seconds
            )
        except stripe.SignatureVerificationError:
            raise WebhookRejected(
                "signature_stale",
                SIGNATURE_HEADER,
                f"the {SIGNATURE_HEADER} timestamp is more than "
                f"{self.tolerance_seconds} seconds old",
            ) from None

    def _store(self, event: dict[str, Any], app_id: str | None, payload: bytes) -> bool:
        try:
            return self.inbox.insert(event, app_id, payload.decode(), self.now())
        except Exception as error:
            log.warning("stripe_inbox_unavailable", error=error_text(error))
            raise InboxUnavailable(
                f"the webhook inbox is unavailable ({error_text(error)})"
            ) from error

    def _process(
        self, event_id: str, app_id: str, event: dict[str, Any], attempts_before: int
    ) -> str:
        """One attempt, recorded on the row; "pending" when even that could not be written
        (the row is then found again by `drain` once PENDING_GRACE or the lease passed)."""
        attempts = attempts_before + 1
        try:
            outcome = self.processor.process(app_id, event)
        except Exception as error:
            return self._record_failure(event_id, event, attempts, error)
        try:
            self.inbox.mark_processed(event_id, attempts, str(outcome), self.now())
        except Exception as error:
            log.warning("stripe_inbox_unavailable", event_id=event_id, error=error_text(error))
            return "pending"
        log.info("stripe_webhook_processed", event_id=event_id, type=event.get("type"))
        return "processed"

    def _record_failure(
        self, event_id: str, event: dict[str, Any], attempts: int, error: Exception
    ) -> str:
        reason = error_text(error)
        log.warning(
            "stripe_webhook_failed",
            event_id=event_id,
            type=event.get("type"),
            attempts=attempts,
            error=reason,
        )
        try:
            self.inbox.mark_failed(event_id, attempts, reason, self.now() + retry_delay(attempts))
        except Exception as store_error:
            log.warning(
                "stripe_inbox_unavailable", event_id=event_id, error=error_text(store_error)
            )
            return "pending"
        return "failed"


def parse_event(payload: bytes) -> dict[str, Any]:
    """The event of a verified body: a JSON object with a string `id` and `type`."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise WebhookRejected("invalid_body", "body", "body: not JSON") from None
    if not isinstance(event, dict):
        raise WebhookRejected("invalid_body", "body", "body: not a JSON object")
    for key in ("id", "type"):
        if not isinstance(event.get(key), str) or not event[key]:
            raise WebhookRejected("invalid_body", "body", f"body: the event has no {key}")
    return event


def app_of(event: Mapping[str, Any]) -> str | None:
    """The Tally app an event is about: `tally_app_id` in its object's metadata (Tally sets
    it on every Stripe object it creates), else in the subscription details an invoice
    carries; None when it names none."""
    obj = _mapping(_mapping(event.get("data")).get("object"))
    parent = _mapping(obj.get("parent"))
    for holder in (
        obj,
        _mapping(obj.get("subscription_details")),
        _mapping(parent.get("subscription_details")),
    ):
        app_id = _mapping(holder.get("metadata")).get(APP_METADATA_KEY)
        if isinstance(app_id, str) and app_id.strip():
            return app_id.strip()
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def retry_delay(attempts: int) -> timedelta:
    """Wait after the n-th failed attempt: 5 s, doubling, at most an hour."""
    doublings = min(max(attempts - 1, 0), 20)  # 2**20 * 5 s is far past the hour already
    return min(LAST_RETRY, FIRST_RETRY * (1 << doublings))


def error_text(error: BaseException) -> str:
    """What a failure is, without its message (which may quote customer data): the error's
    class, and its code when it has one (Tally's domain errors do)."""
    code = getattr(error, "code", None)
    kind = type(error).__name__
    return f"{kind} ({code})" if isinstance(code, str) and code else kind


def build_intake(system: Any, processor: WebhookProcessor) -> WebhookIntake:
    """The intake of a System from its settings (TALLY_STRIPE_WEBHOOK_SECRET and the
    tolerance), its inbox table created if missing."""
    settings = system.settings
    if not settings.stripe_webhook_secret:
        raise ValueError("TALLY_STRIPE_WEBHOOK_SECRET is not set: webhooks cannot be verified")
    inbox = StripeInbox(system.ledger.recorder)
    inbox.ensure_table()
    return WebhookIntake(
        inbox, processor, settings.stripe_webhook_secret, settings.stripe_webhook_tolerance_seconds
    )
