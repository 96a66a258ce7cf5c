"""The hot copy of entitlement rows in Redis (the EntitlementCache port), with redis-py.

Layout: one hash per tenant, `tally:ent:<gen>:<app_id>:<tenant_id>`, one field per feature
holding the read-model row as JSON, plus a `__v` field: the tenant's invalidation counter.
Every hash carries a safety TTL; freshness comes from invalidation by events, not the TTL.

Correctness rules (the read model in SQL is the truth; Redis may only ever be behind by the
time it takes a committed event to invalidate it):
- Invalidation bumps `__v` (and drops the rows). A reader that missed remembers the
  generation and `__v` it saw (per thread) and fills the cache only if both are unchanged, so a
  row read from SQL before a commit is never written after that commit's invalidation.
- Short socket timeouts (50 ms by default) and no retries: a failing Redis costs one timeout,
  then it is marked down for `down_seconds` and every call is skipped (readers go to SQL).
- No stale answers after an outage: while Redis was unreachable, invalidations were lost. On
  any failure the in-process generation is bumped (fills of reads begun before it are dropped)
  and the first call after the outage also bumps the shared generation in Redis (`...:gen`),
  so every process moves to new, empty hashes at once; the hashes written before the outage
  are never read again and age out by their TTL. A background thread makes that bump as soon
  as Redis answers (every `down_seconds`), without waiting for this process's next call.
- Nothing here raises: get answers None (a miss) when Redis fails, put_many and invalidate
  log and give up. Callers may still guard, as the port allows any method to fail.

Limit: another process that made no Redis call during the outage (so saw no failure) may read
a row this process failed to invalidate until the recovery bump lands (at most about
`down_seconds` after Redis answers again); a process cut off from Redis while others still
reach it (a partial network failure) cannot tell them at all, and the TTL bounds that case.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from projections.ports import Row

log = structlog.get_logger(__name__)

VERSION_FIELD = "__v"

# KEYS[1] = generation key. ARGV: prefix, app_id, tenant_id, feature_key, bump (1/0).
# Returns {generation, row JSON or nil, version}.
_GET = """
if ARGV[5] == '1' then
  redis.call('INCR', KEYS[1])
  redis.call('PUBLISH', ARGV[1] .. 'inv', '*')
end
local g = redis.call('GET', KEYS[1]) or '0'
local k = ARGV[1] .. g .. ':' .. ARGV[2] .. ':' .. ARGV[3]
local r = redis.call('HMGET', k, ARGV[4], '__v')
return {g, r[1], r[2] or '0'}
"""

# KEYS[1] = generation key. ARGV: prefix, app_id, tenant_id, expected generation ('' = any),
# expected version, ttl, then field/value pairs. Writes only if nothing changed since the read.
_FILL = """
local g = redis.call('GET', KEYS[1]) or '0'
if ARGV[4] ~= '' and g ~= ARGV[4] then return 0 end
local k = ARGV[1] .. g .. ':' .. ARGV[2] .. ':' .. ARGV[3]
if ARGV[4] ~= '' and (redis.call('HGET', k, '__v') or '0') ~= ARGV[5] then return 0 end
for i = 7, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', k, ARGV[6])
return 1
"""

# KEYS[1] = generation key. ARGV: prefix, app_id, tenant_id, feature_key ('' = all), bump, ttl.
# Each invalidation is published on `<prefix>inv` (app, tenant, feature joined by \x1f; `*` for
# everything) for the in-process copies of every process (adapters/redis/invalidations.py).
_INVALIDATE = """
if ARGV[5] == '1' then
  redis.call('INCR', KEYS[1])
  redis.call('PUBLISH', ARGV[1] .. 'inv', '*')
end
local g = redis.call('GET', KEYS[1]) or '0'
local k = ARGV[1] .. g .. ':' .. ARGV[2] .. ':' .. ARGV[3]
if ARGV[4] == '' then
  local v = tonumber(redis.call('HGET', k, '__v') or '0') + 1
  redis.call('DEL', k)
  redis.call('HSET', k, '__v', v)
