"""The invalidations Redis publishes (adapters/redis/entitlement_cache.py), fed to this
process's in-memory copy of entitlement rows (adapters/readmodels/local_entitlements.py).

One daemon thread per process holds a pub/sub subscription. The copy is trusted only while the
subscription is confirmed: on any error it is emptied and bypassed, and after a reconnect it
starts again empty, so an invalidation missed while disconnected can never leave a row behind.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import redis
import structlog

if TYPE_CHECKING:
    from adapters.readmodels.local_entitlements import LocalEntitlementCache

log = structlog.get_logger(__name__)

SEPARATOR = "\x1f"


class RedisInvalidations:
    """Invalidations port adapter: a Redis pub/sub subscription on the cache's channel."""

    def __init__(
        self,
        url: str,
        channel: str,
        *,
        retry_seconds: float = 1.0,
        ping_seconds: float = 0.2,
        stale_after: float = 1.0,
    ) -> None:
        self.url, self.channel, self.retry_seconds = url, channel, retry_seconds
        self.ping_seconds, self.stale_after = ping_seconds, stale_after
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, copy: LocalEntitlementCache) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(copy,), name="entitlement-invalidations", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _run(self, copy: LocalEntitlementCache) -> None:
        while not self._closed.is_set():
            try:
                self._listen(copy)
            except Exception as error:
                log.debug("entitlement_invalidations_lost", error=repr(error))
            copy.trust(None)
            self._closed.wait(self.retry_seconds)

    def _listen(self, copy: LocalEntitlementCache) -> None:
        client = redis.Redis.from_url(
            self.url, socket_connect_timeout=self.stale_after, socket_timeout=self.stale_after
        )
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self.channel)
            self._follow(copy, pubsub)
        finally:
            pubsub.close()
            client.close()

    def _follow(self, copy: LocalEntitlementCache, pubsub: Any) -> None:
        heard = pinged = time.monotonic()
        while not self._closed.is_set():
            message = pubsub.get_message(timeout=self.ping_seconds)
            now = time.monotonic()
            if message is not None:
                heard = now
                self._deliver(copy, message)
            elif now - heard > self.stale_after:
                raise TimeoutError(f"nothing from Redis for {now - heard:.2f}s")
            if now - pinged >= self.ping_seconds:
                pubsub.ping()
                pinged = now

    def _deliver(self, copy: LocalEntitlementCache, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "subscribe":
            copy.trust(self.stale_after)
            return
        copy.heard(self.stale_after)
        if kind != "message":
            return  # a pong
        text = bytes(message["data"]).decode()
        if text == "*":
            copy.drop_all()
            return
        app_id, tenant_id, feature_key = text.split(SEPARATOR)
        copy.drop(app_id, tenant_id, feature_key or None)
