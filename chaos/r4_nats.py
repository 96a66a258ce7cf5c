"""R4: NATS stopped `outage` seconds under load (a nats-server of our own). Commands keep
committing during the outage; once NATS is back the relay catches up: every committed
event in the stream, in order, no gap; the read models equal a replay."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from chaos.load import Load, refusal
from chaos.result import Result
from chaos.stack import PG_URL, REDIS_URL, PrivateNats, Stack, answers, running_stack, split_workers
from chaos.verify import committed, replay_differences, stream_problems, wait_for_stream

TITLE = "NATS stopped under load"


def run(outage: float = 30.0, before: float = 5.0, after: float = 5.0) -> Result:
    began = time.monotonic()
    result = Result("R4", TITLE)
    nats = PrivateNats()
    nats.start()
    redis = REDIS_URL if answers(REDIS_URL) else None
    try:
        with running_stack(
            PG_URL, nats_url=nats.url, redis_url=redis, workers=split_workers()
        ) as stack:
            load = Load(stack, stack.key("chaos-r4"), threads=3)
            load.prepare()
            load.start()
            time.sleep(before)
            stopped = time.monotonic()
            nats.stop()
            down = time.monotonic()  # the server has exited
            time.sleep(outage)
            starting = time.monotonic()
            nats.start()
            back = time.monotonic()
            time.sleep(after)
            load.stop()
            result.figures["outage_s"] = round(back - stopped, 1)
            judge_outage(result, load, down, starting)
            check_after(result, stack, load, nats, back)
    finally:
        nats.cleanup()
    result.seconds = time.monotonic() - began
    return result


def judge_outage(result: Result, load: Load, stopped: float, back: float) -> None:
    """Every request sent once NATS was down and answered before it was started again
    committed (200)."""
    during = [a for a in load.answers if stopped <= a.sent and a.answered <= back]
    ok = [a for a in during if a.status == 200]
    result.figures |= {"requests": len(load.answers), "non_200": load.refusals()}
    result.figures |= {"committed_in_outage": len(ok), "errors_in_outage": len(during) - len(ok)}
    result.check(len(ok) > 0, "nothing committed while NATS was down")
    failed = Counter(f"{a.status} {refusal(a.body)}".strip() for a in during if a.status != 200)
    result.check(not failed, f"requests failed while NATS was down: {dict(failed)}")


def check_after(result: Result, stack: Stack, load: Load, nats: PrivateNats, back: float) -> None:
    """The workers still up, the stream complete and in order, read models = a replay."""
    exited = stack.check_workers()
    result.figures["workers_exited"] = len(exited)
    result.check(not exited, f"workers exited during the outage: {exited}")
    events = committed(stack.database_url)
    _, messages = asyncio.run(wait_for_stream(nats.url, stack.stream, events, 120))
    # an upper bound: from NATS back (the load ran `after` seconds more) to a complete stream
    result.figures["stream_complete_after_s"] = round(time.monotonic() - back, 1)
    gaps = stream_problems(events, messages)
    replay_s, different, _ = replay_differences(stack.database_url, 120)
    result.figures |= {"events": len(events), "messages": len(messages)} | gaps
    result.figures["replay_equal_after_s"] = round(replay_s, 1)
    result.check(gaps["missing"] == 0 and gaps["out_of_order"] == 0, f"stream gaps: {gaps}")
    result.check(gaps["unknown"] == 0, "messages in the stream that are no committed event")
    result.check(not different, f"read models differ from a replay: {different}")
    result.check(load.used() == load.expected_used(), "quota totals differ from the answers")
