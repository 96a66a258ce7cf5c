"""The command and query bus over NATS (docs/nats-bus.md): `TallyBus`.

    async with TallyBus("nats://127.0.0.1:4222", "acme") as bus:
        started = await bus.send("start_subscription", {"tenant_id": "t-1", "plan_key": "pro"})
        check = await bus.query("entitlement", tenant_id="t-1", feature_key="api-calls")

`send` gives every command a `command_id` (unless it names one) and keeps it across its
retries: a retry after a lost reply (a timeout), no responder, or an `unavailable` answer runs
nothing twice, and its reply is the first result with `replayed` set (`"duplicate": true` on
the wire). The bus has no API key: NATS permissions decide who may publish.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from tally_client._core import Reply, ReplyList, RetryPolicy
from tally_client.errors import TallyError, TransportError, error_from

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
NO_COMMAND_ID = frozenset({"create_api_key"})  # its reply holds the key: never replayed
RETRIED_CODES = frozenset({"unavailable"})
LOST = (NatsTimeout, NoRespondersError, asyncio.TimeoutError)


class TallyBus:
    """Commands on `<prefix>.cmd.<app_id>.<name>`, queries on `<prefix>.query.<app_id>.<name>`
    (request/reply, JSON). Connects on first use; `close()` (or `async with`) disconnects."""

    def __init__(
        self,
        nats_url: str = DEFAULT_NATS_URL,
        app_id: str = "",
        *,
        prefix: str = "tally",
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        connection: NatsClient | None = None,
    ) -> None:
        if not app_id:
            raise ValueError("app_id is required: the bus takes the app from the subject")
        self.nats_url, self.app_id, self.prefix = nats_url, app_id, prefix
        self.timeout = timeout
        self.retry = retry or RetryPolicy(attempts=4, backoff=0.2)
        self._nc = connection
        self._owned = connection is None

    async def connect(self) -> NatsClient:
        if self._nc is None:
            self._nc = await nats.connect(self.nats_url, name=f"tally-client-{self.app_id}")
        return self._nc

    async def close(self) -> None:
        if self._nc is not None and self._owned and not self._nc.is_closed:
            await self._nc.close()
        self._nc = None

    async def __aenter__(self) -> TallyBus:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        /,
        *,
        command_id: str | None = None,
        **fields: Any,
    ) -> Reply:
        """Run a command; returns its result (`position`: its last event's log position;
        `replayed`: this command_id had run before). A refusal raises its TallyError."""
        body = {**(payload or {}), **fields}
        if name not in NO_COMMAND_ID:
            body["command_id"] = command_id or body.get("command_id") or str(uuid.uuid4())
        answer = _result(await self.request(f"{self.prefix}.cmd.{self.app_id}.{name}", body))
        if not isinstance(answer, Reply):
            raise TallyError("unexpected_reply", f"{name}: a command answered a list")
        return answer

    async def query(
        self, name: str, params: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> Reply | ReplyList:
        """Read a query (`entitlement`, `usage`, ...; docs/nats-bus.md) and return its answer."""
        subject = f"{self.prefix}.query.{self.app_id}.{name}"
        return _result(await self.request(subject, {**(params or {}), **fields}))

    async def request(self, subject: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """One request with the retries; the reply as sent (`{"ok", "result"|"error", ...}`)."""
        data = json.dumps(body, default=str).encode()
        attempt = 0
        while True:
            reply = await self._try(subject, data, attempt)
            if reply is not None:
                return reply
            await asyncio.sleep(self.retry.delay(attempt))
            attempt += 1

    async def _try(self, subject: str, data: bytes, attempt: int) -> dict[str, Any] | None:
        """The reply, or None when it is worth trying again."""
        last = attempt + 1 >= self.retry.attempts
        connection = await self.connect()
        try:
            message = await connection.request(subject, data, timeout=self.timeout)
        except LOST as lost:
            if last:
                raise TransportError("transport_error", f"{subject}: no reply ({lost!r})") from lost
            return None
        reply: dict[str, Any] = json.loads(message.data)
        refusal = reply.get("error") if not reply.get("ok") else None
        if isinstance(refusal, dict) and refusal.get("code") in RETRIED_CODES and not last:
            return None
        return reply


def _result(reply: dict[str, Any]) -> Reply | ReplyList:
    """The reply's result, stamped; a refusal raises its TallyError."""
    if not reply.get("ok"):
        error = reply.get("error")
        raise error_from(error if isinstance(error, dict) else {"code": "error"})
    result = reply.get("result")
    answer = ReplyList(result) if isinstance(result, list) else Reply(result or {})
    answer.position = reply.get("position")
    answer.replayed = bool(reply.get("duplicate"))
    return answer


__all__ = ["TallyBus", "TallyError"]
