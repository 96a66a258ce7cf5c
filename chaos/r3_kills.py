"""R3: the relay and the projectors SIGKILLed `kills` times at random under load (each
started again at once, as an orchestrator would). Afterwards every committed event is in
the stream once after dedupe by id, in position order, the read models equal a
from-scratch replay, and the quotas count exactly what was answered 200 (a request
refused on the loaded machine, e.g. 503 when the API's pool wait ran out, is reported
beside them and must have recorded nothing)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

from chaos.load import Load
from chaos.result import Result
from chaos.stack import NATS_URL, PG_URL, REDIS_URL, Stack, answers, running_stack, split_workers
from chaos.verify import committed, replay_differences, stream_problems, wait_for_stream

TITLE = "relay and projectors SIGKILLed at random under load"


def run(kills: int = 20, gap: tuple[float, float] = (1.5, 4.0), seed: int = 3) -> Result:
    began, rng = time.monotonic(), random.Random(seed)
    result = Result("R3", TITLE)
    redis = REDIS_URL if answers(REDIS_URL) else None
    with running_stack(
        PG_URL, nats_url=NATS_URL, redis_url=redis, workers=split_workers()
    ) as stack:
        key = stack.key("chaos-r3")
        load = Load(stack, key, threads=3)
        load.prepare()
        load.start()
        killed = kill_at_random(stack, kills, gap, rng, result)
        load.stop()
        check_after(stack, load, result)
    result.figures = {"kills": sum(killed.values())} | dict(killed) | result.figures
    result.seconds = time.monotonic() - began
    return result


def kill_at_random(
    stack: Stack, kills: int, gap: tuple[float, float], rng: random.Random, result: Result
) -> Counter[str]:
    """SIGKILL a worker every `gap` seconds (random) and start it again at once; the
    workers are taken in rounds, each round in a random order, so each gets its share."""
    killed: Counter[str] = Counter()
    order: list[str] = []
    for _ in range(kills):
        time.sleep(rng.uniform(*gap))
        exited = stack.check_workers()
        result.check(not exited, f"workers exited by themselves: {exited}")
        if not order:
            order = rng.sample(sorted(stack.workers), len(stack.workers))
        name = order.pop()
        stack.kill(name)
        stack.restart(name)
        killed[name] += 1
    return killed


def check_after(stack: Stack, load: Load, result: Result) -> None:
    """Stream, read models and quotas once the load stopped."""
    events = committed(stack.database_url)
    assert stack.nats_url is not None
    catch_up, messages = asyncio.run(wait_for_stream(stack.nats_url, stack.stream, events, 120))
    gaps = stream_problems(events, messages)
    replay_s, different, rows = replay_differences(stack.database_url, 120)
    result.figures |= {"requests": len(load.answers), "non_200": load.refusals()}
    result.figures |= {"events": len(events), "messages": len(messages)} | gaps
    result.figures |= {"catch_up_s": round(catch_up, 1), "replay_equal_after_s": round(replay_s, 1)}
    result.figures["rows_compared"] = rows
    result.check(gaps["missing"] == 0, f"{gaps['missing']} events missing from the stream")
    result.check(gaps["unknown"] == 0, "messages in the stream that are no committed event")
    result.check(gaps["out_of_order"] == 0, "stream not in position order")
    result.check(not different, f"read models differ from a replay: {different}")
    result.check(load.used() == load.expected_used(), "quota totals differ from the answers")
