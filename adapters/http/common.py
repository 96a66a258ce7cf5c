"""What the route modules share: running a command for the caller's app, reading a query,
loading an aggregate the caller owns, and request bodies derived from the command models.

app_id always comes from the API key. Typed routes' bodies do not have an app_id field (one
sent is refused 422, extra_forbidden, naming app_id); the generic command route accepts an
app_id equal to the key's app and refuses any other (422 app_id_mismatch).

The actor always comes from the API key too (`Principal.actor`): no body has an actor field,
and one sent is refused 422 (validation_error, rule extra_forbidden, naming actor) on every
route, the generic one included. A body may name `on_behalf_of` (whom the key acts for),
recorded beside the actor; it needs the ON_BEHALF_OF_SCOPE (auth.py), 403 without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, create_model
from pydantic.config import JsonDict

from adapters.http.auth import ON_BEHALF_OF_SCOPE, Principal
from adapters.http.consistency import mark_written
from adapters.http.errors import ApiError, not_implemented
from adapters.observability.correlation import correlated as with_correlation
from commands import edge
from commands.base import Command
from commands.bus import CommandResult
from projections.queries import QUERIES

if TYPE_CHECKING:
    from adapters.bootstrap import System
    from adapters.http.metrics import Metrics


Instant = edge.UtcInstant
"""The edge's one Instant (commands/edge.py), converted to UTC: HTTP times answer in UTC."""

REPLAYED_HEADER = "Idempotent-Replayed"
IDEMPOTENCY_HEADER = "Idempotency-Key"
NOT_IN_BODIES = frozenset({"app_id", "actor"})  # both come from the API key


def system_of(request: Request) -> System:
    return request.app.state.system  # type: ignore[no-any-return]


def metrics_of(request: Request) -> Metrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


def body_model(
    command: type[Command],
    name: str,
    *,
    exclude: frozenset[str] = frozenset(),
    example: dict[str, Any] | None = None,
) -> type[BaseModel]:
    """A request body with the command's fields (rules and descriptions included) except
    app_id, actor and the ones the route takes from its path; unknown fields are refused.
    `example` is shown in /openapi.json."""
    fields: dict[str, Any] = {
        field: (info.annotation, info)
        for field, info in command.model_fields.items()
        if field not in exclude and field not in NOT_IN_BODIES
    }
    extra: JsonDict | None = {"examples": [example]} if example is not None else None
    return create_model(
        name,
        __config__=ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra=extra),
        __doc__=(command.__doc__ or "").strip() or None,
        **fields,
    )


def fields_of(body: BaseModel | None) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude_unset=True) if body is not None else {}


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def out_of_int64(value: Any, path: str = "") -> str | None:
    """The path of the first integer outside the signed 64-bit range (JSON numbers the
    ledger cannot store or fingerprint), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else (path or "body")
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = out_of_int64(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def int64_error(field: str) -> ApiError:
    return ApiError(
        422,
        "validation_error",
        f"{field}: integers must fit in 64 bits",
        [{"field": field, "rule": "int64_range", "message": "integers must fit in 64 bits"}],
    )


def actor_refused() -> ApiError:
    """422 for a body that names its own actor: the actor is the API key."""
    message = "the actor comes from the API key; name whom it acts for in on_behalf_of"
    return ApiError(
        422,
        "validation_error",
        f"actor: {message}",
        [{"field": "actor", "rule": "extra_forbidden", "message": message}],
    )


def on_behalf_of_refused() -> ApiError:
    required = ON_BEHALF_OF_SCOPE.value
    return ApiError(
        403,
        "forbidden",
        f"on_behalf_of needs the {required} scope",
        [{"field": "on_behalf_of", "required_scope": required}],
    )


def check_audit_fields(principal: Principal, fields: dict[str, Any]) -> None:
    """A body's actor is refused (422); its on_behalf_of needs ON_BEHALF_OF_SCOPE (403)."""
    if "actor" in fields:
        raise actor_refused()
    if fields.get("on_behalf_of") is not None and not principal.has(ON_BEHALF_OF_SCOPE):
        raise on_behalf_of_refused()


def build_command(
    command: type[Command],
    principal: Principal,
    fields: dict[str, Any],
    request: Request | None,
    *,
    actor: str | None = None,
) -> Command:
    """The command for the caller's app, recorded as the key's actor (or `actor`, for the
    commands a billing run sends); ValidationError -> 422 naming the field."""
    check_audit_fields(principal, fields)
    too_big = out_of_int64(fields)
    if too_big is not None:
        raise int64_error(too_big)
    payload = dict(fields)
    payload["app_id"] = principal.app_id
    payload["actor"] = actor or principal.actor
    if request is not None and "command_id" not in payload and "command_id" in command.model_fields:
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key:
            payload["command_id"] = key
    try:
        return edge.validated(command, payload, command.NAME)
    except edge.Refused as bad:
        raise ApiError(422, **bad.error) from None


def execute(request: Request, command: Command) -> CommandResult:
    """Run a command through the bus (which counts it for /metrics), correlated with the
    request (adapters/http/observe.py)."""
    outcome = system_of(request).handle(correlated(request, command))
    mark_written(request, outcome.position)  # the Tally-Position header (consistency.py)
    return outcome


def correlated(request: Request, command: Command) -> Command:
    """The command with its correlation id (adapters/observability/correlation.py): the one
    in the body, else the X-Request-Id the client sent, else its command_id, else the
    request's own id."""
    request_id, sent = request.scope.get("state", {}).get("request_id", (None, False))
    return with_correlation(command, request_id, sent)


def command_reply(outcome: CommandResult, *, created: bool = False) -> JSONResponse:
    """The command's result as the body; a replayed command_id answers 200 with the first
    result and `Idempotent-Replayed: true`."""
    if outcome.duplicate:
        return JSONResponse(outcome.result, status_code=200, headers={REPLAYED_HEADER: "true"})
    return JSONResponse(outcome.result, status_code=201 if created else 200)


def run_command(
    request: Request,
    principal: Principal,
    command: type[Command],
    fields: dict[str, Any],
    *,
    created: bool = False,
) -> JSONResponse:
    return command_reply(
        execute(request, build_command(command, principal, fields, request)), created=created
    )


def run_query(request: Request, name: str, **params: Any) -> Any:
    """A read-model query for the caller; 501 while that read model does not exist yet."""
    if name not in QUERIES:
        raise not_implemented(f"the {name!r} read model")
    return system_of(request).query(name, **params)


async def run_hot_query(request: Request, name: str, **params: Any) -> Any:
    """A query on a hot route (the entitlement check). With the Redis hot copy configured it
    runs on the event loop: a cache read answers in about 0.1 ms, less than a hop to the
    thread pool costs (TARGETS.md P3). Without it the read model is read in the thread pool."""
    if system_of(request).cache is not None:
        return run_query(request, name, **params)
    return await run_in_threadpool(run_query, request, name, **params)


def owned(
    system: System,
    kind: type[Any],
    aggregate_id: UUID,
    app_id: str,
    field: str,
    named: str | None = None,
) -> Any:
    """The aggregate when it exists, is of this kind and belongs to the app; else 404, whose
    message names it as the client did (`named`: a plan's key, a coupon's code) or by id."""
    found = system.aggregate(aggregate_id)
    if not isinstance(found, kind) or found.state.app_id != app_id:
        raise ApiError(
            404,
            "not_found",
            f"{getattr(kind, 'TYPE', 'resource')} {named or aggregate_id} not found",
            [{"field": field}],
        )
    return found
