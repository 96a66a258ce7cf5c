"""Operations: /live (the process), /ready and /health (the event store, the read-model store,
and NATS and Redis when configured), /metrics (Prometheus). No API key needed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from adapters.http.common import metrics_of, system_of

router = APIRouter(tags=["operations"])

CHECK_TIMEOUT = 2.0


async def _timed(name: str, check: Callable[[], Any]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = check()
        if asyncio.iscoroutine(result):
            await asyncio.wait_for(result, CHECK_TIMEOUT)
        else:
            await asyncio.wait_for(run_in_threadpool(check), CHECK_TIMEOUT)
        ok, error = True, None
    except Exception as exc:  # any failure makes the dependency not ready
        ok, error = False, f"{type(exc).__name__}: {exc}"[:300]
    report: dict[str, Any] = {
        "name": name,
        "ok": ok,
        "ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if error:
        report["error"] = error
    return report


ESSENTIAL = frozenset({"event_store", "read_models"})


async def _checks(request: Request) -> JSONResponse:
    system = system_of(request)
    settings = system.settings

    def event_store() -> None:
        system.ledger.recorder.max_notification_id()

    def read_models() -> None:
        system.views.query("SELECT 1 AS ok")

    checks = [_timed("event_store", event_store), _timed("read_models", read_models)]
    if settings.nats_url:
        checks.append(_timed("nats", lambda: _nats(str(settings.nats_url))))
    if settings.redis_url:
        checks.append(_timed("redis", lambda: _redis(str(settings.redis_url))))
    reports = await asyncio.gather(*checks)
    # Without the event store or the read models nothing works: 503. NATS and Redis are
    # reported too, but their loss only degrades (commands still commit and the relay
    # catches up; checks fall back to the read model), so the replica stays in rotation.
    ready = all(report["ok"] for report in reports if report["name"] in ESSENTIAL)
    degraded = ready and not all(report["ok"] for report in reports)
    status = "degraded" if degraded else "ok" if ready else "unavailable"
    return JSONResponse({"status": status, "checks": reports}, status_code=200 if ready else 503)


async def _nats(url: str) -> None:
    import nats

    connection = await nats.connect(
        url, connect_timeout=1, allow_reconnect=False, max_reconnect_attempts=0
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


@router.get("/live", summary="The process answers")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Ready: event store, read models, NATS and Redis in use answer")
async def ready(request: Request) -> JSONResponse:
    return await _checks(request)


@router.get("/health", summary="Same checks as /ready, for people")
async def health(request: Request) -> JSONResponse:
    return await _checks(request)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(metrics_of(request).render(), media_type=CONTENT_TYPE_LATEST)
