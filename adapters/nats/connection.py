"""Connecting to NATS without outliving a stop request.

nats-py's connect retries the first connection as long as reconnects are allowed (forever
with max_reconnect_attempts=-1), so a worker started while NATS is down would block there and
ignore SIGTERM. Racing the connect against the stop event keeps shutdown prompt, and the
connect is cancelled until it ends (`_cancelled`).

`TALLY_NATS_URL` may list several servers of one cluster, comma-separated: the client starts
on any that answers and moves to the others when its node goes (`servers`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats
from nats.aio.client import Client as NatsClient


def servers(url: str) -> list[str]:
    """The servers a NATS URL setting names (one, or several comma-separated)."""
    found = [part.strip() for part in url.split(",") if part.strip()]
    return found or [url]


class StoppedBeforeConnecting(Exception):
    """The stop event was set while NATS was still unreachable."""


async def connect_unless_stopped(url: str, stop: asyncio.Event, **options: Any) -> NatsClient:
    connecting = asyncio.ensure_future(nats.connect(servers(url), **options))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if connecting.done():
        return connecting.result()
    await _cancelled(connecting)
    raise StoppedBeforeConnecting(url)


async def _cancelled(connecting: asyncio.Future[NatsClient], seconds: float = 5.0) -> None:
    """Cancel the connect, again and again until it ends: nats-py's retry loop sits in
    `asyncio.wait_for`, which on Python 3.11 can swallow a cancel that lands as an attempt
    ends, and one swallowed cancel left the task retrying forever (asyncio.run then waited
    for it at exit)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not connecting.done() and asyncio.get_running_loop().time() < deadline:
        connecting.cancel()
        await asyncio.wait({connecting}, timeout=0.1)
    if connecting.done() and not connecting.cancelled() and connecting.exception() is None:
        await connecting.result().close()  # it connected as it was stopped
