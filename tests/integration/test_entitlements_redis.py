"""Entitlements with the Redis hot copy, on real PostgreSQL and a private redis-server.

Each test starts its own redis-server on a free port (no persistence) and stops only that
process; the machine's Redis is never touched. An outage is simulated by stopping the server
(its data is lost) or by suspending it with SIGSTOP (its data, stale keys included, survives
the outage: the hardest case for "no stale answer after it returns").

The contract suite at the end runs against RedisEntitlementCache and against the in-memory
fake (tests/fake_entitlement_cache.py) that the unit tests use.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis

from adapters.bootstrap import System, bootstrap
from adapters.readmodels.local_entitlements import LocalEntitlementCache
from adapters.readmodels.replay import replay
from adapters.redis.entitlement_cache import RedisEntitlementCache
from adapters.redis.invalidations import RedisInvalidations
from adapters.settings import Settings
from domain.clock import SettableClock
from projections.entitlements.projector import EntitlementsProjector
from projections.ports import EntitlementCache
from tests.factories import free_port
from tests.fake_entitlement_cache import FakeEntitlementCache

pytestmark = [pytest.mark.redis]

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DOWN_SECONDS = 0.2
FEATURES: list[dict[str, Any]] = [
    {"key": "sso", "kind": "boolean"},
    {"key": "api", "kind": "metered", "limit": 3, "enforcement": "hard"},
]


class PrivateRedis:
    """One redis-server process of this test's own, on a free port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (needed by the Redis tests)", pytrace=False)
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.suspended = False

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=0.2, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {self.port}", pytrace=False)
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        """Stop this test's server (by its own process handle) and wait for it to exit."""
        if self.process is None:
            return
        if self.suspended:
            self.resume()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def suspend(self) -> None:
        """Freeze the server: connections hang (timeouts), its data stays."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.suspended = True

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.suspended = False

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def open_system(
    pg_url: str, pg_schema: str, private_redis: PrivateRedis, clock: SettableClock
) -> Iterator[Callable[[], System]]:
    """Builds Systems on one PostgreSQL schema and the private Redis (one per 'process')."""
    built: list[System] = []

    def open_one() -> System:
        settings = Settings(database_url=pg_url, redis_url=private_redis.url)
        system = bootstrap(settings, clock, schema=pg_schema, deliver_in_process=False)
        cache_of(system).down_seconds = DOWN_SECONDS
        wait_until(lambda: local_of(system).trusted)  # its invalidation feed is subscribed
        built.append(system)
        return system

    yield open_one
    for system in built:
        system.close()


@pytest.fixture
def system(open_system: Callable[[], System]) -> System:
    built = open_system()
    built.dispatch(
        "define_plan",
        {
            "app_id": "acme",
            "plan_key": "basic",
            "name": "Basic",
            "base_price": {"amount": 1000, "currency": "USD"},
            "features": FEATURES,
        },
    )
    built.dispatch("start_subscription", {"app_id": "acme", "tenant_id": "t1", "plan_key": "basic"})
    return built


def check(system: System, feature: str = "api") -> dict[str, Any]:
    answer: dict[str, Any] = system.query(
        "entitlement", app_id="acme", tenant_id="t1", feature_key=feature
    )
    return answer


def consume(system: System, amount: int, key: str) -> None:
    reply = system.dispatch(
        "consume_quota",
        {
            "app_id": "acme",
            "tenant_id": "t1",
            "feature_key": "api",
            "amount": amount,
            "idempotency_key": key,
        },
    )
    assert reply["ok"], reply


def local_of(system: System) -> LocalEntitlementCache:
    """The copy in the process's memory, in front of Redis."""
    assert isinstance(system.cache, LocalEntitlementCache)
    return system.cache


def cache_of(system: System) -> RedisEntitlementCache:
    """The Redis hot copy behind the local one."""
    inner = local_of(system).inner
    assert isinstance(inner, RedisEntitlementCache)
    return inner


def tenant_keys(server: PrivateRedis, cache: RedisEntitlementCache) -> list[bytes]:
    client = server.client()
    try:
        keys: list[bytes] = client.keys(f"{cache.prefix}*")  # type: ignore[assignment]
        return sorted(k for k in keys if k.endswith(b":acme:t1"))
    finally:
        client.close()


def generation(server: PrivateRedis, cache: RedisEntitlementCache) -> int:
    client = server.client()
    try:
        return int(client.get(cache.generation_key) or 0)
    finally:
        client.close()


def snapshot_hash(server: PrivateRedis, key: bytes) -> dict[bytes, bytes]:
    client = server.client()
    try:
        fields: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
        return fields
    finally:
        client.close()


