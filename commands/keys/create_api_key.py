"""Create an API key for an app: the full key is in this reply ONCE and stored nowhere.

Only the SHA-256 of the secret is recorded. For that reason this command takes no command_id:
a command_id's receipt keeps the first reply to answer retries, and that reply holds the key.
"""

from __future__ import annotations

import secrets
from typing import Any

from pydantic import Field, field_validator

from commands.base import Command
from commands.unit_of_work import UnitOfWork
from domain.api_key import ApiKey, Scope, format_key, hash_secret
from domain.errors import InvalidValue


class CreateApiKey(Command):
    scope: Scope = Field(description="read < write < admin; a scope implies the lower ones")
    label: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("command_id")
    @classmethod
    def _no_command_id(cls, command_id: str | None) -> None:
        if command_id is not None:
            raise InvalidValue(
                "create_api_key takes no command_id: its reply (the key) is never stored",
                field="command_id",
            )


def create_api_key(command: CreateApiKey, uow: UnitOfWork) -> dict[str, Any]:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    key = uow.add(
        ApiKey.create(
            key_id, command.app_id, command.scope, hash_secret(secret), uow.cause, command.label
        )
    )
    return {
        "key_id": key_id,
        "app_id": command.app_id,
        "scopes": [scope.value for scope in key.state.scopes],
        "label": command.label,
        "api_key": format_key(key_id, secret),
    }
