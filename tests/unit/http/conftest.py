"""Fixtures of the in-process HTTP tests: the embedded system on an SQLite file and a test
clock, its FastAPI app under TestClient, and two apps' API clients (acme, globex)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adapters.bootstrap import System, bootstrap
from adapters.http.app import create_app
from adapters.settings import Settings
from domain.clock import SettableClock
from tests.factories import T0
from tests.unit.http.support import Api


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def system(tmp_path: Path, clock: SettableClock) -> Iterator[System]:
    built = bootstrap(Settings(database_url=f"sqlite:///{tmp_path / 'events.db'}"), clock)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def client(system: System) -> TestClient:
    return TestClient(create_app(system), raise_server_exceptions=False)


@pytest.fixture
def acme(client: TestClient, system: System) -> Api:
    return Api(client, system, "acme")


@pytest.fixture
def globex(client: TestClient, system: System) -> Api:
    return Api(client, system, "globex")
