"""The HTTP clients' retry rules, on a scripted transport: which answers are retried, how long
they wait (Retry-After first), and that every try of a write carries the same
Idempotency-Key. (Against the real server: test_http_client.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from tally_client import (
    AsyncTally,
    Conflict,
    RateLimited,
    RetryPolicy,
    Tally,
    TransportError,
    Unavailable,
)

FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.02)
PLAN = {"plan_key": "pro", "name": "Pro", "base_price": {"amount": 100, "currency": "USD"}}
Script = list[Callable[[httpx.Request], httpx.Response]]


def answer(status: int, body: object = None, **headers: str) -> Callable[..., httpx.Response]:
    return lambda request: httpx.Response(status, json=body or {}, headers=headers)


def unavailable(**headers: str) -> Callable[..., httpx.Response]:
    error = {"error": {"code": "unavailable", "message": "store down", "details": []}}
    return answer(503, error, **headers)


def lost(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


class Scripted:
    """Answers the requests in order from a script, and keeps them."""

    def __init__(self, script: Script) -> None:
        self.script, self.requests = list(script), []  # type: ignore[var-annotated]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.script.pop(0)(request)

    def client(self, retry: RetryPolicy = FAST) -> Tally:
        transport = httpx.MockTransport(self)
        return Tally(retry=retry, http=httpx.Client(base_url="http://tally", transport=transport))

    def keys(self) -> set[str | None]:
        return {r.headers.get("Idempotency-Key") for r in self.requests}


def test_503_and_lost_connections_are_retried_with_one_key() -> None:
    created = {"plan_id": "p", "plan_key": "pro", "version": 1}
    server = Scripted([unavailable(), lost, answer(201, created, **{"Tally-Position": "7"})])
    plan = server.client().define_plan(PLAN)
    assert plan == created and plan.position == 7 and plan.status_code == 201
    assert len(server.requests) == 3
    keys = server.keys()
    assert len(keys) == 1 and None not in keys  # the same Idempotency-Key on every try


def test_every_call_gets_a_key_of_its_own() -> None:
    server = Scripted([answer(201, {"plan_key": "pro"}), answer(201, {"plan_key": "pro"})])
    client = server.client()
    client.define_plan(PLAN)
    client.define_plan(PLAN)
    assert len(server.keys()) == 2


def test_retry_after_is_honoured() -> None:
    server = Scripted([answer(429, {"error": {"code": "rate_limited"}}, **{"Retry-After": "0.3"})])
    server.script.append(answer(200, {"plans": []}))
    started = time.monotonic()
    assert server.client().list_plans() == {"plans": []}
    assert time.monotonic() - started >= 0.3
    assert "Idempotency-Key" not in server.requests[0].headers  # reads need none


def test_the_last_refusal_is_raised_typed_after_the_tries() -> None:
    server = Scripted([unavailable(**{"Retry-After": "0"})] * 4)
    with pytest.raises(Unavailable) as refused:
        server.client().list_plans()
    assert refused.value.code == "unavailable" and refused.value.retry_after == 0
    assert len(server.requests) == 4
    limited = Scripted([answer(429, {"error": {"code": "rate_limited", "message": "slow"}})])
    with pytest.raises(RateLimited):
        limited.client(RetryPolicy(attempts=1)).list_plans()


def test_refusals_other_than_429_and_5xx_are_not_retried() -> None:
    conflict = {"error": {"code": "already_exists", "message": "pro exists", "details": []}}
    server = Scripted([answer(409, conflict)])
    with pytest.raises(Conflict) as refused:
        server.client().define_plan(PLAN)
    assert refused.value.code == "already_exists" and len(server.requests) == 1


def test_no_answer_at_all_is_a_transport_error() -> None:
    server = Scripted([lost] * 4)
    with pytest.raises(TransportError):
        server.client().list_plans()
    assert len(server.requests) == 4


def test_the_async_client_retries_the_same_way() -> None:
    server = Scripted([unavailable(), answer(201, {"plan_key": "pro"})])

    async def scenario() -> None:
        transport = httpx.MockTransport(server)
        http = httpx.AsyncClient(base_url="http://tally", transport=transport)
        async with AsyncTally(retry=FAST, http=http) as client:
            assert (await client.define_plan(PLAN))["plan_key"] == "pro"

    asyncio.run(scenario())
    assert len(server.requests) == 2 and len(server.keys()) == 1
