"""Per-key rate limits: a token bucket per API key from TALLY_RATE_LIMIT_PER_KEY and
TALLY_RATE_LIMIT_BURST; 429 `rate_limited` with Retry-After in whole seconds; 0 turns it off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adapters.bootstrap import System, bootstrap
from adapters.http.app import create_app
from adapters.http.errors import ApiError
from adapters.http.rate_limit import RateLimiter
from adapters.settings import Settings
from domain.clock import SettableClock
from tests.factories import T0
from tests.unit.http.support import Api, assert_error

LIMIT, BURST = 1, 3


def limited_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rate: str) -> System:
    monkeypatch.setenv("TALLY_RATE_LIMIT_PER_KEY", rate)
    monkeypatch.setenv("TALLY_RATE_LIMIT_BURST", str(BURST))
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'events.db'}")
    return bootstrap(settings, SettableClock(T0))


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[System]:
    built = limited_system(tmp_path, monkeypatch, str(LIMIT))
    yield built
    built.close()


def statuses(acme: Api, count: int, scope: str = "read") -> list[int]:
    return [acme.call("GET", "/v1/plans", scope).status_code for _ in range(count)]


def test_the_settings_default_to_1000_a_second_with_bursts_of_2000(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TALLY_RATE_LIMIT_PER_KEY", raising=False)
    monkeypatch.delenv("TALLY_RATE_LIMIT_BURST", raising=False)
    settings = Settings()
    assert (settings.rate_limit_per_key, settings.rate_limit_burst) == (1000, 2000)


def test_a_key_past_its_limit_and_burst_gets_429_with_retry_after(acme: Api) -> None:
    answered = statuses(acme, LIMIT + BURST)
    assert answered[:BURST] == [200] * BURST  # a full bucket: the burst passes at once
    response = acme.call("GET", "/v1/plans", "read")  # the (limit+burst+1)-th quick request
    assert_error(response, 429, "rate_limited")
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    assert response.json()["error"]["details"] == [{"retry_after_seconds": int(retry_after)}]


def test_another_key_is_not_affected(acme: Api) -> None:
    statuses(acme, LIMIT + BURST + 1, "read")
    assert acme.call("GET", "/v1/plans", "read").status_code == 429
    assert statuses(acme, BURST, "write") == [200] * BURST


def test_a_refused_key_spends_no_token(acme: Api) -> None:
    headers = {"Authorization": "Bearer tk_ffffffffffffffff_nope"}
    for _ in range(LIMIT + BURST + 1):
        assert acme.client.get("/v1/plans", headers=headers).status_code == 401
    assert statuses(acme, BURST) == [200] * BURST


def test_a_limit_of_0_is_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = limited_system(tmp_path, monkeypatch, "0")
    try:
        app = create_app(built)
        assert app.state.rate_limit is None
        acme = Api(TestClient(app, raise_server_exceptions=False), built, "acme")
        assert set(statuses(acme, 3 * (LIMIT + BURST))) == {200}
    finally:
        built.close()


# --- the bucket on a clock of its own ---------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def refusal(limiter: RateLimiter, key: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        limiter.spend(key)
    return caught.value


def test_the_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(2, 4, clock)
    for _ in range(4):
        limiter.spend("k")
    assert refusal(limiter, "k").status == 429
    clock.now += 0.5  # one token back
    limiter.spend("k")
    assert refusal(limiter, "k").status == 429
    clock.now += 60  # long idle: the bucket is full again, never fuller
    for _ in range(4):
        limiter.spend("k")
    assert refusal(limiter, "k").status == 429


def test_retry_after_is_the_wait_in_whole_seconds_at_least_1() -> None:
    slow = RateLimiter(0.25, 1, Clock())
    slow.spend("k")
    assert refusal(slow, "k").headers == {"Retry-After": "4"}
    fast = RateLimiter(1000, 1, Clock())
    fast.spend("k")
    assert refusal(fast, "k").headers == {"Retry-After": "1"}


def test_a_burst_of_0_is_the_rate() -> None:
    limiter = RateLimiter(3, 0, Clock())
    for _ in range(3):
        limiter.spend("k")
    assert refusal(limiter, "k").code == "rate_limited"
