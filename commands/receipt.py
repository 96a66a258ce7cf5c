"""Command receipts: a command_id's first result, saved atomically with the command's events."""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar
from uuid import UUID

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, stable_id


def receipt_id(app_id: str, command_id: str) -> UUID:
    return stable_id("command", app_id, command_id)


AUDIT_FIELDS = frozenset({"command_id", "correlation_id", "actor", "on_behalf_of"})


def fingerprint(payload: dict[str, Any]) -> str:
    """A digest of the command's fields, to tell a retry from a reused command_id (who sends
    the retry, and under which correlation, does not matter)."""
    body = {k: v for k, v in payload.items() if k not in AUDIT_FIELDS}
    # stdlib json: exact for integers of any size (orjson stops at 64 bits)
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class ReceiptState(AggregateState):
    command_id: str
    command_name: str
    fingerprint: str
    result: dict[str, Any]


class CommandAccepted(CreatedEvent):
    AGGREGATE_TYPE: ClassVar[str] = "command"
    NAME: ClassVar[str] = "CommandAccepted"
    command_name: str
    fingerprint: str
    result: dict[str, Any]

    def apply(self, aggregate: Any) -> None:
        aggregate.state = ReceiptState(
            app_id=self.app_id,
            tenant_id=self.tenant_id,
            command_id=self.command_id or "",
            command_name=self.command_name,
            fingerprint=self.fingerprint,
            result=self.result,
        )


class CommandReceipt(Aggregate[ReceiptState]):
    """Proof that a command_id ran, with its result; its id is derived from the command_id."""

    TYPE: ClassVar[str] = "command"
    State = ReceiptState

    @classmethod
    def record(
        cls,
        app_id: str,
        tenant_id: str | None,
        command_name: str,
        digest: str,
        result: dict[str, Any],
        cause: Cause,
    ) -> CommandReceipt:
        assert cause.command_id is not None
        return cls._create(
            CommandAccepted,
            receipt_id(app_id, cause.command_id),
            cause,
            app_id=app_id,
            tenant_id=tenant_id,
            command_name=command_name,
            fingerprint=digest,
            result=result,
        )
