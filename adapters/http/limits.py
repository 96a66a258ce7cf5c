"""Request body limits, checked before any route reads or parses the body (SURFACE.md
"Limits at the edge").

- A body larger than TALLY_MAX_BODY_BYTES (default 5 MB) answers 413 `payload_too_large`:
  at once from its Content-Length, or, for a chunked body, as soon as the bytes read pass
  the limit (the rest is never read).
- A JSON body nested deeper than TALLY_MAX_JSON_DEPTH (default 64) answers 400
  `invalid_body` naming `body` ("nested too deeply"), before a parser recurses into it.

A body within the limits reaches the app unchanged (the Stripe webhook verifies its exact
bytes, and keeps its own, smaller limit).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.http.errors import ApiError
from adapters.json_depth import nests_deeper_than


def too_large(max_bytes: int) -> ApiError:
    message = f"the body is larger than {max_bytes} bytes"
    detail = {"field": "body", "in": "body", "rule": "max_bytes", "limit": max_bytes}
    return ApiError(413, "payload_too_large", f"body: {message}", [{**detail, "message": message}])


def too_deep(max_depth: int) -> ApiError:
    message = f"the JSON is nested too deeply (more than {max_depth} levels)"
    detail = {"field": "body", "in": "body", "rule": "max_depth", "limit": max_depth}
    return ApiError(400, "invalid_body", f"body: {message}", [{**detail, "message": message}])


class BodyLimits:
    """Pure ASGI middleware: refuses a body over `max_bytes` (413) or JSON nested deeper than
    `max_depth` (400); requests without a body pass straight through."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_depth: int) -> None:
        self.app, self.max_bytes, self.max_depth = app, max_bytes, max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not _has_body(headers):
            await self.app(scope, receive, send)
            return
        if _declared_size(headers) > self.max_bytes:
            await _refuse(too_large(self.max_bytes), scope, receive, send)
            return
        body = await self._read(receive)
        if body is None:
            await _refuse(too_large(self.max_bytes), scope, receive, send)
        elif _is_json(headers) and nests_deeper_than(body, self.max_depth):
            await _refuse(too_deep(self.max_depth), scope, receive, send)
        else:
            await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes max_bytes (the rest is left unread)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: the app sees it
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _has_body(headers: Headers) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


def _declared_size(headers: Headers) -> int:
    """The Content-Length (0 when absent or malformed: the bytes read are counted anyway)."""
    declared = headers.get("content-length", "")
    return int(declared) if declared.isdigit() else 0


def _is_json(headers: Headers) -> bool:
    """Whether the app parses the body as JSON (as FastAPI does: no type, or a JSON type)."""
    kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return not kind or kind == "application/json" or kind.endswith("+json")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then the connection's own."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse(error.body(), status_code=error.status)
    await response(scope, receive, send)
