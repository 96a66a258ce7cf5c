"""Prepaid credit grants: one TenantCredits aggregate per (app, tenant) holds every grant.

A grant is an amount of Money with a priority (0-100, 0 drawn first, as Stripe's credit
grants), an optional expiry, a reason and the actor who granted it. Every movement is an
event: granted (+amount), drawn on an invoice, expired, voided (each -amount), reinstated
(+amount: the invoice that drew it was voided); a grant's `remaining` is the sum of its
movements, never below zero and never above what was granted.

Finalizing an invoice draws the grants in its currency in `draw_order`: priority (0 first),
then earliest expiry (no expiry last), then oldest; never more than asked. All of a tenant's
grants live in one aggregate, so two concurrent draws conflict on its version and the bus
retries the later one against what is left: they never overdraw.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import Field

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.errors import InvalidTransition, InvalidValue, NotFound
from domain.money import Money
from domain.value import FrozenValue

MIN_PRIORITY, MAX_PRIORITY = 0, 100
MAX_REASON = 500


def tenant_credits_id(app_id: str, tenant_id: str) -> UUID:
    return stable_id("tenant-credits", app_id, tenant_id)


def grant_id_of(app_id: str, tenant_id: str, sequence: int) -> UUID:
    """A grant's id: stable per tenant and grant number."""
    return stable_id("credit-grant", app_id, tenant_id, str(sequence))


class Grant(FrozenValue):
    """One grant and what is left of it."""

    grant_id: UUID
    sequence: int  # the tenant's n-th grant (oldest first)
    amount: Money
    remaining: Money
    priority: int
    expires_at: datetime | None = None
    reason: str
    actor: str
    granted_at: datetime
    status: str = "active"  # active | depleted | expired | voided

    @property
    def currency(self) -> str:
        return self.amount.currency

    @property
    def usable(self) -> bool:
        return self.status == "active" and self.remaining.amount > 0


def draw_order(grant: Grant) -> tuple[int, int, datetime, int]:
    """Priority (0 first), then earliest expiry (no expiry last), then oldest."""
    never = 1 if grant.expires_at is None else 0
    expiry = grant.expires_at or grant.granted_at
    return grant.priority, never, expiry, grant.sequence


def check_grant_terms(
    amount: Money, priority: int, expires_at: datetime | None, now: datetime
) -> None:
    """The rules of a new grant; InvalidValue naming the field otherwise."""
    if amount.amount <= 0:
        raise InvalidValue("amount must be above zero", field="amount")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidValue(f"priority must be {MIN_PRIORITY} to {MAX_PRIORITY}", field="priority")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidValue("expires_at needs a timezone", field="expires_at")
        if expires_at <= now:
            raise InvalidValue("expires_at must be in the future", field="expires_at")


class CreditsState(AggregateState):
    tenant_id: str
    grants: dict[str, Grant] = Field(default_factory=dict)  # str(grant_id) -> grant
    granted: int = 0  # how many grants were made (the next sequence)
    drawn: dict[str, dict[str, int]] = Field(default_factory=dict)  # invoice -> grant -> units


class CreditsEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "tenant_credits"


class CreditLedgerOpened(CreditsEvent, CreatedEvent):
    """A tenant's first grant opens its credit ledger (in the same commit)."""

    NAME: ClassVar[str] = "CreditLedgerOpened"

    def apply(self, aggregate: Any) -> None:
        aggregate.state = CreditsState(app_id=self.app_id, tenant_id=self.tenant_id or "")


class CreditMovement(CreditsEvent):
    """A change of one grant: `amount` is the signed movement, `remaining` what is left of
    the grant after it, `balance` what the tenant's active grants in that currency hold after
    it (the credit_balance alerts watch it)."""

    grant_id: UUID
    amount: Money
    remaining: Money
    balance: Money

    def _status(self) -> str:
        return "active" if self.remaining.amount > 0 else "depleted"

    def apply(self, aggregate: Any) -> None:
        grants: dict[str, Grant] = aggregate.state.grants
        key = str(self.grant_id)
        grants[key] = grants[key].model_copy(
            update={"remaining": self.remaining, "status": self._status()}
        )


