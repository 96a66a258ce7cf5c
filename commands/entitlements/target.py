"""Commands on one tenant's feature grants share its fields and loading."""

from __future__ import annotations

from pydantic import Field

from commands.base import TENANT_FIELD, Command
from commands.unit_of_work import UnitOfWork
from domain.catalog import KEY_PATTERN
from domain.entitlement_grant import TenantGrants, tenant_grants_id


class TenantGrantsCommand(Command):
    tenant_id: str = TENANT_FIELD
    feature_key: str = Field(pattern=KEY_PATTERN, description="any feature, on the plan or not")

    def find(self, uow: UnitOfWork) -> TenantGrants | None:
        """The tenant's grants of this app, or None when it never had one."""
        grants = uow.find(TenantGrants, tenant_grants_id(self.app_id, self.tenant_id))
        if grants is None or grants.state.app_id != self.app_id:
            return None
        return grants
