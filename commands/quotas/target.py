"""Commands that act on one tenant's quota for one feature share its fields and loading."""

from __future__ import annotations

from pydantic import Field

from commands.base import TENANT_FIELD, Command
from commands.unit_of_work import UnitOfWork
from domain.catalog import KEY_PATTERN
from domain.errors import NotFound
from domain.quota import Quota, quota_id


class QuotaCommand(Command):
    tenant_id: str = TENANT_FIELD
    feature_key: str = Field(pattern=KEY_PATTERN, description="a metered feature of the plan")

    def load(self, uow: UnitOfWork) -> Quota:
        """The tenant's quota for the feature, or NotFound naming feature_key."""
        quota = uow.find(Quota, quota_id(self.app_id, self.tenant_id, self.feature_key))
        if quota is None or quota.state.app_id != self.app_id:
            raise NotFound(
                f"tenant {self.tenant_id} has no quota for feature {self.feature_key}",
                field="feature_key",
            )
        return quota
