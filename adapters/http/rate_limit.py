"""Per-key rate limits: a token bucket per API key, in process.

Each key's bucket holds up to `burst` tokens and refills at `rate` tokens a second; a request
spends one token after authentication, and a key with none left is answered 429
`rate_limited` with `Retry-After` (whole seconds, at least 1) until a token is back. Buckets
live in each API process: with N replicas behind a balancer a key gets up to N times the rate.

The hot path takes no global lock: the bucket is found with a dict read and only that key's
own lock is taken (requests of different keys never wait for each other). A bucket is made
under a global lock once per key.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from adapters.http.errors import ApiError

MAX_BUCKETS = 100_000  # beyond this many keys the buckets start over (they refill anyway)


class TokenBucket:
    """`burst` tokens at most, `rate` more each second; `take` spends one if it is there."""

    __slots__ = ("burst", "lock", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, now
        self.lock = threading.Lock()

    def take(self, now: float) -> float:
        """0.0 when a token was spent, else the seconds until one is back."""
        with self.lock:
            elapsed = max(0.0, now - self.stamp)
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate


def rate_limited(wait: float) -> ApiError:
    """429 with Retry-After: the wait rounded up to whole seconds, at least 1."""
    seconds = max(1, math.ceil(wait))
    return ApiError(
        429,
        "rate_limited",
        f"this API key sent too many requests; retry in {seconds} s",
        [{"retry_after_seconds": seconds}],
        headers={"Retry-After": str(seconds)},
    )


class RateLimiter:
    """One token bucket per API key: `rate` requests a second with bursts of `burst`."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("a rate limit needs a rate above 0 (0 turns the limit off)")
        self.rate = rate
        self.burst = max(1.0, burst or rate)  # burst 0: as many as the rate
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, rate: float, burst: float) -> RateLimiter | None:
        """The limiter for these settings, or None when the rate is 0 (off)."""
        return cls(rate, burst) if rate > 0 else None

    def spend(self, key_id: str) -> None:
        """Spend one of the key's tokens; ApiError 429 with Retry-After when it has none."""
        now = self._clock()
        wait = self._bucket(key_id, now).take(now)
        if wait > 0:
            raise rate_limited(wait)

    def _bucket(self, key_id: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(key_id)
        if bucket is not None:
            return bucket
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    self._buckets.clear()
                bucket = self._buckets[key_id] = TokenBucket(self.rate, self.burst, now)
            return bucket
