"""ApiKey aggregate: a credential of one app, with scopes, stored hashed and revocable.

The full key is `tk_<key_id>_<secret>`; only the SHA-256 of the secret is ever recorded, so the
events (and everything downstream of them) never hold a usable key. Creating and revoking keys
are events like any other, so the audit trail of who could do what comes for free.

Scopes are ordered: read < write < admin; a key holding a scope also holds the lower ones.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.errors import InvalidTransition, InvalidValue

KEY_PREFIX = "tk_"
KEY_ID_PATTERN = r"^[a-f0-9]{16,32}$"
_KEY_ID = re.compile(KEY_ID_PATTERN)


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return SCOPE_ORDER.index(self)

    def implied(self) -> list[Scope]:
        """This scope and every lower one (admin -> admin, write, read)."""
        return list(SCOPE_ORDER[: self.rank + 1])


SCOPE_ORDER: tuple[Scope, ...] = (Scope.READ, Scope.WRITE, Scope.ADMIN)


def api_key_id(key_id: str) -> UUID:
    return stable_id("api-key", key_id)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def format_key(key_id: str, secret: str) -> str:
    return f"{KEY_PREFIX}{key_id}_{secret}"


def parse_key(full_key: str) -> tuple[str, str]:
    """(key_id, secret) of a `tk_<key_id>_<secret>` key; InvalidValue when malformed.

    The key_id is hexadecimal, so the first underscore after the prefix ends it; the secret
    (URL-safe base64) may itself contain underscores.
    """
    if not full_key.startswith(KEY_PREFIX):
        raise InvalidValue("an API key starts with tk_", field="api_key")
    key_id, sep, secret = full_key[len(KEY_PREFIX) :].partition("_")
    if not sep or not secret or not _KEY_ID.match(key_id):
        raise InvalidValue("an API key looks like tk_<key_id>_<secret>", field="api_key")
    return key_id, secret


class ApiKeyState(AggregateState):
    key_id: str
    scopes: list[Scope]
    secret_hash: str
    label: str | None = None
    revoked: bool = False
    revoked_reason: str | None = None


class ApiKeyEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "api_key"


class ApiKeyCreated(ApiKeyEvent, CreatedEvent):
    NAME: ClassVar[str] = "ApiKeyCreated"
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"secret_hash"})
    key_id: str
    scopes: list[Scope]
    secret_hash: str
    label: str | None = None

    def apply(self, aggregate: Any) -> None:
        aggregate.state = ApiKeyState(
            app_id=self.app_id,
            key_id=self.key_id,
            scopes=list(self.scopes),
            secret_hash=self.secret_hash,
            label=self.label,
        )


class ApiKeyRevoked(ApiKeyEvent):
    NAME: ClassVar[str] = "ApiKeyRevoked"
    key_id: str
    reason: str | None = None

    def apply(self, aggregate: Any) -> None:
        aggregate.state.revoked = True
        aggregate.state.revoked_reason = self.reason


class ApiKey(Aggregate[ApiKeyState]):
    """One app's API key: what it may do (scopes) and whether it still works."""

    TYPE: ClassVar[str] = "api_key"
    State = ApiKeyState

    @classmethod
    def create(
        cls,
        key_id: str,
        app_id: str,
        scope: Scope,
        secret_hash: str,
        cause: Cause,
        label: str | None = None,
    ) -> ApiKey:
        if not _KEY_ID.match(key_id):
            raise InvalidValue(f"key_id must match {KEY_ID_PATTERN}", field="key_id")
        if not re.fullmatch(r"[a-f0-9]{64}", secret_hash):
            raise InvalidValue("secret_hash must be a SHA-256 hex digest", field="secret_hash")
        return cls._create(
            ApiKeyCreated,
            api_key_id(key_id),
            cause,
            app_id=app_id,
            key_id=key_id,
            scopes=scope.implied(),
            secret_hash=secret_hash,
            label=label,
        )

    def revoke(self, cause: Cause, reason: str | None = None) -> None:
        if self.state.revoked:
            raise InvalidTransition("the key is already revoked", field="key_id")
        self._trigger(ApiKeyRevoked, cause, key_id=self.state.key_id, reason=reason)

    @property
    def top_scope(self) -> Scope:
        return max(self.state.scopes, key=lambda scope: scope.rank)

    def allows(self, scope: Scope) -> bool:
        return not self.state.revoked and scope in self.state.scopes

    def verify(self, secret: str) -> bool:
        """True when the secret is this key's (constant-time) and the key is not revoked."""
        matches = hmac.compare_digest(hash_secret(secret), self.state.secret_hash)
        return matches and not self.state.revoked
