"""What the payment services share: the provider, the ledger to read and the bus to write.

Every write the services make is a command (so it is validated, audited and deduplicated by
its command_id like any other); provider calls happen outside the commands' transactions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from commands.base import Command
from commands.bus import CommandResult
from commands.payments.ports import PaymentProvider
from domain.base import Aggregate
from domain.payment_account import PaymentAccount, payment_account_id
from domain.payment_catalog import PaymentCatalog, payment_catalog_id

A = TypeVar("A", bound=Aggregate[Any])

ACTOR = "stripe"


@dataclass(frozen=True)
class PaymentContext:
    """The provider, `load` (an aggregate by id, or None) and `execute` (run a command)."""

    provider: PaymentProvider
    load: Callable[[UUID], Any]
    execute: Callable[[Command], CommandResult]

    def run(self, command: Command) -> dict[str, Any]:
        return self.execute(command).result

    def find(self, kind: type[A], aggregate_id: UUID, app_id: str) -> A | None:
        found = self.load(aggregate_id)
        return found if isinstance(found, kind) and found.state.app_id == app_id else None

    def account(self, app_id: str, tenant_id: str) -> PaymentAccount | None:
        return self.find(PaymentAccount, payment_account_id(app_id, tenant_id), app_id)

    def catalog(self, app_id: str) -> PaymentCatalog | None:
        return self.find(PaymentCatalog, payment_catalog_id(app_id), app_id)


def tally_metadata(app_id: str, tenant_id: str, **more: str) -> dict[str, str]:
    """What every provider object Tally creates carries, so a webhook finds its app."""
    return {"tally_app_id": app_id, "tally_tenant_id": tenant_id, **more}
