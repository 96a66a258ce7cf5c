"""R5: PostgreSQL stopped under load (a cluster of our own, `pg_ctl stop -m immediate`).
While it is down every request answers 503 `unavailable` within 2 s; a request answered
with an error recorded nothing (sent again after the outage, each of its events counts
now, none is a duplicate); the same server serves again by itself once PostgreSQL is
back, and the quotas hold exactly what was answered 200."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx

from chaos.load import Answer, Load
from chaos.result import Result, in_parallel, post
from chaos.stack import PrivatePostgres, Stack, running_stack

TITLE = "PostgreSQL stopped under load"
FAST = 2.0  # seconds: the most a request may take while PostgreSQL is down


def run(outage: float = 20.0, before: float = 5.0, after: float = 5.0) -> Result:
    began = time.monotonic()
    result = Result("R5", TITLE)
    postgres = PrivatePostgres()
    postgres.init()
    try:
        with running_stack(postgres.url) as stack:
            load = Load(stack, stack.key("chaos-r5"), threads=3)
            load.prepare()
            load.start()
            time.sleep(before)
            stopped = time.monotonic()
            postgres.stop()
            down = time.monotonic()  # stopped, as far as pg_ctl -w can tell
            time.sleep(outage)
            starting = time.monotonic()
            postgres.start()
            back = time.monotonic()
            recovery = recovered_after(stack, load.key, 60)
            time.sleep(after)
            load.stop()
            result.figures["outage_s"] = round(back - stopped, 1)
            judge_outage(result, load, down, starting)
            result.figures["recovered_after_s"] = round(recovery, 1)
            result.check(recovery < 60, "no 200 within 60 s of PostgreSQL back")
            judge_nothing_partial(result, stack, load)
    finally:
        postgres.cleanup()
    result.seconds = time.monotonic() - began
    return result


def recovered_after(stack: Stack, key: str, timeout: float) -> float:
    """Seconds until a quota read answers 200 again (without restarting anything)."""
    began = time.monotonic()
    with stack.client(key, timeout=5) as client:
        while time.monotonic() - began < timeout:
            try:
                if client.get("/v1/tenants/t0/quotas/calls").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    return time.monotonic() - began


def judge_outage(result: Result, load: Load, start: float, back: float) -> None:
    """The requests sent once the server was down and answered before it was started
    again."""
    during = [a for a in load.answers if start <= a.sent and a.answered <= back]
    unavailable = [a for a in during if a.status == 503 and code(a) == "unavailable"]
    slowest = max((a.seconds for a in during), default=0.0)
    result.figures["requests"] = len(load.answers)
    result.figures |= {"in_outage": len(during), "503_unavailable": len(unavailable)}
    result.figures["slowest_503_s"] = round(slowest, 2)
    result.check(len(during) > 0, "no request answered during the outage")
    result.check(len(unavailable) == len(during), f"not 503: {statuses(during)}")
    result.check(slowest <= FAST, f"a request took {slowest:.2f} s during the outage")


def code(answer: Answer) -> str | None:
    body = answer.body
    return body.get("error", {}).get("code") if isinstance(body, dict) else None


def statuses(answers: list[Answer]) -> Counter[int]:
    return Counter(a.status for a in answers if a.status != 503 or code(a) != "unavailable")


def judge_nothing_partial(result: Result, stack: Stack, load: Load) -> None:
    """Totals exact; each request answered with an error sent again counts whole now."""
    result.check(load.used() == load.expected_used(), "quota totals differ from the answers")
    failed = [a for a in load.answers if a.status != 200]
    outcomes = Counter(in_parallel(lambda: stack.client(load.key), 4, failed, sent_again))
    result.figures |= {"errors_sent_again": len(failed)}
    result.figures |= {"partly_recorded": outcomes["recorded before"]}
    result.figures["resend_failed"] = sum(n for o, n in outcomes.items() if o.startswith("failed"))
    result.check(
        not outcomes["recorded before"], f"answered with an error, yet recorded: {outcomes}"
    )
    result.check(outcomes["whole"] == len(failed), f"sent again: {outcomes}")


def sent_again(client: httpx.Client, answer: Answer) -> str:
    """Send the request again (retrying a 429 or 503): `whole` when none of it had been
    recorded, `recorded before`, or `failed <status>`."""
    for _ in range(20):
        status, reply = resend(client, answer)
        if status not in (0, 429, 503):
            break
        time.sleep(0.5)
    if status != 200:
        return f"failed {status}"
    if answer.keys[0].endswith("-cmd"):
        return "recorded before" if reply.get("duplicate") else "whole"
    return "whole" if reply["accepted"] == len(answer.keys) else "recorded before"


def resend(client: httpx.Client, answer: Answer) -> tuple[int, Any]:
    tenant = answer.tenant
    if answer.keys[0].endswith("-cmd"):
        body = {"tenant_id": tenant, "feature_key": "calls", "amount": answer.quantity}
        body |= {"idempotency_key": answer.keys[0], "command_id": answer.keys[0]}
        return post(client, "/v1/commands/consume_quota", body)
    events = [
        {"idempotency_key": k, "tenant_id": tenant, "feature_key": "calls"} for k in answer.keys
    ]
    return post(client, "/v1/usage", {"events": events})
