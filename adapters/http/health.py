"""Operations: /live (the process), /ready and /health (the event store, the read-model store,
and NATS and Redis when configured), /metrics (Prometheus). No API key needed.

`/live` does no I/O, so it answers at once whatever the dependencies do. `/ready` runs each
check off the event loop (a thread of its own pool) with its own timeout, and keeps the
result for READY_CACHE_SECONDS: probes arriving meanwhile, or while a round is running,
share it instead of piling more checks onto a dependency that is already slow.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from adapters.http.common import metrics_of, system_of

router = APIRouter(tags=["operations"])

CHECK_TIMEOUT = 1.0  # seconds, each check
READY_CACHE_SECONDS = 1.0
ESSENTIAL = frozenset({"event_store", "read_models"})

# Checks get threads of their own: a full request thread pool (every thread waiting on a
# store that is down) must not make /ready wait its turn.
_CHECK_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tally-ready")

Report = tuple[dict[str, Any], int]  # body and status


async def _timed(name: str, check: Callable[[], Any]) -> dict[str, Any]:
    """Run one check within CHECK_TIMEOUT (a coroutine on the loop, anything else in a
    thread) and report how it went."""
    started = time.perf_counter()
    error = None
    try:
        if inspect.iscoroutinefunction(check):
            await asyncio.wait_for(check(), CHECK_TIMEOUT)
        else:
            running = asyncio.get_running_loop().run_in_executor(_CHECK_THREADS, check)
            await asyncio.wait_for(running, CHECK_TIMEOUT)
    except TimeoutError:
        error = f"TimeoutError: no answer within {CHECK_TIMEOUT:g}s"
    except Exception as exc:  # any failure makes the dependency not ready
        error = f"{type(exc).__name__}: {exc}"[:300]
    report: dict[str, Any] = {
        "name": name,
        "ok": error is None,
        "ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if error:
        report["error"] = error
    return report


def _checks(request: Request) -> list[tuple[str, Callable[[], Any]]]:
    system = system_of(request)
    settings = system.settings
    checks: list[tuple[str, Callable[[], Any]]] = [
        ("event_store", system.ledger.recorder.max_notification_id),
        ("read_models", functools.partial(system.views.query, "SELECT 1 AS ok")),
    ]
    if settings.nats_url:
        checks.append(("nats", functools.partial(_nats, str(settings.nats_url))))
    if settings.redis_url:
        checks.append(("redis", functools.partial(_redis, str(settings.redis_url))))
    return checks


async def _run_checks(checks: list[tuple[str, Callable[[], Any]]]) -> Report:
    reports = await asyncio.gather(*(_timed(name, check) for name, check in checks))
    # Without the event store or the read models nothing works: 503. NATS and Redis are
    # reported too, but their loss only degrades (commands still commit and the relay
    # catches up; checks fall back to the read model), so the replica stays in rotation.
    ready = all(report["ok"] for report in reports if report["name"] in ESSENTIAL)
    degraded = ready and not all(report["ok"] for report in reports)
    status = "degraded" if degraded else "ok" if ready else "unavailable"
    return {"status": status, "checks": reports}, 200 if ready else 503


class Readiness:
    """One app's last readiness report, and the round of checks running now (if any)."""

    def __init__(self) -> None:
        self._last: Report | None = None
        self._at = 0.0
        self._running: asyncio.Future[Report] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def report(self, checks: Callable[[], list[tuple[str, Callable[[], Any]]]]) -> Report:
        """The cached report if fresh, else the running round's (started if none runs)."""
        if self._last is not None and time.monotonic() - self._at < READY_CACHE_SECONDS:
            return self._last
        loop = asyncio.get_running_loop()
        if self._running is None or self._running.done() or self._loop is not loop:
            self._running, self._loop = asyncio.ensure_future(self._round(checks())), loop
        return await asyncio.shield(self._running)

    async def _round(self, checks: list[tuple[str, Callable[[], Any]]]) -> Report:
        report = await _run_checks(checks)
        self._last, self._at = report, time.monotonic()
        return report


def readiness_of(app: FastAPI) -> Readiness:
    readiness = getattr(app.state, "readiness", None)
    if readiness is None:
        readiness = app.state.readiness = Readiness()
    return readiness


async def _ready_response(request: Request) -> JSONResponse:
    body, status = await readiness_of(request.app).report(lambda: _checks(request))
    return JSONResponse(body, status_code=status)


async def _nats(url: str) -> None:
    import nats

    from adapters.nats.connection import servers

    connection = await nats.connect(
        servers(url), connect_timeout=1, allow_reconnect=False, max_reconnect_attempts=0
    )
    try:
        await connection.flush(timeout=1)
    finally:
        await connection.close()


def _redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    finally:
        client.close()


@router.get("/live", summary="The process answers (no I/O: never waits on a dependency)")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Ready: event store, read models, NATS and Redis in use answer")
async def ready(request: Request) -> JSONResponse:
    return await _ready_response(request)


@router.get("/health", summary="Same checks as /ready, for people")
async def health(request: Request) -> JSONResponse:
    return await _ready_response(request)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(metrics_of(request).render(), media_type=CONTENT_TYPE_LATEST)
