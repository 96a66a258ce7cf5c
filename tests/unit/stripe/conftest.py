"""The embedded system (in-memory SQLite) with Stripe wired to the fake provider, and a
settable clock, for the Stripe tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.bootstrap import System, bootstrap
from adapters.settings import Settings
from domain.clock import SettableClock
from tests.factories import T0
from tests.fake_payment_provider import FakePaymentProvider


@pytest.fixture
def provider() -> FakePaymentProvider:
    return FakePaymentProvider()


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def system(provider: FakePaymentProvider, clock: SettableClock) -> Iterator[System]:
    built = bootstrap(
        Settings(database_url="sqlite:///:memory:", clock="settable"),
        clock,
        deliver_in_process=False,
        payment_provider=provider,
    )
    try:
        yield built
    finally:
        built.close()