class CreditGranted(CreditMovement):
    NAME: ClassVar[str] = "CreditGranted"
    sequence: int
    priority: int
    expires_at: datetime | None = None
    reason: str

    def apply(self, aggregate: Any) -> None:
        state: CreditsState = aggregate.state
        state.grants[str(self.grant_id)] = Grant(
            grant_id=self.grant_id,
            sequence=self.sequence,
            amount=self.amount,
            remaining=self.remaining,
            priority=self.priority,
            expires_at=self.expires_at,
            reason=self.reason,
            actor=self.actor,
            granted_at=self.timestamp,
        )
        state.granted = max(state.granted, self.sequence)


class CreditDrawn(CreditMovement):
    """Part of a grant paid an invoice."""

    NAME: ClassVar[str] = "CreditDrawn"
    invoice_id: UUID

    def apply(self, aggregate: Any) -> None:
        super().apply(aggregate)
        drawn = aggregate.state.drawn.setdefault(str(self.invoice_id), {})
        key = str(self.grant_id)
        drawn[key] = drawn.get(key, 0) - self.amount.amount


class CreditReinstated(CreditMovement):
    """What an invoice drew from a grant came back: the invoice was voided."""

    NAME: ClassVar[str] = "CreditReinstated"
    invoice_id: UUID

    def apply(self, aggregate: Any) -> None:
        super().apply(aggregate)
        drawn: dict[str, dict[str, int]] = aggregate.state.drawn
        of_invoice = drawn.get(str(self.invoice_id), {})
        of_invoice.pop(str(self.grant_id), None)
        if not of_invoice:
            drawn.pop(str(self.invoice_id), None)


class CreditExpired(CreditMovement):
    """The rest of a grant lapsed at its expires_at (amount = minus what lapsed)."""

    NAME: ClassVar[str] = "CreditExpired"
    expires_at: datetime

    def _status(self) -> str:
        return "expired"


class CreditVoided(CreditMovement):
    """The rest of a grant was voided (amount = minus what lapsed)."""

    NAME: ClassVar[str] = "CreditVoided"
    reason: str

    def _status(self) -> str:
        return "voided"