def replant(server: PrivateRedis, key: bytes, fields: dict[bytes, bytes]) -> None:
    """Put a hash back as it was before the outage: as if the invalidations sent during it
    were lost (a suspended server still runs the commands queued in its socket when it
    resumes, so the test makes the loss explicit)."""
    client = server.client()
    try:
        client.delete(key)
        client.hset(key, mapping=fields)  # type: ignore[arg-type]
        client.expire(key, 300)
    finally:
        client.close()


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- answers from Redis, invalidated by events ---


def test_answers_come_from_redis_after_the_first_read_and_events_invalidate_them(
    system: System, private_redis: PrivateRedis
) -> None:
    system.sync()
    assert check(system)["used"] == 0  # from PostgreSQL, then filled into Redis
    cache = cache_of(system)
    [key] = tenant_keys(private_redis, cache)
    client = private_redis.client()
    row = orjson.loads(client.hget(key, "api") or b"null")
    assert row["feature_key"] == "api" and row["used"] == 0

    client.hset(key, "api", orjson.dumps({**row, "used": 2}))  # only Redis says 2
    assert check(system)["used"] == 0  # the process's own copy answers first
    local_of(system).drop_all()
    assert check(system)["used"] == 2  # without it, the answer came from Redis

    consume(system, 1, "a")
    system.sync()  # the projector commits, then invalidates the tenant's entry
    assert client.hget(key, "api") is None
    answer = check(system)
    assert (answer["used"], answer["remaining"]) == (1, 2)
    consume(system, 2, "b")
    system.sync()
    answer = check(system)
    assert answer["allowed"] is False and answer["reason"] == "hard_limit_reached"
    client.close()


def test_a_reader_in_another_process_sees_the_invalidation(
    system: System, open_system: Callable[[], System], private_redis: PrivateRedis
) -> None:
    reader = open_system()  # e.g. the API server; `system` plays the projector worker
    system.sync()
    assert check(reader)["used"] == 0
    [key] = tenant_keys(private_redis, cache_of(reader))
    client = private_redis.client()
    client.hdel(key, "api")  # Redis forgets the row...
    assert check(reader)["used"] == 0  # ...and the reader's own copy still answers it
    assert local_of(reader).get("acme", "t1", "api") is not None
    consume(system, 1, "a")
    system.sync()  # the projector invalidates Redis, which publishes it to every process
    wait_until(lambda: local_of(reader).get("acme", "t1", "api") is None, timeout=1.0)
    assert check(reader)["used"] == 1
    client.close()


def test_the_local_copy_is_not_served_while_its_feed_is_down(
    system: System, open_system: Callable[[], System], private_redis: PrivateRedis
) -> None:
    reader = open_system()
    system.sync()
    assert check(reader)["used"] == 0
    assert local_of(reader).get("acme", "t1", "api") is not None
    private_redis.suspend()  # hung: no invalidation can reach the reader now
    wait_until(lambda: not local_of(reader).trusted, timeout=5.0)
    consume(system, 1, "a")
    system.sync()
    assert check(reader)["used"] == 1  # not the kept row: from PostgreSQL
    private_redis.resume()
    wait_until(lambda: local_of(reader).trusted, timeout=5.0)
    assert check(reader)["used"] == 1
    assert check(reader)["used"] == 1


def test_a_restarted_redis_empties_every_local_copy(
    system: System, open_system: Callable[[], System], private_redis: PrivateRedis
) -> None:
    reader = open_system()
    system.sync()
    assert check(reader)["used"] == 0
    private_redis.stop()
    wait_until(lambda: not local_of(reader).trusted, timeout=5.0)
    private_redis.start()
    wait_until(lambda: local_of(reader).trusted, timeout=5.0)
    assert local_of(reader).get("acme", "t1", "api") is None  # started again, empty


# --- outages ---


def test_answers_stay_correct_with_redis_stopped_and_current_when_it_returns(
    system: System, private_redis: PrivateRedis
) -> None:
    system.sync()
    assert check(system)["used"] == 0
    private_redis.stop()

    consume(system, 1, "a")
    system.sync()  # the invalidation fails: logged, never raised
    started = time.monotonic()
    for _ in range(20):
        assert check(system)["used"] == 1  # from PostgreSQL
    assert time.monotonic() - started < 2.0  # marked down: no timeout per check
    assert not cache_of(system).available

    private_redis.start()  # back, empty
    consume(system, 1, "b")
    system.sync()
    assert check(system)["used"] == 2
    wait_until(lambda: cache_of(system).available)
    assert check(system)["used"] == 2
    assert check(system)["used"] == 2
    wait_until(lambda: tenant_keys(private_redis, cache_of(system)) != [])  # refilled


def test_no_stale_answer_after_an_outage_that_kept_the_old_keys(
    system: System, private_redis: PrivateRedis
) -> None:
    system.sync()
    assert check(system)["used"] == 0
    cache = cache_of(system)
    [stale_key] = tenant_keys(private_redis, cache)
    before = snapshot_hash(private_redis, stale_key)
    assert orjson.loads(before[b"api"])["used"] == 0
    gen_before = generation(private_redis, cache)

    private_redis.suspend()  # Redis hangs: calls time out, its data stays
    consume(system, 1, "a")
    system.sync()  # the invalidation times out
    assert check(system)["used"] == 1  # from PostgreSQL meanwhile
    private_redis.resume()
    replant(private_redis, stale_key, before)  # the invalidation was lost: a stale key lives

    wait_until(lambda: cache.available)
    for _ in range(3):
        assert check(system)["used"] == 1  # the stale row is never answered
    assert generation(private_redis, cache) > gen_before
    client = private_redis.client()
    assert orjson.loads(client.hget(stale_key, "api") or b"null")["used"] == 0  # still there,
    assert 0 < client.ttl(stale_key) <= cache.ttl_seconds  # left to age out by its TTL
    client.close()


def test_a_reader_that_saw_no_outage_moves_to_the_new_generation(
    system: System, open_system: Callable[[], System], private_redis: PrivateRedis
) -> None:
    reader = open_system()
    system.sync()
    assert check(reader)["used"] == 0  # cached by the reader's process
    cache = cache_of(system)
    [stale_key] = tenant_keys(private_redis, cache)
    before = snapshot_hash(private_redis, stale_key)
    gen_before = generation(private_redis, cache)

    private_redis.suspend()
    consume(system, 1, "a")
    system.sync()  # only the projector's process sees the failure
    private_redis.resume()
    replant(private_redis, stale_key, before)

    wait_until(lambda: generation(private_redis, cache) > gen_before)  # its recovery bump
    assert cache_of(reader).available
    assert check(reader)["used"] == 1


def test_a_fill_from_before_an_outage_is_never_written_after_it(
    system: System, private_redis: PrivateRedis
) -> None:
    system.sync()
    cache = cache_of(system)
    assert cache.get("acme", "t1", "api") is None  # a reader misses...
    old = system.views.query("SELECT * FROM {entitlements} WHERE feature_key = 'api'")
    [key] = tenant_keys(private_redis, cache)  # only its version so far
    before = snapshot_hash(private_redis, key)
    assert set(before) == {b"__v"}
    private_redis.suspend()
    consume(system, 1, "a")
    system.sync()  # ...the invalidation is lost in the outage...
    private_redis.resume()
    replant(private_redis, key, before)
    wait_until(lambda: cache.available)
    cache.put_many(old)  # ...and the reader's fill of the old row is dropped
    assert check(system)["used"] == 1


# --- the contract: RedisEntitlementCache and the in-memory fake behave the same ---


@pytest.fixture(params=["redis", "fake", "local over fake", "local over redis"])
def contract_cache(request: pytest.FixtureRequest) -> Iterator[EntitlementCache]:
    if request.param == "fake":
        yield FakeEntitlementCache()
        return
    if request.param == "local over fake":
        yield LocalEntitlementCache(FakeEntitlementCache())
        return
    server: PrivateRedis = request.getfixturevalue("private_redis")
    cache = RedisEntitlementCache.from_url(server.url, namespace=f"c{uuid.uuid4().hex[:8]}")
    if request.param == "redis":
        yield cache
        cache.close()
        return
    local = LocalEntitlementCache(
        cache, invalidations=RedisInvalidations(server.url, cache.channel)
    )
    wait_until(lambda: local.trusted)
    yield local
    local.close()


def row(feature: str, tenant: str = "t1", app: str = "acme", **values: Any) -> dict[str, Any]:
    return {"app_id": app, "tenant_id": tenant, "feature_key": feature, **values}


def test_contract_a_miss_then_a_fill_then_a_hit(contract_cache: EntitlementCache) -> None:
    assert contract_cache.get("acme", "t1", "api") is None
    stored = row("api", allowed=True, used=3, limit=None, ratio="x", granted=False)
    contract_cache.put_many([stored, row("sso", allowed=False)])
    assert contract_cache.get("acme", "t1", "api") == stored
    assert contract_cache.get("acme", "t1", "sso") == row("sso", allowed=False)
    assert contract_cache.get("acme", "t1", "other") is None
    assert contract_cache.get("acme", "t2", "api") is None
    assert contract_cache.get("beta", "t1", "api") is None


def test_contract_invalidating_a_tenant_drops_all_its_features(
    contract_cache: EntitlementCache,
) -> None:
    contract_cache.put_many(
        [row("api"), row("sso"), row("api", tenant="t2"), row("api", "t1", "b")]
    )
    contract_cache.invalidate("acme", "t1")
    assert contract_cache.get("acme", "t1", "api") is None
    assert contract_cache.get("acme", "t1", "sso") is None
    assert contract_cache.get("acme", "t2", "api") == row("api", tenant="t2")
    assert contract_cache.get("b", "t1", "api") == row("api", "t1", "b")


def test_contract_invalidating_a_feature_drops_only_it(contract_cache: EntitlementCache) -> None:
    contract_cache.put_many([row("api"), row("sso")])
    contract_cache.invalidate("acme", "t1", "api")
    assert contract_cache.get("acme", "t1", "api") is None
    assert contract_cache.get("acme", "t1", "sso") == row("sso")
    contract_cache.invalidate("acme", "t9")  # nothing cached: fine
    contract_cache.invalidate("acme", "t9", "api")


def test_contract_a_fill_after_an_invalidation_since_the_miss_is_dropped(
    contract_cache: EntitlementCache,
) -> None:
    assert contract_cache.get("acme", "t1", "api") is None  # miss, read SQL...
    contract_cache.invalidate("acme", "t1", "sso")  # ...an event commits meanwhile
    contract_cache.put_many([row("api", used=0)])  # the fill may be stale: dropped
    assert contract_cache.get("acme", "t1", "api") is None
    contract_cache.put_many([row("api", used=1)])  # after that miss, nothing changed: kept
    assert contract_cache.get("acme", "t1", "api") == row("api", used=1)


def test_contract_fills_of_several_tenants_at_once(contract_cache: EntitlementCache) -> None:
    assert contract_cache.get("acme", "t1", "api") is None
    assert contract_cache.get("acme", "t2", "api") is None
    contract_cache.invalidate("acme", "t2")
    contract_cache.put_many([row("api", tenant="t1"), row("api", tenant="t2")])
    assert contract_cache.get("acme", "t1", "api") == row("api", tenant="t1")
    assert contract_cache.get("acme", "t2", "api") is None


def test_contract_invalidate_all_drops_every_tenant(contract_cache: EntitlementCache) -> None:
    contract_cache.put_many([row("api"), row("api", tenant="t2"), row("api", "t1", "b")])
    assert contract_cache.get("acme", "t3", "api") is None  # a reader misses...
    contract_cache.invalidate_all()  # ...a replay swaps the model in meanwhile
    contract_cache.put_many([row("api", tenant="t3")])  # dropped: read from the old model
    for app, tenant in (("acme", "t1"), ("acme", "t2"), ("b", "t1"), ("acme", "t3")):
        assert contract_cache.get(app, tenant, "api") is None
    contract_cache.put_many([row("api", tenant="t3")])
    assert contract_cache.get("acme", "t3", "api") == row("api", tenant="t3")


def test_a_replay_drops_the_hot_copy(system: System) -> None:
    consume(system, 1, "a")
    system.sync()
    with system.views.transaction() as conn:  # a bug left a wrong row in the live model
        system.views.execute(conn, f"UPDATE {system.views.physical('entitlements')} SET used = 99")
    assert check(system)["used"] == 99  # ...and the hot copy has it too
    projector = next(p for p in system.runner.projectors if p.NAME == "entitlements")
    replay(system.views, system.ledger.recorder, projector)
    assert check(system)["used"] == 1


def test_the_redis_cache_never_raises_and_answers_a_miss_when_redis_is_gone(
    private_redis: PrivateRedis,
) -> None:
    cache = RedisEntitlementCache.from_url(private_redis.url, down_seconds=DOWN_SECONDS)
    cache.put_many([row("api")])
    assert cache.get("acme", "t1", "api") == row("api")
    private_redis.stop()
    started = time.monotonic()
    assert cache.get("acme", "t1", "api") is None
    cache.invalidate("acme", "t1")
    cache.put_many([row("api")])
    assert cache.get("acme", "t1", "api") is None
    assert time.monotonic() - started < 1.0
    private_redis.start()
    wait_until(lambda: cache.available)
    assert cache.get("acme", "t1", "api") is None  # a new generation: nothing from before
    cache.close()


def test_the_projector_logs_cache_errors_and_never_raises(system: System) -> None:
    class Exploding(FakeEntitlementCache):
        def invalidate(self, app_id: str, tenant_id: str, feature_key: str | None = None) -> None:
            raise RuntimeError("boom")

    projector = next(p for p in system.runner.projectors if p.NAME == "entitlements")
    assert isinstance(projector, EntitlementsProjector)
    projector.cache = Exploding()
    consume(system, 1, "a")
    system.sync()
    assert check(system)["used"] == 1
