"""Record that the provider customer now carries the billing profile with this digest."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.payments.account import AccountCommand, account_view
from commands.unit_of_work import UnitOfWork


class RecordCustomerSync(AccountCommand):
    digest: str = Field(max_length=2000)
    fields: list[str] = Field(default_factory=list, max_length=20)


def record_customer_sync(command: RecordCustomerSync, uow: UnitOfWork) -> dict[str, Any]:
    account = command.load(uow)
    account.synced(command.digest, command.fields, uow.cause)
    return account_view(account)
