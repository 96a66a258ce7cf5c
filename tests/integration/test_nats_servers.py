"""TALLY_NATS_URL may name several servers of a cluster, comma-separated: every client of
Tally's (relay, projector workers, command bus, readiness) connects to one that answers."""

from __future__ import annotations

import asyncio

import pytest

from adapters.nats.connection import connect_unless_stopped, servers
from tests.integration.nats_support import NATS_URL, free_port, require_nats

pytestmark = pytest.mark.nats


def test_a_url_setting_names_one_server_or_several() -> None:
    assert servers("nats://a:4222") == ["nats://a:4222"]
    assert servers("nats://a:4222, nats://b:4223,,") == ["nats://a:4222", "nats://b:4223"]


def test_a_client_connects_to_the_server_of_the_list_that_answers() -> None:
    require_nats()
    dead = f"nats://127.0.0.1:{free_port()}"  # nothing listens there

    async def scenario() -> str:
        nc = await connect_unless_stopped(
            f"{dead},{NATS_URL}", asyncio.Event(), connect_timeout=1, reconnect_time_wait=0.1
        )
        try:
            await nc.flush(timeout=2)
            return str(nc.connected_url.netloc) if nc.connected_url else ""
        finally:
            await nc.close()

    assert asyncio.run(scenario()) == NATS_URL.split("//", 1)[1]
