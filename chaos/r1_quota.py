"""R1: concurrent consumers of one hard quota. `clients` threads send `attempts` usage
events (quantity 1, each its own idempotency key) for one tenant's hard-limited feature;
used never exceeds the limit, accepted + refused = attempts, used = accepted."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx

from chaos.result import Result, in_parallel, post
from chaos.stack import NATS_URL, PG_URL, REDIS_URL, answers, running_stack

TITLE = "concurrent consumers of one hard quota"
QUOTA = "/v1/tenants/racer/quotas/calls"


def run(clients: int = 32, attempts: int = 10_000, limit: int | None = None) -> Result:
    """The full size is TARGETS.md's: 32 clients, 10,000 attempts (limit: half of them)."""
    began, limit = time.monotonic(), limit if limit is not None else attempts // 2
    result = Result("R1", TITLE)
    nats = NATS_URL if answers(NATS_URL) else None
    redis = REDIS_URL if answers(REDIS_URL) else None
    with running_stack(PG_URL, nats_url=nats, redis_url=redis) as stack:
        key = stack.key("chaos-r1")
        with stack.client(key) as admin:
            quota = {"limit": limit, "enforcement": "hard", "period": "month"}
            admin.put(QUOTA, json=quota).raise_for_status()
        outcomes = in_parallel(lambda: stack.client(key), clients, range(attempts), consume)
        with stack.client(key) as admin:
            used = int(admin.get(QUOTA).json()["used"])
    judge(result, Counter(outcomes), attempts, limit, used)
    result.figures = {"clients": clients, "attempts": attempts, "limit": limit} | (
        result.figures | {"used": used}
    )
    result.seconds = time.monotonic() - began
    return result


def consume(client: httpx.Client, index: int) -> str:
    """One attempt: `accepted`, `refused`, `duplicate` or `error <status>`."""
    body: dict[str, Any] = {"idempotency_key": f"r1-{index}", "tenant_id": "racer"}
    status, answer = post(client, "/v1/usage", body | {"feature_key": "calls"})
    if status != 200:
        return f"error {status}"
    return str(answer["results"][0]["status"])


def judge(result: Result, outcomes: Counter[str], attempts: int, limit: int, used: int) -> None:
    accepted, refused = outcomes["accepted"], outcomes["refused"]
    errors = attempts - accepted - refused
    result.figures = {"accepted": accepted, "refused": refused, "errors": errors}
    result.check(used <= limit, f"used {used} exceeds the limit {limit}")
    result.check(errors == 0, f"{errors} attempts neither accepted nor refused: {outcomes}")
    result.check(accepted + refused == attempts, "accepted + refused != attempts")
    result.check(used == accepted, f"used {used} != accepted {accepted}")
    result.check(accepted == min(limit, attempts), f"accepted {accepted}, limit {limit}")
