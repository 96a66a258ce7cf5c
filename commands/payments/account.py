"""Commands on a tenant's payment account share the tenant field and its loading."""

from __future__ import annotations

from pydantic import Field

from commands.base import TENANT_FIELD, Command
from commands.unit_of_work import UnitOfWork
from domain.errors import NotFound
from domain.payment_account import PaymentAccount, payment_account_id

PROVIDER_ID = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_\-]+$")


class AccountCommand(Command):
    tenant_id: str = TENANT_FIELD

    def find(self, uow: UnitOfWork) -> PaymentAccount | None:
        account = uow.find(PaymentAccount, payment_account_id(self.app_id, self.tenant_id))
        return account if account is not None and account.state.app_id == self.app_id else None

    def load(self, uow: UnitOfWork) -> PaymentAccount:
        account = self.find(uow)
        if account is None:
            raise NotFound(f"tenant {self.tenant_id} has no payment account", field="tenant_id")
        return account


def account_view(account: PaymentAccount) -> dict[str, object]:
    state = account.state
    return {
        "tenant_id": state.tenant_id,
        "provider": state.provider,
        "customer_id": state.customer_id,
        "subscriptions": dict(state.subscriptions),
        "invoices": dict(state.invoices),
    }
