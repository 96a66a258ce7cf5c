"""Read your writes (SURFACE.md): a write's answer carries the log position of its last event,
and a read given that position waits until the read models have applied it.

- Writes: every command route answers with the header `Tally-Position` (the position of the
  command's last event; for a replayed command_id, or a command that recorded nothing, the
  head of the log, which is as good). The generic command route also has `position` in its
  body, as the NATS bus does. Routes that write outside the command bus (usage ingest, billing
  runs) call `mark_written` and answer with the head of the log after their commit.
- Reads: any route takes `?min_position=N`. A position past the head of the log answers 422
  at once (no write answered it). Otherwise the request waits, polling every 10 ms and for at
  most `wait_seconds` (2 s), until every projector has applied position N, then runs and
  answers with `Tally-Position` set to the position the read models had reached. Past the
  bound it answers 503 `read_model_behind` with `Retry-After: 1`, naming `min_position` and
  the position reached: an answer older than the write would not be an answer to the question
  asked. Routes that read the event store itself (a subscription, an invoice) are always up to
  date; they wait too, which costs nothing once the projectors have caught up.

The parameter is taken out of the query string here, so no route declares it;
`document_min_position` adds it to every operation of the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.http.errors import UNAVAILABLE_ERRORS, ApiError

if TYPE_CHECKING:
    from adapters.bootstrap import System

POSITION_HEADER = "Tally-Position"
MIN_POSITION = "min_position"
STATE_KEY = "tally_position"
HEAD = -1  # mark_written without a position: the head of the log after the commit
WAIT_SECONDS = 2.0
POLL_SECONDS = 0.01
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def mark_written(request: Request, position: int | None = None) -> None:
    """This request committed events up to `position` (None: the head, read afterwards)."""
    request.state.tally_position = HEAD if position is None else position


def bad_min_position(value: str) -> ApiError:
    message = "min_position must be a whole number of at least 0"
    detail = {"field": MIN_POSITION, "in": "query", "rule": "int_parsing", "message": message}
    return ApiError(422, "validation_error", f"{MIN_POSITION}: {message} (got {value!r})", [detail])


def beyond_head(wanted: int, head: int) -> ApiError:
    """No write answered a position past the log's head: waiting could never end well."""
    message = f"min_position {wanted} is past the last position written ({head})"
    detail = {"field": MIN_POSITION, "in": "query", "rule": "beyond_head", "message": message}
    return ApiError(422, "validation_error", f"{MIN_POSITION}: {message}", [detail])


def behind(wanted: int, reached: int, waited: float) -> ApiError:
    message = f"the read models reached position {reached}, not {wanted}, within {waited:g}s"
    detail = {"field": MIN_POSITION, "in": "query", "min_position": wanted, "position": reached}
    return ApiError(503, "read_model_behind", message, [detail], headers={"Retry-After": "1"})


def take_min_position(scope: Scope) -> int | None:
    """The `min_position` of the query string (removed from it), or None."""
    pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    values = [value for key, value in pairs if key == MIN_POSITION]
    if not values:
        return None
    scope["query_string"] = urlencode([(k, v) for k, v in pairs if k != MIN_POSITION]).encode()
    value = values[-1].strip()
    if not value.isdigit() or len(value) > 18:
        raise bad_min_position(value)
    return int(value)


def read_model_position(system: System) -> int:
    """The lowest position every projector has applied (0 for one that never ran)."""
    rows = system.views.query("SELECT projection, position FROM {tracking}")
    reached = {str(row["projection"]): int(row["position"]) for row in rows}
    return min((reached.get(p.NAME, 0) for p in system.runner.projectors), default=0)


def head_position(system: System) -> int:
    return system.ledger.recorder.max_notification_id() or 0


class ReadYourWrites:
    """Pure ASGI middleware: `Tally-Position` on writes, `?min_position=` waits on reads."""

    def __init__(self, app: ASGIApp, system: System, wait_seconds: float = WAIT_SECONDS) -> None:
        self.app, self.system, self.wait_seconds = app, system, wait_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        try:
            wanted = take_min_position(scope)
            reached = None if wanted is None else await self._wait_for(wanted)
        except ApiError as error:
            await _refuse(error, scope, receive, send)
            return
        if reached is not None:
            state[STATE_KEY] = reached
        writes = scope["method"] in WRITES
        await self.app(scope, receive, self._stamped(send, state, writes))

    async def _wait_for(self, wanted: int) -> int:
        started = time.monotonic()
        reached = await asyncio.to_thread(read_model_position, self.system)
        if reached >= wanted:
            return reached
        head = await asyncio.to_thread(head_position, self.system)
        if wanted > head:
            raise beyond_head(wanted, head)
        while reached < wanted:
            waited = time.monotonic() - started
            if waited >= self.wait_seconds:
                raise behind(wanted, reached, round(waited, 3))
            await asyncio.sleep(POLL_SECONDS)
            reached = await asyncio.to_thread(read_model_position, self.system)
        return reached

    def _stamped(self, send: Send, state: dict[str, Any], writes: bool) -> Send:
        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                position = state.get(STATE_KEY)
                if position == HEAD and writes:
                    position = await _head_or_none(self.system)
                if isinstance(position, int) and position >= 0:
                    headers = list(message.get("headers", []))
                    headers.append((POSITION_HEADER.lower().encode(), str(position).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        return stamped


async def _head_or_none(system: System) -> int | None:
    """The head of the log; None (no header) when the store stopped answering right after
    the commit: the write's answer stands (answering 500 would hide that it committed)."""
    try:
        return await asyncio.to_thread(head_position, system)
    except UNAVAILABLE_ERRORS:
        return None


async def _refuse(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    from fastapi.responses import JSONResponse

    response = JSONResponse(error.body(), status_code=error.status, headers=error.headers)
    await response(scope, receive, send)


MIN_POSITION_PARAMETER: dict[str, Any] = {
    "name": MIN_POSITION,
    "in": "query",
    "required": False,
    "description": (
        "Read your writes: wait (at most 2 s) until the read models have applied this log "
        "position (a write's Tally-Position); 503 read_model_behind past that."
    ),
    "schema": {"type": "integer", "minimum": 0, "title": "Min Position"},
}


def document_min_position(app: FastAPI) -> None:
    """Add `min_position` to every operation of the app's OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict) and "responses" in operation:
                    _add_parameter(operation)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_parameter(operation: dict[str, Any]) -> None:
    parameters = operation.setdefault("parameters", [])
    if not any(p.get("name") == MIN_POSITION for p in parameters):
        parameters.append(dict(MIN_POSITION_PARAMETER))
