"""Port: what the webhook intake hands each verified, stored Stripe event to."""

from __future__ import annotations

from typing import Any, Protocol


class WebhookProcessor(Protocol):
    """Turns one Stripe event of an app into Tally commands; safe to call again for it."""

    def process(self, app_id: str, event: dict[str, Any]) -> str:
        """Apply the event; returns its outcome in a few words (e.g. "invoice paid",
        "ignored: unknown type"). Raises only for what a later retry may fix."""
        ...
