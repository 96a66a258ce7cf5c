"""What the sync and async HTTP clients share: operations, replies, requests, retries."""

from __future__ import annotations

import email.utils
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from tally_client.errors import InvalidInput, TallyError, TransportError, error_from

POSITION_HEADER = "Tally-Position"
REPLAYED_HEADER = "Idempotent-Replayed"
IDEMPOTENCY_HEADER = "Idempotency-Key"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Operation:
    """One route of the API (generated from /openapi.json into _operations.py)."""

    name: str
    method: str
    path: str
    operation_id: str
    path_params: tuple[str, ...] = ()
    query_params: tuple[str, ...] = ()
    body: Any = None  # the body's type (a model or a union of models), or None
    body_required: bool = False
    returns: str = "json"  # json | list | bytes | text

    @property
    def writes(self) -> bool:
        return self.method in WRITES


class Reply(dict[str, Any]):
    """A JSON object answer, with what the headers said: `position` (Tally-Position: pass it
    to a read as `min_position` to read your writes), `replayed` (a repeated command_id or
    Idempotency-Key answered the first result) and `status_code`."""

    position: int | None = None
    replayed: bool = False
    status_code: int = 200


class ReplyList(list[Any]):
    """A JSON array answer, with the same attributes as Reply."""

    position: int | None = None
    replayed: bool = False
    status_code: int = 200


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on 429, 502, 503, 504 and on connection failures, `attempts` tries in all.

    The wait is Retry-After when the answer has one (capped at `max_retry_after`), else
    exponential from `backoff` up to `max_backoff`, with jitter. Writes keep one
    Idempotency-Key across the tries, so a retried command runs once."""

    attempts: int = 5
    backoff: float = 0.2
    max_backoff: float = 5.0
    max_retry_after: float = 30.0
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 502, 503, 504}))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_backoff, self.backoff * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)


NO_RETRIES = RetryPolicy(attempts=1)


@dataclass(frozen=True)
class Prepared:
    """One request, ready to send (and to send again, unchanged, on a retry)."""

    method: str
    path: str
    params: list[tuple[str, str]]
    json: Any
    headers: dict[str, str]
    timeout: float | None


def prepare(
    op: Operation,
    path_values: Mapping[str, Any],
    query: Mapping[str, Any],
    body: Any,
    fields: Mapping[str, Any],
    *,
    min_position: int | None,
    idempotency_key: str | None,
    timeout: float | None,
    accept: str | None = None,
) -> Prepared:
    """The request for an operation; the body is checked against its model first (a
    refusal raises InvalidInput naming the field, as the server would)."""
    path = op.path
    for name in op.path_params:
        path = path.replace("{" + name + "}", quote(str(path_values[name]), safe=""))
    params = query_pairs(query)
    if min_position is not None:
        params.append(("min_position", str(min_position)))
    headers = {"Accept": accept or "application/json"}
    if op.writes:
        headers[IDEMPOTENCY_HEADER] = idempotency_key or str(uuid.uuid4())
    payload = body_of(op, body, fields)
    return Prepared(op.method, path, params, payload, headers, timeout)


def query_pairs(query: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in query.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs += [(name, text_of(v)) for v in values if v is not None]
    return pairs


def text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def body_of(op: Operation, body: Any, fields: Mapping[str, Any]) -> Any:
    """The JSON body: a model as given, or a mapping (plus keyword fields) checked against
    the operation's model; None when there is nothing to send."""
    if isinstance(body, BaseModel) and not fields:
        return dump(body)
    if body is None and not fields:
        return None if not op.body_required else check(op, {})
    data = {**(dump(body) if isinstance(body, BaseModel) else dict(body or {})), **fields}
    return check(op, data) if op.body is not None else data


def check(op: Operation, data: dict[str, Any]) -> Any:
    try:
        model = adapter(op.body).validate_python(data)
    except ValidationError as error:
        raise invalid(op, error) from None
    return dump(model)


@cache
def adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return value


def invalid(op: Operation, error: ValidationError) -> InvalidInput:
    """The client-side refusal, in the server's validation_error shape."""
    details = [
        {
            "field": ".".join(str(p) for p in item["loc"] if not _is_branch(p)) or "body",
            "rule": item["type"],
            "message": item["msg"],
        }
        for item in error.errors(include_url=False)
    ]
    first = details[0]
    message = f"{op.name}: {first['field']}: {first['message']} (checked before sending)"
    return InvalidInput("validation_error", message, details)


def _is_branch(part: Any) -> bool:
    """A union branch in a pydantic error location (a model name or a tag), not a field."""
    return isinstance(part, str) and (part[:1].isupper() or part.startswith(("function-", "(")))


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def error_of(response: httpx.Response) -> TallyError:
    """The typed exception for an error answer (any body shape)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"code": f"http_{response.status_code}", "message": response.text[:500]}
    return error_from(error, status=response.status_code, retry_after=retry_after(response))


def decode(response: httpx.Response, returns: str) -> Any:
    """The answer as the operation returns it; an error status raises its TallyError."""
    if response.status_code >= 400:
        raise error_of(response)
    if returns == "bytes":
        return response.content
    if returns == "text":
        return response.text
    return stamped(response.json() if response.content else {}, response)


def stamped(body: Any, response: httpx.Response) -> Reply | ReplyList:
    reply: Reply | ReplyList = ReplyList(body) if isinstance(body, list) else Reply(body)
    position = response.headers.get(POSITION_HEADER)
    reply.position = int(position) if position and position.isdigit() else None
    reply.replayed = response.headers.get(REPLAYED_HEADER) == "true"
    reply.status_code = response.status_code
    return reply


def should_retry(policy: RetryPolicy, attempt: int, response: httpx.Response | None) -> bool:
    if attempt + 1 >= policy.attempts:
        return False
    return response is None or response.status_code in policy.statuses


def wait_before_retry(policy: RetryPolicy, attempt: int, response: httpx.Response | None) -> float:
    return policy.delay(attempt, retry_after(response) if response is not None else None)


def transport_error(prepared: Prepared, error: httpx.HTTPError) -> TransportError:
    return TransportError(
        "transport_error",
        f"{prepared.method} {prepared.path}: no answer ({type(error).__name__}: {error})",
    )


def auth_headers(api_key: str | None, user_agent: str) -> dict[str, str]:
    headers = {"User-Agent": user_agent}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers
