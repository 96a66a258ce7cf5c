"""The in-process copy of entitlement rows (adapters/readmodels/local_entitlements.py) over the
in-memory fake of its inner cache; its contract with Redis behind it, and its invalidation
feed, run on real Redis in tests/integration/test_entitlements_redis.py."""

from __future__ import annotations

from typing import Any

from adapters.readmodels.local_entitlements import LocalEntitlementCache
from tests.fake_entitlement_cache import FakeEntitlementCache


class ManualFeed:
    """An invalidation feed the test drives by hand."""

    def __init__(self) -> None:
        self.copy: LocalEntitlementCache | None = None
        self.closed = False

    def start(self, copy: LocalEntitlementCache) -> None:
        self.copy = copy

    def close(self) -> None:
        self.closed = True


def row(feature: str, tenant: str = "t1", **values: Any) -> dict[str, Any]:
    return {"app_id": "acme", "tenant_id": tenant, "feature_key": feature, **values}


def test_a_hit_is_answered_here_without_asking_the_inner_cache() -> None:
    inner = FakeEntitlementCache()
    copy = LocalEntitlementCache(inner)
    assert copy.get("acme", "t1", "api") is None
    copy.put_many([row("api", used=1)])
    asked = sum(inner.calls.values())
    assert copy.get("acme", "t1", "api") == row("api", used=1)
    assert sum(inner.calls.values()) == asked


def test_a_row_the_inner_cache_has_is_kept_here_after_one_read() -> None:
    inner = FakeEntitlementCache()
    inner.put_many([row("api", used=2)])
    copy = LocalEntitlementCache(inner)
    assert copy.get("acme", "t1", "api") == row("api", used=2)
    inner.invalidate("acme", "t1")  # another process's change, not yet delivered here
    assert copy.get("acme", "t1", "api") == row("api", used=2)
    copy.drop("acme", "t1", "api")  # the feed delivers it
    assert copy.get("acme", "t1", "api") is None


def test_without_a_confirmed_feed_nothing_is_served_or_kept() -> None:
    feed = ManualFeed()
    copy = LocalEntitlementCache(FakeEntitlementCache(), invalidations=feed)
    assert not copy.trusted
    assert copy.get("acme", "t1", "api") is None
    copy.put_many([row("api")])
    copy.inner.invalidate("acme", "t1")  # type: ignore[union-attr]
    assert copy.get("acme", "t1", "api") is None  # nothing was kept here
    copy.trust(60.0)
    copy.put_many([row("api")])
    assert copy.get("acme", "t1", "api") == row("api")
    copy.trust(None)  # the feed is lost: the copy starts again, empty, and is bypassed
    assert not copy.trusted
    copy.inner.invalidate("acme", "t1")  # type: ignore[union-attr]
    assert copy.get("acme", "t1", "api") is None
    copy.close()
    assert feed.closed


def test_a_feed_that_stops_hearing_its_source_stops_the_copy_answering() -> None:
    copy = LocalEntitlementCache(FakeEntitlementCache(), invalidations=ManualFeed())
    copy.trust(0.0)  # confirmed, but fresh for no time at all: as if nothing was heard since
    copy.put_many([row("api")])
    copy.inner.invalidate("acme", "t1")  # type: ignore[union-attr]
    assert copy.get("acme", "t1", "api") is None
    copy.heard(60.0)
    copy.put_many([row("api")])
    assert copy.get("acme", "t1", "api") == row("api")


def test_the_oldest_tenant_leaves_when_the_copy_is_full() -> None:
    copy = LocalEntitlementCache(max_tenants=2)
    copy.put_many([row("api", tenant="t1"), row("api", tenant="t2"), row("api", tenant="t3")])
    assert copy.get("acme", "t1", "api") is None
    assert copy.get("acme", "t2", "api") == row("api", tenant="t2")
    assert copy.get("acme", "t3", "api") == row("api", tenant="t3")


def test_invalidations_pass_on_to_the_inner_cache() -> None:
    inner = FakeEntitlementCache()
    copy = LocalEntitlementCache(inner)
    copy.put_many([row("api"), row("api", tenant="t2")])
    copy.invalidate("acme", "t1")
    assert inner.get("acme", "t1", "api") is None
    assert inner.get("acme", "t2", "api") == row("api", tenant="t2")
    copy.invalidate_all()
    assert inner.get("acme", "t2", "api") is None
    assert copy.get("acme", "t2", "api") is None
