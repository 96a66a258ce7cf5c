"""Shared pieces of the NATS JetStream tests: a unique stream per test, a system on its own
PostgreSQL schema, a small counting projector, private nats-servers for outage tests, and a
child process that runs a projector worker (so a test can SIGKILL it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from psycopg import sql

import domain.aggregates  # noqa: F401  (registers every event type)
from adapters.bootstrap import System, bootstrap
from adapters.eventstore.envelopes import iter_envelopes
from adapters.nats.stream import StreamSettings
from adapters.readmodels.sql_store import ViewStore
from adapters.settings import Settings
from commands.plans.define_plan import DefinePlan
from commands.quotas.configure_quota import ConfigureQuota
from commands.quotas.consume_quota import ConsumeQuota
from commands.subscriptions.start_subscription import StartSubscription
from domain.base import EVENT_TYPES
from domain.clock import SettableClock
from projections.base import Projector, Row, ViewTx
from projections.envelope import EventEnvelope
from tests.conftest import T0
from tests.factories import free_port

NATS_URL = os.environ.get("TALLY_TEST_NATS_URL", "nats://127.0.0.1:4222")
ROOT = Path(__file__).resolve().parents[2]


# --- a projector for the tests ------------------------------------------------------------


class CountingProjector(Projector):
    """Counts events per type and per aggregate; refuses an aggregate's events out of order,
    so applying anything out of order (or twice) fails loudly instead of passing quietly."""

    NAME = "test_counts"
    TABLES = {
        "event_counts": (["event_type TEXT NOT NULL", "n BIGINT NOT NULL"], ["event_type"]),
        "aggregate_versions": (
            ["aggregate_id TEXT NOT NULL", "last_version BIGINT NOT NULL", "n BIGINT NOT NULL"],
            ["aggregate_id"],
        ),
    }
    HANDLES = frozenset(EVENT_TYPES)

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        tx.increment("event_counts", {"event_type": event.type}, {"n": 1})
        key = {"aggregate_id": str(event.aggregate_id)}
        row = tx.get("aggregate_versions", key)
        last = int(row["last_version"]) if row else 0
        if event.version != last + 1:
            raise AssertionError(
                f"aggregate {event.aggregate_id}: version {event.version} after {last}"
            )
        n = int(row["n"]) if row else 0
        tx.upsert("aggregate_versions", key, {"last_version": event.version, "n": n + 1})


class FlakyProjector(CountingProjector):
    """Raises on the `fail_at`-th event it is given, `times` times."""

    def __init__(self, fail_at: int, times: int = 1) -> None:
        self.fail_at, self.times, self.seen, self.raised = fail_at, times, 0, 0

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        self.seen += 1
        if self.raised < self.times and self.seen >= self.fail_at:
            self.raised += 1
            raise RuntimeError(f"injected failure at event #{self.seen} ({event.type})")
        super().apply(event, tx)


class HangingProjector(CountingProjector):
    """Writes `marker` and hangs (inside the batch's transaction) at the `hang_at`-th event,
    so the test can SIGKILL the worker mid-batch."""

    def __init__(self, hang_at: int, marker: str) -> None:
        self.hang_at, self.marker, self.seen = hang_at, marker, 0

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        self.seen += 1
        super().apply(event, tx)
        if self.seen == self.hang_at:
            Path(self.marker).write_text(str(event.position))
            time.sleep(3600)


def read_model(views: ViewStore) -> dict[str, list[Row]]:
    return {
        "event_counts": views.query("SELECT event_type, n FROM {event_counts} ORDER BY 1"),
        "aggregate_versions": views.query(
            "SELECT aggregate_id, last_version, n FROM {aggregate_versions} ORDER BY 1"
        ),
    }


def rebuild_from_scratch(system: System, pg_url: str, schema: str) -> dict[str, list[Row]]:
    """The counting read model built straight from the event store into an empty schema."""
    views = ViewStore("postgres", pg_url, prefix=f"{schema}.rm_")
    try:
        projector = CountingProjector()
        views.ensure(projector)
        for batch in iter_envelopes(system.ledger.recorder):
            views.apply(projector, batch)
        return read_model(views)
    finally:
        views.close()


# --- systems, streams, events ---------------------------------------------------------------


def unique_stream() -> StreamSettings:
    tag = uuid.uuid4().hex[:12]
    return StreamSettings(name=f"TEST_{tag.upper()}", prefix=f"t{tag}.events", max_age_days=1)


def nats_settings(pg_url: str, stream: StreamSettings, nats_url: str = NATS_URL) -> Settings:
    return Settings(
        database_url=pg_url,
        nats_url=nats_url,
        nats_stream=stream.name,
        nats_subject_prefix=stream.prefix,
        relay_idle_seconds=0.01,
    )


def open_system(pg_url: str, schema: str, stream: StreamSettings, **kw: Any) -> System:
    return bootstrap(
        nats_settings(pg_url, stream, **kw),
        SettableClock(T0),
        schema=schema,
        deliver_in_process=False,
    )


def make_events(system: System, *, tenants: int = 3, uses: int = 4, tag: str = "") -> None:
    """Commands that record events on several aggregates, some with long histories."""
    tag = tag or uuid.uuid4().hex[:6]
    plan_key = f"pro_{tag}"
    system.handle(
        DefinePlan(
            app_id="acme",
            plan_key=plan_key,
            name="Pro",
            base_price={"amount": 1000, "currency": "USD"},
            features=[{"key": "api_calls", "kind": "metered", "limit": None}],
        )
    )
    for t in range(tenants):
        tenant = f"tenant-{tag}-{t}"
        system.handle(StartSubscription(app_id="acme", tenant_id=tenant, plan_key=plan_key))
        for u in range(uses):
            system.handle(
                ConsumeQuota(
                    app_id="acme",
                    tenant_id=tenant,
                    feature_key="api_calls",
                    idempotency_key=f"{tenant}-{u}",
                )
            )


def make_quota_events(system: System, count: int, tenant: str = "solo") -> None:
    """`count`+1 events on one quota aggregate (cheap, for volume)."""
    system.handle(ConfigureQuota(app_id="acme", tenant_id=tenant, feature_key="api_calls"))
    for u in range(count):
        system.handle(
            ConsumeQuota(
                app_id="acme", tenant_id=tenant, feature_key="api_calls", idempotency_key=f"u{u}"
            )
        )


def relay_position(system: System) -> int:
    """The relay's tracked position (0 before any relay created the tracking table)."""
    try:
        return system.views.position("relay")
    except psycopg.errors.UndefinedTable:
        return 0


def committed(system: System) -> list[EventEnvelope]:
    return [e for batch in iter_envelopes(system.ledger.recorder) for e in batch]


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


# --- the stream -------------------------------------------------------------------------------


async def stream_messages(stream: StreamSettings, url: str = NATS_URL) -> list[RawStreamMsg]:
    """Every message in the stream, in stream order."""
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream.name)
        except NotFoundError:
            return []
        return (
            [
                await js.get_msg(stream.name, seq)
                for seq in range(info.state.first_seq, info.state.last_seq + 1)
            ]
            if info.state.messages
            else []
        )
    finally:
        await nc.close()


