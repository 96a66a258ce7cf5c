"""R2: every command and usage event delivered 3 times, in a random order, by concurrent
clients. `events` usage events (random quantities) and `commands` consume_quota commands
(each with its command_id) on one soft quota: the quota's total is exact, and of the three
deliveries of each exactly one counts and the other two are answered as duplicates."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import httpx

from chaos.load import refusal
from chaos.result import Result, in_parallel, post
from chaos.stack import NATS_URL, PG_URL, REDIS_URL, answers, running_stack

TITLE = "every command and usage event delivered 3 times"
QUOTA = "/v1/tenants/triple/quotas/calls"
Delivery = tuple[str, int, int]  # (kind, index, quantity)


def run(events: int = 1000, commands: int = 1000, clients: int = 16, seed: int = 2) -> Result:
    began, rng = time.monotonic(), random.Random(seed)
    result = Result("R2", TITLE)
    sends: list[Delivery] = [("usage", i, rng.randint(1, 5)) for i in range(events)]
    sends += [("command", i, rng.randint(1, 5)) for i in range(commands)]
    expected = sum(quantity for _, _, quantity in sends)
    deliveries = sends * 3
    rng.shuffle(deliveries)
    nats = NATS_URL if answers(NATS_URL) else None
    redis = REDIS_URL if answers(REDIS_URL) else None
    with running_stack(PG_URL, nats_url=nats, redis_url=redis) as stack:
        key = stack.key("chaos-r2")
        with stack.client(key) as admin:
            admin.put(QUOTA, json={"limit": None, "enforcement": "soft"}).raise_for_status()
        answers_ = in_parallel(lambda: stack.client(key), clients, deliveries, deliver)
        with stack.client(key) as admin:
            used = int(admin.get(QUOTA).json()["used"])
    judge(result, list(zip(deliveries, answers_, strict=True)), expected, used)
    result.figures = {"events": events, "commands": commands, "deliveries": len(deliveries)} | (
        result.figures | {"expected": expected, "used": used}
    )
    result.seconds = time.monotonic() - began
    return result


def deliver(client: httpx.Client, delivery: Delivery) -> str:
    """One delivery: `counted`, `duplicate` or `error <status>`."""
    kind, index, quantity = delivery
    if kind == "usage":
        body: dict[str, Any] = {"idempotency_key": f"u{index}", "tenant_id": "triple"}
        status, answer = post(
            client, "/v1/usage", body | {"feature_key": "calls", "quantity": quantity}
        )
        if status != 200:
            return f"error {status} {refusal(answer)}"
        return (
            "duplicate" if answer["duplicates"] == 1 else "counted" if answer["accepted"] else "?"
        )
    command = {"tenant_id": "triple", "feature_key": "calls", "amount": quantity}
    command |= {"idempotency_key": f"c{index}", "command_id": f"cmd-{index}"}
    status, answer = post(client, "/v1/commands/consume_quota", command)
    if status != 200 or not answer.get("ok"):
        return f"error {status} {refusal(answer)}"
    return "duplicate" if answer.get("duplicate") else "counted"


def judge(result: Result, answered: list[tuple[Delivery, str]], expected: int, used: int) -> None:
    per_item: dict[tuple[str, int], Counter[str]] = {}
    for (kind, index, _), answer in answered:
        per_item.setdefault((kind, index), Counter())[answer] += 1
    wrong = [item for item, seen in per_item.items() if seen != Counter(counted=1, duplicate=2)]
    totals = Counter(answer for _, answer in answered)
    result.figures = {"counted": totals["counted"], "duplicates": totals["duplicate"]}
    result.figures["errors"] = sum(n for a, n in totals.items() if a.startswith("error"))
    result.check(used == expected, f"quota used {used}, expected {expected}")
    result.check(not wrong, f"{len(wrong)} items not counted once + 2 duplicates: {wrong[:3]}")
    result.check(result.figures["errors"] == 0, f"errors: {totals}")
