"""API key authentication: `Authorization: Bearer tk_<key_id>_<secret>`.

A key belongs to one app and carries scopes (read < write < admin). The key's events hold only
the SHA-256 of its secret; verification hashes the presented secret and compares the digests in
constant time (hmac.compare_digest).

Verified keys are cached in process for `ttl` seconds (5 by default) so a hot route does not
load the key on every request: a revocation takes effect within that time on every API
process. Unknown keys are not cached (each attempt reads the store).

The key is the actor: every event a request causes records `api-key:<key_id>` (plus the key's
label in parentheses), never an actor from the body. A caller holding ON_BEHALF_OF_SCOPE may
name whom it acts for in `on_behalf_of`, recorded beside the actor. Each key then spends a
token of its rate limit (rate_limit.py): 429 `rate_limited` when it has none left.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from adapters.http.errors import ApiError
from adapters.http.rate_limit import RateLimiter
from domain.api_key import ApiKey, Scope, api_key_id, hash_secret, parse_key
from domain.errors import InvalidValue

KEY_CACHE_SECONDS = 5.0
ACTOR_MAX_LENGTH = 200  # Command.actor's limit: a long label is cut to fit
ON_BEHALF_OF_SCOPE = Scope.WRITE  # the scope every recording route needs anyway

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key: `Authorization: Bearer tk_<key_id>_<secret>` (`tally keys create`)",
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's app (every route acts on it alone), scopes and label."""

    app_id: str
    key_id: str
    scopes: frozenset[Scope]
    label: str | None = None

    @property
    def actor(self) -> str:
        """The recorded actor: `api-key:<key_id>`, or `api-key:<key_id> (<label>)`."""
        actor = f"api-key:{self.key_id}"
        if not self.label:
            return actor
        room = ACTOR_MAX_LENGTH - len(actor) - 3
        return f"{actor} ({self.label[:room]})"

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes


@dataclass(frozen=True)
class _Cached:
    app_id: str
    scopes: frozenset[Scope]
    label: str | None
    secret_hash: str
    revoked: bool
    until: float


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


class KeyVerifier:
    """Checks presented keys against the ApiKey aggregates, with a short in-process cache."""

    def __init__(self, load: Callable[[Any], Any], ttl: float = KEY_CACHE_SECONDS) -> None:
        self._load, self.ttl = load, ttl
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def cached(self, presented: str) -> Principal | None:
        """The caller when the key is in the cache (no I/O), else None: then call verify."""
        try:
            key_id, _ = parse_key(presented)
        except InvalidValue:
            return None
        entry = self._cache.get(key_id)
        if entry is None or entry.until <= time.monotonic():
            return None
        return self.verify(presented)

    def verify(self, presented: str) -> Principal:
        try:
            key_id, secret = parse_key(presented)
        except InvalidValue:
            raise unauthorized("malformed API key (expected tk_<key_id>_<secret>)") from None
        entry = self._entry(key_id)
        if entry is None or not hmac.compare_digest(hash_secret(secret), entry.secret_hash):
            raise unauthorized("unknown API key")
        if entry.revoked:
            raise unauthorized("this API key was revoked")
        return Principal(app_id=entry.app_id, key_id=key_id, scopes=entry.scopes, label=entry.label)

    def verify_id(self, key_id: str) -> Principal:
        """The caller a console session names by key id (its secret was verified at sign-in);
        401 when the key is unknown or was revoked since (within the cache's ttl)."""
        entry = self._entry(key_id)
        if entry is None:
            raise unauthorized("unknown API key")
        if entry.revoked:
            raise unauthorized("this API key was revoked")
        return Principal(app_id=entry.app_id, key_id=key_id, scopes=entry.scopes, label=entry.label)

    def forget(self, key_id: str | None = None) -> None:
        with self._lock:
            if key_id is None:
                self._cache.clear()
            else:
                self._cache.pop(key_id, None)

    def _entry(self, key_id: str) -> _Cached | None:
        now = time.monotonic()
        entry = self._cache.get(key_id)
        if entry is not None and entry.until > now:
            return entry
        key = self._load(api_key_id(key_id))
        if not isinstance(key, ApiKey):
            return None
        entry = _Cached(
            app_id=key.state.app_id,
            scopes=frozenset(key.state.scopes),
            label=key.state.label,
            secret_hash=key.state.secret_hash,
            revoked=key.state.revoked,
            until=now + self.ttl,
        )
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key_id] = entry
        return entry


async def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """The caller, from its bearer key; 401 when missing, malformed, unknown or revoked, 429
    when the key spent its rate limit. A cached key is checked on the event loop; otherwise
    the key is loaded in a thread."""
    if credentials is None:
        raise unauthorized("missing API key: send Authorization: Bearer <key>")
    verifier: KeyVerifier = request.app.state.keys
    presented = credentials.credentials.strip()
    principal = verifier.cached(presented)
    if principal is None:
        principal = await run_in_threadpool(verifier.verify, presented)
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limit", None)
    if limiter is not None:
        limiter.spend(principal.key_id)
    request.state.principal = principal
    return principal


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold `scope` (403 otherwise). One dependency level
    (plus the bearer scheme) on purpose: it runs on every request of every route."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> Principal:
        principal = await authenticate(request, credentials)
        if not principal.has(scope):
            raise ApiError(
                403,
                "forbidden",
                f"this route needs the {scope.value} scope",
                [{"required_scope": scope.value}],
            )
        return principal

    dependency.__name__ = f"require_{scope.value}"
    return dependency


Reader = Annotated[Principal, Depends(require(Scope.READ))]
Writer = Annotated[Principal, Depends(require(Scope.WRITE))]
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
