"""Named domain errors: each carries a stable code the edges map to replies and HTTP statuses."""

from __future__ import annotations

from typing import Any


def with_article(word: str) -> str:
    """`word` after "a" or "an" as it is said: "an active", "an uncollectible", "a usage",
    "a unique_count", "a paused" (for messages built from a status or a kind)."""
    sounds_vowel = word[:1] in ("a", "e", "i", "o") or (
        word[:1] == "u" and not word.startswith(("uni", "us", "ut"))
    )
    return f"{'an' if sounds_vowel else 'a'} {word}"


class DomainError(Exception):
    """A rule of the domain refused the request."""

    code = "domain_error"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        detail: dict[str, Any] = dict(self.details)
        if self.field:
            detail["field"] = self.field
        return {"code": self.code, "message": self.message, "details": [detail] if detail else []}


class InvalidValue(DomainError, ValueError):
    """A value object or argument breaks a rule (bad currency, negative amount...).

    Also a ValueError, so pydantic reports it with the full field path when it is raised
    inside a model validator.
    """

    code = "invalid_value"


class CurrencyMismatch(InvalidValue):
    code = "currency_mismatch"


class MoneyOverflow(InvalidValue):
    code = "money_overflow"


class InvalidTransition(DomainError):
    """The aggregate is in a state that does not allow this change."""

    code = "invalid_transition"


class AlreadyExists(DomainError):
    code = "already_exists"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    """Concurrent writers kept colliding; the caller may retry."""

    code = "conflict"


class PlanArchived(InvalidTransition):
    code = "plan_archived"


class SubscriptionAlreadyActive(AlreadyExists):
    code = "subscription_already_active"


class CouponNotRedeemable(InvalidTransition):
    code = "coupon_not_redeemable"


class InvoiceFrozen(InvalidTransition):
    code = "invoice_frozen"
