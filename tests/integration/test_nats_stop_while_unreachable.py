"""Workers started while NATS is unreachable still stop promptly when asked (SIGTERM path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from adapters.bootstrap import System
from adapters.nats.workers import build_projector_worker, build_relay
from adapters.settings import Settings
from tests.factories import embedded_system, free_port


@pytest.fixture
def system() -> Iterator[System]:
    built = embedded_system()
    built.settings = Settings(
        database_url="sqlite:///:memory:", nats_url=f"nats://127.0.0.1:{free_port()}"
    )
    yield built
    built.close()


@pytest.mark.parametrize("kind", ["relay", "projector"])
def test_a_worker_waiting_for_nats_stops_when_asked(system: System, kind: str) -> None:
    worker = build_relay(system) if kind == "relay" else build_projector_worker(system, "usage")

    async def scenario() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(1.5)  # it is retrying the first connection now
        assert not task.done()
        asked = time.monotonic()
        stop.set()
        worker.stop()
        await asyncio.wait_for(task, timeout=10)
        return time.monotonic() - asked

    assert asyncio.run(scenario()) < 5
