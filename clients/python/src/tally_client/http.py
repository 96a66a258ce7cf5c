"""The HTTP clients: `Tally` (sync) and `AsyncTally`, one typed method per route.

    with Tally("http://127.0.0.1:8000", api_key="tk_…") as tally:
        plan = tally.define_plan(plan_key="pro", name="Pro", base_price={...})
        tally.get_entitlement("t-1", "api-calls", min_position=plan.position)

Each method checks its body against the route's model before sending, retries 429 and 503
(honouring Retry-After), 502, 504 and lost connections with backoff, and keeps one
Idempotency-Key for all the tries of a write (the server takes it as the command_id). Error
answers raise the TallyError subclass of their status, with `code`, `field` and `details`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from tally_client._core import (
    NO_RETRIES,
    Operation,
    Prepared,
    Reply,
    ReplyList,
    RetryPolicy,
    auth_headers,
    decode,
    prepare,
    should_retry,
    transport_error,
    wait_before_retry,
)
from tally_client._operations import OPERATIONS, AsyncOperations, SyncOperations

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "tally-client-python/0.1"
NO_COMMAND_ID = frozenset({"create_api_key"})  # its reply holds the key: never replayed


class _Session:
    """What both clients keep: the retry policy and the last position written."""

    def __init__(self, retry: RetryPolicy | None, read_your_writes: bool) -> None:
        self.retry = retry or RetryPolicy()
        self.read_your_writes = read_your_writes
        self.last_position: int | None = None
        """The highest position a write of this client answered (read your writes)."""

    def _prepare(self, op: Operation, *args: Any, min_position: int | None, **kw: Any) -> Prepared:
        if min_position is None and self.read_your_writes and not op.writes:
            min_position = self.last_position
        return prepare(op, *args, min_position=min_position, **kw)

    def _noted(self, answer: Any) -> Any:
        position = getattr(answer, "position", None)
        if position is not None and position > (self.last_position or 0):
            self.last_position = position
        return answer


def _command_body(name: str, payload: Mapping[str, Any] | None, fields: dict[str, Any]) -> Any:
    body = {**(payload or {}), **fields}
    if name not in NO_COMMAND_ID:
        body.setdefault("command_id", str(uuid.uuid4()))  # kept across the retries
    return body


def _command_result(reply: Reply) -> Reply:
    """A generic command's `result`, stamped with the reply's position and duplicate flag."""
    result = Reply(reply.get("result") or {})
    result.position = reply.get("position", reply.position)
    result.replayed = bool(reply.get("duplicate"))
    result.status_code = reply.status_code
    return result


class Tally(_Session, SyncOperations):
    """The HTTP API, synchronous. `read_your_writes=True` passes the last position this
    client wrote as `min_position` to every read that does not give its own."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        read_your_writes: bool = False,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(retry, read_your_writes)
        headers = auth_headers(api_key, USER_AGENT)
        self._http = http or httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Tally:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def command(
        self, name: str, payload: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> Reply:
        """Run any command by its bus name (POST /v1/commands/{name}) and return its result;
        a `command_id` is generated unless given, and kept across the retries."""
        reply = self.run_command(name, _command_body(name, payload, fields))
        return _command_result(reply)

    def _call(
        self,
        op: Operation,
        path: Mapping[str, Any],
        query: Mapping[str, Any],
        body: Any,
        fields: Mapping[str, Any],
        *,
        min_position: int | None,
        timeout: float | None,
        accept: str | None = None,
        returns: str = "json",
        idempotency_key: str | None = None,
    ) -> Any:
        prepared = self._prepare(
            op,
            path,
            query,
            body,
            fields,
            min_position=min_position,
            idempotency_key=idempotency_key,
            timeout=timeout,
            accept=accept,
        )
        return self._noted(decode(self._send(prepared), returns))

    def _send(self, prepared: Prepared) -> httpx.Response:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(**_request_args(prepared))
            except httpx.TransportError as error:
                if not should_retry(self.retry, attempt, None):
                    raise transport_error(prepared, error) from error
            if response is not None and not should_retry(self.retry, attempt, response):
                return response
            time.sleep(wait_before_retry(self.retry, attempt, response))
            attempt += 1


class AsyncTally(_Session, AsyncOperations):
    """The HTTP API, asynchronous (the same methods as Tally, awaited)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        read_your_writes: bool = False,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(retry, read_your_writes)
        headers = auth_headers(api_key, USER_AGENT)
        self._http = http or httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncTally:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def command(
        self, name: str, payload: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> Reply:
        """Run any command by its bus name (POST /v1/commands/{name}); see Tally.command."""
        reply = await self.run_command(name, _command_body(name, payload, fields))
        return _command_result(reply)

    async def _call(
        self,
        op: Operation,
        path: Mapping[str, Any],
        query: Mapping[str, Any],
        body: Any,
        fields: Mapping[str, Any],
        *,
        min_position: int | None,
        timeout: float | None,
        accept: str | None = None,
        returns: str = "json",
        idempotency_key: str | None = None,
    ) -> Any:
        prepared = self._prepare(
            op,
            path,
            query,
            body,
            fields,
            min_position=min_position,
            idempotency_key=idempotency_key,
            timeout=timeout,
            accept=accept,
        )
        return self._noted(decode(await self._send(prepared), returns))

    async def _send(self, prepared: Prepared) -> httpx.Response:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.request(**_request_args(prepared))
            except httpx.TransportError as error:
                if not should_retry(self.retry, attempt, None):
                    raise transport_error(prepared, error) from error
            if response is not None and not should_retry(self.retry, attempt, response):
                return response
            await asyncio.sleep(wait_before_retry(self.retry, attempt, response))
            attempt += 1


def _request_args(prepared: Prepared) -> dict[str, Any]:
    timeout: Any = httpx.USE_CLIENT_DEFAULT if prepared.timeout is None else prepared.timeout
    return {
        "method": prepared.method,
        "url": prepared.path,
        "params": prepared.params,
        "json": prepared.json,
        "headers": prepared.headers,
        "timeout": timeout,
    }


__all__ = ["NO_RETRIES", "OPERATIONS", "AsyncTally", "Reply", "ReplyList", "RetryPolicy", "Tally"]
