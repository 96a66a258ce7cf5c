"""Revoke an API key: it stops working (within the API's short key cache, a few seconds)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.base import Command
from commands.unit_of_work import UnitOfWork
from domain.api_key import KEY_ID_PATTERN, ApiKey, api_key_id


class RevokeApiKey(Command):
    key_id: str = Field(pattern=KEY_ID_PATTERN)
    reason: str | None = Field(default=None, max_length=500)

    def concurrency_key(self) -> str:
        return f"{self.app_id}/api-key/{self.key_id}"


def revoke_api_key(command: RevokeApiKey, uow: UnitOfWork) -> dict[str, Any]:
    key = uow.get(
        ApiKey,
        api_key_id(command.key_id),
        field="key_id",
        app_id=command.app_id,
        named=command.key_id,
    )
    key.revoke(uow.cause, command.reason)
    return {"key_id": command.key_id, "app_id": command.app_id, "revoked": True}
