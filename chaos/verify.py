"""The checks R3 and R4 make once the load stopped: every committed event is in the stream
(after dedupe by id), in position order, and every read model equals a from-scratch
replay of the event store."""

from __future__ import annotations

import itertools
import time
import uuid
from collections import Counter
from typing import Any

import psycopg
from psycopg import sql


def committed(database_url: str) -> list[tuple[str, int]]:
    """(event id, position) of every event in the store, in position order."""
    from adapters.eventstore.envelopes import iter_envelopes

    ledger, views = stores(database_url)
    try:
        return [(str(e.id), e.position) for b in iter_envelopes(ledger.recorder) for e in b]
    finally:
        views.close()
        ledger.close()


def stores(database_url: str) -> tuple[Any, Any]:
    from adapters.bootstrap import open_stores
    from adapters.settings import Settings

    settings = Settings(database_url=database_url, db_connect_timeout_seconds=10)
    ledger, views, _ = open_stores(settings)
    return ledger, views


async def stream_ids(nats_url: str, stream: str) -> list[tuple[str, int]]:
    """(Nats-Msg-Id, Tally-Position) of every message in the stream, in stream order."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=2)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            return []
        found: list[tuple[str, int]] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            headers = (await js.get_msg(stream, seq)).headers or {}
            found.append((headers["Nats-Msg-Id"], int(headers["Tally-Position"])))
        return found
    finally:
        await nc.close()


def stream_problems(
    events: list[tuple[str, int]], messages: list[tuple[str, int]]
) -> dict[str, int]:
    """Missing, doubled (before dedupe), unknown and out-of-order messages."""
    counts = Counter(message_id for message_id, _ in messages)
    ids = {event_id for event_id, _ in events}
    positions = [position for _, position in messages]
    return {
        "missing": len(ids - counts.keys()),
        "doubled": sum(n - 1 for n in counts.values() if n > 1),
        "unknown": len(counts.keys() - ids),
        "out_of_order": sum(1 for a, b in itertools.pairwise(positions) if b < a),
    }


async def wait_for_stream(
    nats_url: str, stream: str, events: list[tuple[str, int]], timeout: float
) -> tuple[float, list[tuple[str, int]]]:
    """Seconds until the stream holds every committed event (or timeout), and its messages."""
    import asyncio

    import nats.errors

    began, wanted = time.monotonic(), {event_id for event_id, _ in events}
    messages: list[tuple[str, int]] = []
    while True:
        try:  # a cluster that lost a node answers once it has elected a new stream leader
            messages = await stream_ids(nats_url, stream)
        except (nats.errors.Error, TimeoutError):
            messages = []
        if wanted <= {m for m, _ in messages} or time.monotonic() - began > timeout:
            return time.monotonic() - began, messages
        await asyncio.sleep(1.0)


def snapshot(views: Any) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of every projector, ordered by primary key."""
    from projections.registry import build_projectors

    tables: dict[str, list[dict[str, Any]]] = {}
    for projector in build_projectors():
        for logical, (_columns, key) in projector.TABLES.items():
            rows = views.query(f"SELECT * FROM {{{logical}}} ORDER BY {', '.join(key)}")
            tables[f"{projector.NAME}:{logical}"] = rows
    return tables


def replayed(database_url: str, ledger: Any) -> dict[str, list[dict[str, Any]]]:
    """The read models rebuilt from position 0 into a scratch schema (then dropped)."""
    from adapters.eventstore.envelopes import iter_envelopes
    from adapters.readmodels.sql_store import ViewStore
    from projections.registry import build_projectors

    schema = f"chaos_replay_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    views = ViewStore("postgres", database_url, prefix=f"{schema}.rm_")
    try:
        projectors = build_projectors()
        for projector in projectors:
            views.ensure(projector)
        for envelopes in iter_envelopes(ledger.recorder, 0, 500):
            for projector in projectors:
                views.apply(projector, envelopes)
        return snapshot(views)
    finally:
        views.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def replay_differences(database_url: str, timeout: float) -> tuple[float, list[str], int]:
    """Seconds until the live read models equal a from-scratch replay (polled until
    timeout), the tables still different, and the rows compared."""
    ledger, views = stores(database_url)
    began = time.monotonic()
    try:
        expected = replayed(database_url, ledger)
        while True:
            live = snapshot(views)
            different = [name for name in expected if live.get(name) != expected[name]]
            if not different or time.monotonic() - began > timeout:
                rows = sum(len(rows) for rows in expected.values())
                return time.monotonic() - began, different, rows
            time.sleep(1.0)
    finally:
        views.close()
        ledger.close()
