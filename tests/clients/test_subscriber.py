"""The subscriber kit against a real `tally serve` publishing to JetStream: typed events,
effects exactly once in the subscriber's own SQLite or PostgreSQL store (in the claim's
transaction), retries then dead letters, replay, the lag gauge, one runner per name."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest
from psycopg import sql
from tally_client import (
    Event,
    PostgresStore,
    SQLiteStore,
    Subscription,
    Tally,
    parse_event,
    subscribe,
    upcaster,
)

from tests.clients.conftest import stream_of
from tests.e2e.conftest import NATS_URL, PG_URL, Server

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

APP = "subs"  # this module's app on the session's server

PLAN: dict[str, Any] = {
    "plan_key": "sub",
    "name": "Sub",
    "base_price": {"amount": 500, "currency": "USD"},
    "features": [{"key": "calls", "kind": "metered", "limit": 10}],
}
FAST = {"backoff": 0.02, "max_backoff": 0.05, "idle_fetch_seconds": 0.2}


@pytest.fixture(scope="module")
def plan(admin: Tally) -> None:
    admin.define_plan(PLAN)


def start(admin: Tally, *tenants: str) -> None:
    for tenant in tenants:
        admin.start_subscription(tenant_id=tenant, plan_key="sub")


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


def sqlite_effects(path: Path) -> Callable[[], list[tuple[str, str]]]:
    def rows() -> list[tuple[str, str]]:
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS effects (event_id TEXT, tenant TEXT)")
            return conn.execute("SELECT event_id, tenant FROM effects ORDER BY rowid").fetchall()

    return rows


def record_effect(event: Event, tx: sqlite3.Connection) -> None:
    tx.execute("CREATE TABLE IF NOT EXISTS effects (event_id TEXT, tenant TEXT)")
    tx.execute("INSERT INTO effects VALUES (?, ?)", (str(event.id), event.tenant_id))


def options(live: Server, **extra: Any) -> dict[str, Any]:
    return {**stream_of(live), **FAST, **extra}


def test_each_event_reaches_the_handler_once(
    live: Server, admin: Tally, plan: None, tmp_path: Path
) -> None:
    tenants = [f"s1-{n}" for n in range(3)]
    start(admin, *tenants)
    effects = sqlite_effects(tmp_path / "sub.db")
    events: list[Event] = []

    def handler(event: Event, tx: sqlite3.Connection) -> None:
        events.append(event)
        if event.tenant_id in tenants:
            record_effect(event, tx)

    async def scenario() -> Subscription:
        sub = await subscribe(
            NATS_URL, live.app_id(APP), handler, name=f"once-{uuid.uuid4().hex[:8]}",
            types=["SubscriptionStarted"], store=SQLiteStore(tmp_path / "sub.db"),
            **options(live),
        )  # fmt: skip
        await until(lambda: len(effects()) == 3)
        assert await sub.replay_from(1) >= 1  # everything again: all duplicates
        await until(lambda: sub.stats.duplicates >= 3)
        await sub.stop()
        return sub

    sub = asyncio.run(scenario())
    assert sorted(tenant for _, tenant in effects()) == tenants
    started = [e for e in events if e.tenant_id in tenants]
    assert {e.type for e in events} == {"SubscriptionStarted"}
    assert all(e.schema_version == 1 and e.data["status"] for e in started)
    assert all(e.app_id == live.app_id(APP) and e.position > 0 for e in started)
    assert sub.stats.handled >= 3 and sub.stats.last_position >= max(e.position for e in started)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    schema = f"sub_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE TABLE {}.effects (event_id UUID, tenant TEXT)").format(
            sql.Identifier(schema)))  # fmt: skip
    try:
        yield schema
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def pg_rows(schema: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_URL) as conn:
        return conn.execute(f"SELECT event_id, tenant FROM {schema}.effects").fetchall()


def test_a_failed_attempt_leaves_no_effect_and_no_claim(
    live: Server, admin: Tally, plan: None, pg_schema: str
) -> None:
    start(admin, "s2-a", "s2-b")
    failed: set[str] = set()

    def handler(event: Event, tx: psycopg.Connection) -> None:
        if event.tenant_id not in {"s2-a", "s2-b"}:
            return
        tx.execute(f"INSERT INTO {pg_schema}.effects VALUES (%s, %s)", (event.id, event.tenant_id))
        if event.tenant_id not in failed:  # the first attempt fails after writing
            failed.add(event.tenant_id)
            raise RuntimeError("the mail server hung up")

    async def scenario() -> Subscription:
        store = PostgresStore(PG_URL, table=f"{pg_schema}.processed")
        sub = await subscribe(
            NATS_URL, live.app_id(APP), handler, name=f"pg-{uuid.uuid4().hex[:8]}",
            types=["SubscriptionStarted"], store=store, **options(live),
        )  # fmt: skip
        await until(lambda: len(pg_rows(pg_schema)) == 2)
        await asyncio.sleep(0.3)  # nothing more comes
        await sub.stop()
        return sub

    sub = asyncio.run(scenario())
    assert sorted(tenant for _, tenant in pg_rows(pg_schema)) == ["s2-a", "s2-b"]
    assert sub.stats.failures == 2 and sub.stats.dead_lettered == 0
    with psycopg.connect(PG_URL) as conn:
        claimed = conn.execute(f"SELECT count(*) FROM {pg_schema}.processed").fetchone()
    assert claimed is not None and claimed[0] >= 2


def test_an_event_that_keeps_failing_is_dead_lettered(
    live: Server, admin: Tally, plan: None, tmp_path: Path
) -> None:
    name = f"dlq-{uuid.uuid4().hex[:8]}"
    subject = f"tally.dead.{live.app_id(APP)}.{name}"
    handled: list[str] = []

    def handler(event: Event, tx: sqlite3.Connection) -> None:
        if event.tenant_id == "s3-poison":
            raise ValueError("cannot notify this one")
        if event.tenant_id and event.tenant_id.startswith("s3-"):
            handled.append(event.tenant_id)

    async def scenario() -> tuple[list[Any], Subscription]:
        nc = await nats.connect(NATS_URL)
        letters: list[Any] = []

        async def keep(msg: Any) -> None:
            letters.append(msg)

        await nc.subscribe(subject, cb=keep)
        start(admin, "s3-poison", "s3-after")
        sub = await subscribe(
            NATS_URL, live.app_id(APP), handler, name=name, types=["SubscriptionStarted"],
            store=SQLiteStore(tmp_path / "dlq.db"), max_attempts=3, **options(live),
        )  # fmt: skip
        await until(lambda: bool(letters) and "s3-after" in handled)
        await sub.stop()
        await nc.close()
        return letters, sub

    letters, sub = asyncio.run(scenario())
    assert len(letters) == 1 and sub.stats.dead_lettered == 1 and sub.stats.failures == 3
    letter = letters[0]
    assert json.loads(letter.data)["tenant_id"] == "s3-poison"
    assert "cannot notify" in letter.headers["Tally-Error"]
    assert letter.headers["Tally-Attempts"] == "3" and letter.headers["Tally-Subscriber"] == name
    assert handled == ["s3-after"]  # the next event went on after it


class Gauge:
    def __init__(self) -> None:
        self.values: list[float] = []

    def set(self, value: float) -> None:
        self.values.append(value)


def test_the_lag_gauge_falls_to_zero(
    live: Server, admin: Tally, plan: None, tmp_path: Path
) -> None:
    start(admin, *(f"s4-{n}" for n in range(6)))
    gauge = Gauge()

    def slow(event: Event, tx: Any) -> None:
        import time

        time.sleep(0.05)

    async def scenario() -> Subscription:
        sub = await subscribe(
            NATS_URL, live.app_id(APP), slow, name=f"lag-{uuid.uuid4().hex[:8]}",
            types=["SubscriptionStarted"], store=SQLiteStore(tmp_path / "lag.db"),
            lag_gauge=gauge, batch=1, lag_interval=0.0, **options(live),
        )  # fmt: skip
        await until(lambda: sub.lag == 0 and sub.stats.handled >= 6)
        await sub.stop()
        return sub

    sub = asyncio.run(scenario())
    assert max(gauge.values) >= 3 and gauge.values[-1] == 0 and sub.lag == 0


def test_one_runner_per_name_the_other_takes_over(
    live: Server, admin: Tally, plan: None, tmp_path: Path
) -> None:
    name = f"solo-{uuid.uuid4().hex[:8]}"
    effects = sqlite_effects(tmp_path / "solo.db")
    mine = {"s5-a", "s5-b"}

    def handler(event: Event, tx: sqlite3.Connection) -> None:
        if event.tenant_id in mine:
            record_effect(event, tx)

    async def scenario() -> None:
        def one() -> Any:
            return subscribe(
                NATS_URL, live.app_id(APP), handler, name=name,
                types=["SubscriptionStarted"], store=SQLiteStore(tmp_path / "solo.db"),
                **options(live, lock_poll_seconds=0.1),
            )  # fmt: skip

        first = await one()
        await first.active(10)
        second = await one()
        start(admin, "s5-a")
        await until(lambda: len(effects()) == 1)
        assert not second._active.is_set()  # a standby while the first holds the lock
        await first.stop()
        await second.active(10)
        start(admin, "s5-b")
        await until(lambda: len(effects()) == 2)
        await second.stop()

    asyncio.run(scenario())
    assert sorted(tenant for _, tenant in effects()) == ["s5-a", "s5-b"]


def test_old_schema_versions_are_upcast() -> None:
    kind = f"Renamed{uuid.uuid4().hex[:6]}"

    @upcaster(kind, 1)
    def split_name(data: dict[str, Any]) -> dict[str, Any]:
        first, _, last = data.pop("name").partition(" ")
        return {**data, "first_name": first, "last_name": last}

    body = {
        "id": str(uuid.uuid4()), "type": kind, "position": 9, "version": 1,
        "aggregate_id": str(uuid.uuid4()), "aggregate_type": "thing", "app_id": "acme",
        "tenant_id": "t-1", "occurred_at": "2026-01-01T00:00:00Z", "recorded_at": None,
        "schema_version": 1, "data": {"name": "Ada Lovelace"},
    }  # fmt: skip
    event = parse_event(json.dumps(body))
    assert event.schema_version == 2
    assert event.data == {"first_name": "Ada", "last_name": "Lovelace"}
    newer = parse_event(json.dumps({**body, "schema_version": 2, "data": {"first_name": "A"}}))
    assert newer.data == {"first_name": "A"}  # already the newest: unchanged


def test_an_async_handler_without_a_store_gets_each_event(
    live: Server, admin: Tally, plan: None
) -> None:
    start(admin, "s6-a")
    got: list[Event] = []

    async def handler(event: Event, tx: Any) -> None:
        assert tx is None  # MemoryStore: no transaction, at-least-once across restarts
        got.append(event)

    async def scenario() -> None:
        sub = await subscribe(
            NATS_URL, live.app_id(APP), handler, name=f"async-{uuid.uuid4().hex[:8]}",
            types=["SubscriptionStarted"], **options(live),
        )  # fmt: skip
        await until(lambda: any(e.tenant_id == "s6-a" for e in got))
        await sub.stop()

    asyncio.run(scenario())
    assert len([e for e in got if e.tenant_id == "s6-a"]) == 1
