"""A tenant's credit balance in one currency: what negative invoices left to draw on."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.errors import InvalidValue
from domain.money import Money


def balance_id(app_id: str, tenant_id: str, currency: str) -> UUID:
    return stable_id("credit-balance", app_id, tenant_id, currency)


class BalanceState(AggregateState):
    tenant_id: str
    balance: Money


class BalanceEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "credit_balance"
    amount: Money  # the movement: positive credits, negative draws
    balance: Money  # after the movement
    invoice_id: UUID | None = None
    reason: str

    def apply(self, aggregate: Any) -> None:
        aggregate.state.balance = self.balance


class BalanceOpened(BalanceEvent, CreatedEvent):
    NAME: ClassVar[str] = "CreditBalanceOpened"

    def apply(self, aggregate: Any) -> None:
        aggregate.state = BalanceState(
            app_id=self.app_id, tenant_id=self.tenant_id or "", balance=self.balance
        )


class BalanceMoved(BalanceEvent):
    NAME: ClassVar[str] = "CreditBalanceMoved"


class CreditBalance(Aggregate[BalanceState]):
    """Every movement is an event; the balance is their sum and never goes below zero."""

    TYPE: ClassVar[str] = "credit_balance"
    State = BalanceState

    @classmethod
    def open(
        cls,
        app_id: str,
        tenant_id: str,
        amount: Money,
        cause: Cause,
        *,
        invoice_id: UUID,
        reason: str,
    ) -> CreditBalance:
        _positive(amount)
        return cls._create(
            BalanceOpened,
            balance_id(app_id, tenant_id, amount.currency),
            cause,
            app_id=app_id,
            tenant_id=tenant_id,
            amount=amount,
            balance=amount,
            invoice_id=invoice_id,
            reason=reason,
        )

    @property
    def balance(self) -> Money:
        return self.state.balance

    def move(self, amount: Money, cause: Cause, *, invoice_id: UUID, reason: str) -> None:
        """Credit (positive) or draw (negative); a draw never takes it below zero."""
        after = self.state.balance + amount
        if after.amount < 0:
            raise InvalidValue(f"the balance is only {self.state.balance}", field="amount")
        if not amount.is_zero():
            self._trigger(
                BalanceMoved,
                cause,
                amount=amount,
                balance=after,
                invoice_id=invoice_id,
                reason=reason,
            )


def _positive(amount: Money) -> None:
    if amount.amount <= 0:
        raise InvalidValue("a balance opens with a credit", field="amount")