async def delete_stream(name: str, url: str = NATS_URL) -> None:
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(name)
    finally:
        await nc.close()


def require_nats(url: str = NATS_URL) -> None:
    async def ping() -> None:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=1)
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()

    try:
        asyncio.run(ping())
    except Exception as error:
        pytest.fail(
            f"NATS JetStream is not reachable at {url} ({error!r}); start it with "
            "`scripts/services.sh up` or set TALLY_TEST_NATS_URL",
            pytrace=False,
        )


def assert_exactly_once(messages: Sequence[RawStreamMsg], events: Sequence[EventEnvelope]) -> None:
    ids = [(m.headers or {}).get("Nats-Msg-Id") for m in messages]
    assert len(ids) == len(set(ids)), "a Nats-Msg-Id appears twice in the stream"
    assert sorted(ids, key=str) == sorted((str(e.id) for e in events), key=str)
    positions = [int((m.headers or {})["Tally-Position"]) for m in messages]
    assert positions == sorted(positions), "the stream is not in position order"


# --- a private nats-server ----------------------------------------------------------------------


class PrivateNats:
    """A nats-server of the test's own (JetStream on, its own store dir and port)."""

    def __init__(self, store_dir: Path) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            pytest.fail("nats-server is not installed", pytrace=False)
        self.binary, self.store_dir, self.port = binary, store_dir, free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.store_dir / "nats.log", "ab")  # noqa: SIM115  (the server owns it)
        self.process = subprocess.Popen(
            [
                self.binary,
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.store_dir / "js"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"private nats-server did not start (see {self.store_dir}/nats.log)")

    def kill(self) -> None:
        """SIGKILL: no shutdown at all."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


# --- workers in a child process (to be SIGKILLed) ---------------------------------------------


def _spawn(config: dict[str, Any]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.nats_support", json.dumps(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def spawn_hanging_worker(
    pg_url: str, schema: str, stream: StreamSettings, hang_at: int, marker: Path, batch: int
) -> subprocess.Popen[bytes]:
    """A projector worker (CountingProjector) that hangs mid-batch at the hang_at-th event."""
    return _spawn(
        {
            "kind": "projector",
            "pg_url": pg_url,
            "schema": schema,
            "stream": [stream.name, stream.prefix],
            "hang_at": hang_at,
            "marker": str(marker),
            "batch": batch,
        }
    )


def spawn_relay(pg_url: str, schema: str, stream: StreamSettings) -> subprocess.Popen[bytes]:
    """A relay for the schema's event store (runs until killed)."""
    return _spawn(
        {
            "kind": "relay",
            "pg_url": pg_url,
            "schema": schema,
            "stream": [stream.name, stream.prefix],
        }
    )


def _child(config: dict[str, Any]) -> None:
    from adapters.nats.workers import build_projector_worker, build_relay

    name, prefix = config["stream"]
    stream = StreamSettings(name=name, prefix=prefix, max_age_days=1)
    system = open_system(config["pg_url"], config["schema"], stream)
    if config["kind"] == "relay":
        asyncio.run(build_relay(system, batch=10, lock_poll_seconds=0.1).run())
        return
    projector = HangingProjector(config["hang_at"], config["marker"])
    worker = build_projector_worker(
        system, projector.NAME, projector=projector, batch=config["batch"]
    )
    asyncio.run(worker.run())


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))


# --- fixtures (import them into a test module) -------------------------------------------------


@pytest.fixture(name="stream")
def stream_fixture() -> Iterator[StreamSettings]:
    """A stream and subject prefix of this test's own, deleted afterwards."""
    require_nats()
    settings = unique_stream()
    yield settings
    asyncio.run(delete_stream(settings.name))


@pytest.fixture(name="nats_system")
def nats_system_fixture(pg_url: str, pg_schema: str, stream: StreamSettings) -> Iterator[System]:
    """The system on its own PostgreSQL schema, publishing to this test's stream; no
    in-process delivery (the workers under test do the delivering)."""
    system = open_system(pg_url, pg_schema, stream)
    try:
        yield system
    finally:
        system.close()


@pytest.fixture(name="other_schema")
def other_schema_fixture(pg_url: str) -> Iterator[str]:
    """A second empty schema (for a from-scratch rebuild)."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
