"""A copy of entitlement rows in this process's memory, in front of the Redis hot copy and the
read model (the EntitlementCache port), so an in-process check answers in microseconds.

Rows, not answers, are kept: the rule (projections/entitlements/rules.py) still decides each
answer with the clock's time, so expiry needs no event. Freshness comes from invalidation:
- the projector that commits a change invalidates this copy directly when it runs in this
  process, and Redis (`inner`) always; Redis then publishes the invalidation, in the same
  script, on a channel every process's copy listens to (`RedisInvalidations`), so a copy in
  another process drops the row as soon as the message arrives (sub-millisecond on loopback):
  a check never answers from a copy older than the projection lag plus that delivery;
- while the channel is not subscribed (start-up, Redis down, a dropped connection) nothing is
  served from or kept in this copy: it is emptied, every check goes to Redis or the read
  model, and it starts again, empty, once the subscription is confirmed. The feed hears from
  Redis every 200 ms (a ping); a copy that heard nothing for `stale_after` (1 s) is not
  served from, so a hung Redis that loses an invalidation leaves a stale row answerable for
  at most that long (the Redis copy's recovery bump then empties every copy);
- a reader that missed notes the version of the tenant's stripe; its fill is kept only if no
  invalidation touched that stripe since (a row read before a commit is never kept after
  that commit's invalidation).
Without Redis there is no copy (checks read the read model): nothing would tell this process
about a change another process applied to a shared read model.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from projections.ports import EntitlementCache, Row

STRIPES = 4096
Tenant = tuple[str, str]


class Invalidations(Protocol):
    """A feed of invalidations made by other processes (started by the local copy)."""

    def start(self, copy: LocalEntitlementCache) -> None: ...

    def close(self) -> None: ...


class LocalEntitlementCache:
    """EntitlementCache in memory, in front of an optional inner cache; thread safe."""

    def __init__(
        self,
        inner: EntitlementCache | None = None,
        *,
        invalidations: Invalidations | None = None,
        max_tenants: int = 100_000,
    ) -> None:
        self.inner, self.max_tenants = inner, max_tenants
        self._rows: OrderedDict[Tenant, dict[str, Row]] = OrderedDict()
        self._versions = [0] * STRIPES
        self._epoch = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._invalidations = invalidations
        # rows are served until this monotonic instant: a feed must confirm and keep hearing
        self._fresh_until = 0.0 if invalidations is not None else math.inf
        if invalidations is not None:
            invalidations.start(self)

    # --- the port ----------------------------------------------------------------------

    def get(self, app_id: str, tenant_id: str, feature_key: str) -> Row | None:
        if time.monotonic() < self._fresh_until:
            rows = self._rows.get((app_id, tenant_id))
            if rows is not None:
                row = rows.get(feature_key)
                if row is not None:
                    return row
        return self._miss(app_id, tenant_id, feature_key)

    def put_many(self, rows: Sequence[Row]) -> None:
        """Rows read from the read model: kept here unless an invalidation came since this
        thread missed them, and passed on to the inner cache."""
        by_tenant: dict[Tenant, list[Row]] = {}
        for row in rows:
            by_tenant.setdefault((str(row["app_id"]), str(row["tenant_id"])), []).append(row)
        seen = self._seen()
        for tenant, tenant_rows in by_tenant.items():
            self._keep(tenant, tenant_rows, seen.pop(tenant, None))
        if self.inner is not None:
            self.inner.put_many(rows)

    def invalidate(self, app_id: str, tenant_id: str, feature_key: str | None = None) -> None:
        self.drop(app_id, tenant_id, feature_key)
        if self.inner is not None:
            self.inner.invalidate(app_id, tenant_id, feature_key)

    def invalidate_all(self) -> None:
        self.drop_all()
        if self.inner is not None:
            self.inner.invalidate_all()

    # --- invalidations from the feed (not passed on) ------------------------------------

    def drop(self, app_id: str, tenant_id: str, feature_key: str | None = None) -> None:
        """Forget a tenant's rows (or one feature's) here only."""
        tenant = (app_id, tenant_id)
        with self._lock:
            self._versions[_stripe(tenant)] += 1
            if feature_key is None:
                self._rows.pop(tenant, None)
            elif tenant in self._rows:
                self._rows[tenant].pop(feature_key, None)

    def drop_all(self) -> None:
        """Forget everything here only."""
        with self._lock:
            self._epoch += 1
            self._rows.clear()

    def trust(self, fresh_for: float | None) -> None:
        """The feed is delivering (for `fresh_for` seconds unless heard again) or, with None,
        no longer is: either way start again from an empty copy."""
        with self._lock:
            self._epoch += 1
            self._rows.clear()
            self._fresh_until = 0.0 if fresh_for is None else time.monotonic() + fresh_for

    def heard(self, fresh_for: float) -> None:
        """The feed heard from its source just now: rows stay servable `fresh_for` longer."""
        if self._fresh_until > 0.0:
            self._fresh_until = time.monotonic() + fresh_for

    @property
    def trusted(self) -> bool:
        """Whether rows kept here may answer now."""
        return time.monotonic() < self._fresh_until

    def close(self) -> None:
        if self._invalidations is not None:
            self._invalidations.close()
        close: Callable[[], None] | None = getattr(self.inner, "close", None)
        if close is not None:
            close()

    # --- internals -----------------------------------------------------------------------

    def _miss(self, app_id: str, tenant_id: str, feature_key: str) -> Row | None:
        tenant = (app_id, tenant_id)
        read = self._mark(tenant)
        row = self.inner.get(app_id, tenant_id, feature_key) if self.inner is not None else None
        if row is not None:
            self._keep(tenant, [row], read)
            self._seen().pop(tenant, None)
        return row

    def _mark(self, tenant: Tenant) -> tuple[int, int]:
        """Note what this thread saw before reading elsewhere: (stripe version, epoch)."""
        seen = self._seen()
        if len(seen) >= 10_000:
            seen.clear()
        read = seen[tenant] = (self._versions[_stripe(tenant)], self._epoch)
        return read

    def _keep(self, tenant: Tenant, rows: list[Row], read: tuple[int, int] | None) -> None:
        with self._lock:
            if not self.trusted:
                return
            if read is not None and read != (self._versions[_stripe(tenant)], self._epoch):
                return  # invalidated since it was read: it may be older than the change
            kept = self._rows.get(tenant)
            if kept is None:
                kept = self._rows[tenant] = {}
                if len(self._rows) > self.max_tenants:
                    self._rows.popitem(last=False)
            for row in rows:
                kept[str(row["feature_key"])] = row

    def _seen(self) -> dict[Tenant, tuple[int, int]]:
        seen: dict[Tenant, tuple[int, int]] | None = getattr(self._local, "seen", None)
        if seen is None:
            seen = self._local.seen = {}
        return seen


def _stripe(tenant: Tenant) -> int:
    return hash(tenant) % STRIPES
