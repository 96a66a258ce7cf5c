"""An in-memory EntitlementCache with the same contract as RedisEntitlementCache (the
contract suite in tests/integration/test_entitlements_redis.py runs against both).

Per tenant it keeps the rows and an invalidation counter; a fill after a miss in the same
thread is dropped when the tenant was invalidated since (no stale row written after an
event). `broken = True` makes every call raise, as a failing cache may; `calls` counts them.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Sequence

from projections.ports import Row


class CacheBroken(ConnectionError):
    pass


class FakeEntitlementCache:
    def __init__(self) -> None:
        self.tenants: dict[tuple[str, str], dict[str, Row]] = {}
        self.versions: Counter[tuple[str, str]] = Counter()
        self.epoch = 0  # bumped by invalidate_all: fills begun before it are dropped
        self.broken = False
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()

    def get(self, app_id: str, tenant_id: str, feature_key: str) -> Row | None:
        self._call("get")
        tenant = (app_id, tenant_id)
        with self._lock:
            row = self.tenants.get(tenant, {}).get(feature_key)
            if row is None:
                self._seen()[tenant] = (self.epoch, self.versions[tenant])
                self.calls["miss"] += 1
                return None
            self.calls["hit"] += 1
            return copy.deepcopy(row)

    def put_many(self, rows: Sequence[Row]) -> None:
        self._call("put_many")
        seen = self._seen()
        with self._lock:
            for row in rows:
                tenant = (str(row["app_id"]), str(row["tenant_id"]))
                expected = seen.get(tenant)
                if expected is not None and expected != (self.epoch, self.versions[tenant]):
                    continue  # invalidated since the miss: the row may be stale
                self.tenants.setdefault(tenant, {})[str(row["feature_key"])] = copy.deepcopy(row)
            for row in rows:
                seen.pop((str(row["app_id"]), str(row["tenant_id"])), None)

    def invalidate(self, app_id: str, tenant_id: str, feature_key: str | None = None) -> None:
        self._call("invalidate")
        tenant = (app_id, tenant_id)
        with self._lock:
            self.versions[tenant] += 1
            if feature_key is None:
                self.tenants.pop(tenant, None)
            else:
                self.tenants.get(tenant, {}).pop(feature_key, None)

    def invalidate_all(self) -> None:
        self._call("invalidate_all")
        with self._lock:
            for tenant in set(self.tenants) | set(self.versions):
                self.versions[tenant] += 1
            self.tenants.clear()
            self.epoch += 1

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if self.broken:
            raise CacheBroken(f"the fake cache is broken ({name})")

    def _seen(self) -> dict[tuple[str, str], tuple[int, int]]:
        seen: dict[tuple[str, str], tuple[int, int]] | None = getattr(self._local, "seen", None)
        if seen is None:
            seen = self._local.seen = {}
        return seen