else
  redis.call('HDEL', k, ARGV[4])
  redis.call('HINCRBY', k, '__v', 1)
end
redis.call('EXPIRE', k, ARGV[6])
redis.call('PUBLISH', ARGV[1] .. 'inv', ARGV[2] .. '\\31' .. ARGV[3] .. '\\31' .. ARGV[4])
return g
"""

# KEYS[1] = generation key, ARGV[1] = prefix: a new shared generation, published as `*`.
_BUMP = """
redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1] .. 'inv', '*')
"""

Seen = tuple[bytes, bytes, int]  # (shared generation, tenant version, in-process generation)


class RedisEntitlementCache:
    """EntitlementCache on Redis; safe to share between threads."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str | None = None,
        ttl_seconds: int = 300,
        down_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.prefix = f"tally:ent:{namespace}:" if namespace else "tally:ent:"
        self.generation_key = f"{self.prefix}gen"
        self.ttl_seconds = ttl_seconds
        self.down_seconds = down_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._needs_bump = False
        self._generation = 0  # in-process; bumped on every failure
        self._local = threading.local()
        self._recovering = False
        self._closed = threading.Event()
        self._get = client.register_script(_GET)
        self._fill = client.register_script(_FILL)
        self._invalidate = client.register_script(_INVALIDATE)
        self._bump = client.register_script(_BUMP)
        self.channel = f"{self.prefix}inv"

    @classmethod
    def from_url(
        cls, url: str, *, timeout_seconds: float = 0.05, **options: Any
    ) -> RedisEntitlementCache:
        """A client with short timeouts and no retries: a failure falls back, never waits."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )
        return cls(client, **options)

    # --- the port ----------------------------------------------------------------------

    def get(self, app_id: str, tenant_id: str, feature_key: str) -> Row | None:
        attempt = self._begin()
        if attempt is None:
            return None
        generation, bump = attempt
        try:
            reply = self._get(
                keys=[self.generation_key],
                args=[self.prefix, app_id, tenant_id, feature_key, "1" if bump else "0"],
            )
            gen, raw, version = reply
            row: Row | None = orjson.loads(raw) if raw is not None else None
        except Exception as error:
            self._failed("get", error)
            return None
        self._succeeded(generation, bump)
        if row is None:  # a miss: remember what was seen, so the fill can check it
            seen = self._seen()
            if len(seen) >= 10_000:
                seen.clear()
            seen[(app_id, tenant_id)] = (bytes(gen), bytes(version), generation)
        return row

    def put_many(self, rows: Sequence[Row]) -> None:
        """Write rows read from the read model. After a miss in this thread, a tenant's rows
        are written only if nothing invalidated it since (else they are dropped); rows put
        without a preceding miss are written as given (the caller vouches they are current)."""
        by_tenant: dict[tuple[str, str], list[Row]] = {}
        for row in rows:
            by_tenant.setdefault((str(row["app_id"]), str(row["tenant_id"])), []).append(row)
        seen = self._seen()
        for (app_id, tenant_id), tenant_rows in by_tenant.items():
            read = seen.pop((app_id, tenant_id), None)
            attempt = self._begin()
            if attempt is None or attempt[1]:
                continue  # down, or the outage's bump is pending: the next get does it
            generation = attempt[0]
            if read is not None and read[2] != generation:
                continue  # read before a failure: invalidations may have been lost since
            expected_gen, expected_version = (read[0], read[1]) if read else (b"", b"0")
            pairs: list[Any] = []
            for row in tenant_rows:
                pairs += [str(row["feature_key"]), orjson.dumps(row, default=str)]
            try:
                self._fill(
                    keys=[self.generation_key],
                    args=[
                        self.prefix,
                        app_id,
                        tenant_id,
                        expected_gen,
                        expected_version,
                        self.ttl_seconds,
                        *pairs,
                    ],
                )
            except Exception as error:
                self._failed("put_many", error)

    def invalidate(self, app_id: str, tenant_id: str, feature_key: str | None = None) -> None:
        """Drop a tenant's rows (or one feature's) and bump its version. When Redis is down
        the invalidation is lost, so the next successful call starts a new generation."""
        attempt = self._begin()
        if attempt is None:
            self._mark_missed()
            return
        generation, bump = attempt
        try:
            self._invalidate(
                keys=[self.generation_key],
                args=[
                    self.prefix,
                    app_id,
                    tenant_id,
                    feature_key or "",
                    "1" if bump else "0",
                    self.ttl_seconds,
                ],
            )
        except Exception as error:
            self._failed("invalidate", error)
            return
        self._succeeded(generation, bump)

    def invalidate_all(self) -> None:
        """Drop every tenant at once (after a replay): a new shared generation. When Redis is
        down, the bump that follows the outage does the same."""
        attempt = self._begin()
        if attempt is None:
            self._mark_missed()
            return
        try:
            self._bump(keys=[self.generation_key], args=[self.prefix])
        except Exception as error:
            self._failed("invalidate_all", error)
            return
        self._succeeded(*attempt)

    # --- health ------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False while marked down after a failure."""
        return self._monotonic() >= self._down_until

    def close(self) -> None:
        self._closed.set()
        self.client.close()

    def _begin(self) -> tuple[int, bool] | None:
        """(in-process generation, whether the shared generation must be bumped first), or
        None while Redis is marked down."""
        with self._lock:
            if self._monotonic() < self._down_until:
                return None
            return self._generation, self._needs_bump

    def _succeeded(self, generation: int, bumped: bool) -> None:
        if bumped:
            with self._lock:
                if self._generation == generation:  # no failure since: the bump covers all
                    self._needs_bump = False
                    self._down_until = 0.0
                    log.info("entitlement_cache_back", generation_key=self.generation_key)

    def _failed(self, operation: str, error: BaseException) -> None:
        with self._lock:
            was_up = self._monotonic() >= self._down_until and not self._needs_bump
            self._down_until = self._monotonic() + self.down_seconds
            self._needs_bump = True
            self._generation += 1
        if was_up:
            log.warning(
                "entitlement_cache_down",
                operation=operation,
                error=repr(error),
                retry_in=self.down_seconds,
            )
        self._start_recovery()

    def _mark_missed(self) -> None:
        """An invalidation skipped while down: make sure a new generation follows."""
        with self._lock:
            self._needs_bump = True
            self._generation += 1
        self._start_recovery()

    def _start_recovery(self) -> None:
        """Bump the shared generation as soon as Redis answers again, without waiting for
        this process's next call: readers in other processes that did not see the outage
        must not keep reading rows this process failed to invalidate."""
        with self._lock:
            if self._recovering or self._closed.is_set():
                return
            self._recovering = True
        threading.Thread(
            target=self._recover, name="entitlement-cache-recovery", daemon=True
        ).start()

    def _recover(self) -> None:
        while True:
            stopping = self._closed.wait(self.down_seconds)
            with self._lock:
                if stopping or not self._needs_bump:
                    self._recovering = False
                    return
                generation = self._generation
            try:
                self._bump(keys=[self.generation_key], args=[self.prefix])
            except Exception as error:
                self._failed_quietly(error)
                continue
            self._succeeded(generation, True)

    def _failed_quietly(self, error: BaseException) -> None:
        with self._lock:
            self._down_until = self._monotonic() + self.down_seconds
            self._needs_bump = True
            self._generation += 1
        log.debug("entitlement_cache_still_down", error=repr(error))

    def _seen(self) -> dict[tuple[str, str], Seen]:
        seen: dict[tuple[str, str], Seen] | None = getattr(self._local, "seen", None)
        if seen is None:
            seen = self._local.seen = {}
        return seen
