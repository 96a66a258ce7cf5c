"""Readiness checks off the event loop: each check has its own timeout, probes arriving while
a round runs share it, and its report is kept for READY_CACHE_SECONDS."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from adapters.http import health
from adapters.http.health import Readiness


class Counted:
    """A blocking check that takes `seconds` and counts its runs (and their threads)."""

    def __init__(self, seconds: float = 0.2) -> None:
        self.seconds, self.runs, self.threads = seconds, 0, set[str]()

    def __call__(self) -> None:
        self.runs += 1
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)

    def checks(self) -> list[tuple[str, Callable[[], Any]]]:
        return [("event_store", self), ("read_models", lambda: None)]


def test_probes_share_one_round_off_the_loop_then_its_cached_report() -> None:
    check = Counted()
    readiness = Readiness()

    async def probes() -> list[Any]:
        reports = await asyncio.gather(*(readiness.report(check.checks) for _ in range(10)))
        reports.append(await readiness.report(check.checks))  # cached: no second round
        return reports

    reports = asyncio.run(probes())
    assert check.runs == 1
    assert check.threads and threading.main_thread().name not in check.threads
    assert all(report == reports[0] for report in reports)
    body, status = reports[0]
    assert status == 200 and body["status"] == "ok"


def test_a_stale_report_is_checked_again(monkeypatch: Any) -> None:
    monkeypatch.setattr(health, "READY_CACHE_SECONDS", 0.05)
    check = Counted(0.0)
    readiness = Readiness()
    asyncio.run(readiness.report(check.checks))
    time.sleep(0.1)
    asyncio.run(readiness.report(check.checks))
    assert check.runs == 2


def test_a_hanging_check_is_reported_within_its_timeout(monkeypatch: Any) -> None:
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.2)
    check = Counted(1.0)
    started = time.monotonic()
    body, status = asyncio.run(Readiness().report(check.checks))
    assert time.monotonic() - started < 0.6
    assert status == 503 and body["status"] == "unavailable"
    [store] = [c for c in body["checks"] if c["name"] == "event_store"]
    assert store["ok"] is False and "no answer within 0.2s" in store["error"]