class TenantCredits(Aggregate[CreditsState]):
    """A tenant's prepaid credit grants; every movement is an event, none goes below zero."""

    TYPE: ClassVar[str] = "tenant_credits"
    State = CreditsState

    @classmethod
    def open(cls, app_id: str, tenant_id: str, cause: Cause) -> TenantCredits:
        return cls._create(
            CreditLedgerOpened,
            tenant_credits_id(app_id, tenant_id),
            cause,
            app_id=app_id,
            tenant_id=tenant_id,
        )

    def grants(self, currency: str | None = None) -> list[Grant]:
        """Every grant (of a currency), oldest first."""
        found = sorted(self.state.grants.values(), key=lambda g: g.sequence)
        return [g for g in found if currency is None or g.currency == currency]

    def grant_of(self, grant_id: UUID) -> Grant:
        found = self.state.grants.get(str(grant_id))
        if found is None:
            raise NotFound(f"credit grant {grant_id} not found", field="grant_id")
        return found

    def available(self, currency: str, at: datetime) -> Money:
        """What the usable grants in a currency hold at an instant (past expiry excluded)."""
        total = Money.zero(currency)
        for grant in self._drawable(currency, at):
            total += grant.remaining
        return total

    def balances(self) -> dict[str, Money]:
        """What is left of the active grants, per currency."""
        totals: dict[str, Money] = {}
        for grant in self.grants():
            if grant.usable:
                totals[grant.currency] = totals.get(grant.currency, Money.zero(grant.currency))
                totals[grant.currency] += grant.remaining
        return totals

    def grant(
        self,
        amount: Money,
        cause: Cause,
        *,
        priority: int,
        reason: str,
        expires_at: datetime | None = None,
    ) -> Grant:
        """Add a grant (amount above zero, priority 0-100, expiry in the future)."""
        check_grant_terms(amount, priority, expires_at, cause.occurred_at)
        sequence = self.state.granted + 1
        grant_id = grant_id_of(self.state.app_id, self.state.tenant_id, sequence)
        before = self.balances().get(amount.currency, Money.zero(amount.currency))
        self._trigger(
            CreditGranted,
            cause,
            grant_id=grant_id,
            sequence=sequence,
            amount=amount,
            remaining=amount,
            balance=before + amount,
            priority=priority,
            expires_at=expires_at,
            reason=reason,
        )
        return self.grant_of(grant_id)

    def draw(self, wanted: Money, cause: Cause, *, invoice_id: UUID) -> Money:
        """Draw up to `wanted` from the grants in its currency, in draw order; returns what
        was drawn (zero when nothing is left). Grants past expiry lapse first."""
        self.expire_due(cause)
        drawn = Money.zero(wanted.currency)
        for grant in self._drawable(wanted.currency, cause.occurred_at):
            rest = wanted - drawn
            if rest.amount <= 0:
                break
            take = min(grant.remaining, rest)
            self._move(CreditDrawn, cause, grant, -take, invoice_id=invoice_id)
            drawn += take
        return drawn

    def due_expiry(self) -> datetime | None:
        """The earliest expiry of a grant with something left (when a billing run acts)."""
        instants = [g.expires_at for g in self.grants() if g.usable and g.expires_at]
        return min(instants) if instants else None

    def expire_due(self, cause: Cause) -> list[Grant]:
        """Lapse what is left of every grant whose expires_at has come by the clock."""
        lapsed = [
            g
            for g in self.grants()
            if g.usable and g.expires_at is not None and g.expires_at <= cause.occurred_at
        ]
        for grant in lapsed:
            assert grant.expires_at is not None
            self._move(CreditExpired, cause, grant, -grant.remaining, expires_at=grant.expires_at)
        return lapsed

    def reinstate(self, invoice_id: UUID, cause: Cause) -> Money | None:
        """Give back what a voided invoice drew, to each grant still active or depleted (a
        grant voided or past its expiry since gets nothing: what it would get back lapsed).
        Returns what came back (None when the invoice drew nothing)."""
        self.expire_due(cause)
        drawn = self.state.drawn.get(str(invoice_id))
        if not drawn:
            return None
        back: Money | None = None
        for key, units in list(drawn.items()):
            grant = self.state.grants[key]
            past = grant.expires_at is not None and grant.expires_at <= cause.occurred_at
            if past or grant.status in ("expired", "voided"):
                continue
            amount = grant.remaining.with_amount(units)
            self._move(CreditReinstated, cause, grant, amount, invoice_id=invoice_id)
            back = amount if back is None else back + amount
        return back

    def void(self, grant_id: UUID, cause: Cause, *, reason: str) -> Grant:
        """Void a grant: what is left of it lapses (refused once expired or voided)."""
        grant = self.grant_of(grant_id)
        if grant.status in ("expired", "voided"):
            raise InvalidTransition(f"credit grant {grant_id} is {grant.status}", field="grant_id")
        self._move(CreditVoided, cause, grant, -grant.remaining, reason=reason)
        return self.grant_of(grant_id)

    def _move(
        self,
        event_class: type[CreditMovement],
        cause: Cause,
        grant: Grant,
        amount: Money,
        **data: Any,
    ) -> None:
        before = self.balances().get(grant.currency, Money.zero(grant.currency))
        self._trigger(
            event_class,
            cause,
            grant_id=grant.grant_id,
            amount=amount,
            remaining=grant.remaining + amount,
            balance=before + amount,
            **data,
        )

    def _drawable(self, currency: str, at: datetime) -> list[Grant]:
        usable = [
            g
            for g in self.grants(currency)
            if g.usable and (g.expires_at is None or g.expires_at > at)
        ]
        return sorted(usable, key=draw_order)
