"""A real `tally serve` for the end-to-end tests: a subprocess on a free port, on a fresh
PostgreSQL database (created here, dropped afterwards) with NATS JetStream (a stream and
subject prefix of its own, deleted afterwards) and Redis when they answer, and a settable
clock so billing runs can move time. Keys come from `tally keys create` (its last line).

PostgreSQL must answer (these tests never skip, like the rest of the suite); NATS and Redis are
used when they answer on their URLs (`make test` starts all three).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.factories import free_port

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("TALLY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("TALLY_TEST_NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("TALLY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START_TIMEOUT = 60.0


def answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 0), 1):
            return True
    except OSError:
        return False


def tally_command() -> list[str]:
    script = Path(sys.executable).parent / "tally"
    return [str(script)] if script.exists() else [sys.executable, "-m", "adapters.cli.main"]


def _admin_connect() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL} ({error})", pytrace=False)


class Server:
    """One running `tally serve` and what it runs on."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.suffix = uuid.uuid4().hex[:12]
        self.database = f"tally_e2e_{name}_{self.suffix}"
        self.database_url = urlunparse(urlparse(PG_URL)._replace(path=f"/{self.database}"))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.nats = answers(NATS_URL)
        self.redis = answers(REDIS_URL)
        self.stream = f"E2E_{self.suffix.upper()}"
        self.env = {
            **os.environ,
            "TALLY_DATABASE_URL": self.database_url,
            "TALLY_CLOCK": "settable",
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("TALLY_VIEWS_URL", None)
        if self.nats:
            self.env |= {
                "TALLY_NATS_URL": NATS_URL,
                "TALLY_NATS_STREAM": self.stream,
                "TALLY_NATS_SUBJECT_PREFIX": f"e2e{self.suffix}.events",
            }
        else:
            self.env.pop("TALLY_NATS_URL", None)
        if self.redis:
            self.env["TALLY_REDIS_URL"] = REDIS_URL
        else:
            self.env.pop("TALLY_REDIS_URL", None)
        self.log = ROOT / "var" / f"e2e-{name}-{self.suffix}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.keys: dict[tuple[str, str], str] = {}

    def start(self) -> None:
        with _admin_connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*tally_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"tally serve exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(
            f"tally serve not ready after {START_TIMEOUT}s:\n{self.log.read_text()[-3000:]}"
        )

    def app_id(self, name: str) -> str:
        """The app id a test's app name gets on this server: unique per run, so nothing
        shared across runs (the Redis hot copy, JetStream) can mix two runs' data."""
        return f"{name}-{self.suffix}"

    def key(self, name: str, scope: str) -> str:
        """A key of the app `name` made with `tally keys create` (the key alone on the last
        line of its output)."""
        if (name, scope) not in self.keys:
            done = subprocess.run(
                [*tally_command(), "keys", "create", "--app", self.app_id(name), "--scope", scope],
                cwd=ROOT,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr + done.stdout
            self.keys[(name, scope)] = done.stdout.strip().splitlines()[-1]
        return self.keys[(name, scope)]

    def client(self, name: str, scope: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.key(name, scope)}"},
            timeout=30,
        )

    def stop(self) -> int | None:
        """SIGTERM, as an orchestrator would; returns the exit code."""
        if self.process is None:
            return None
        code = self.process.poll()
        if code is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
        self.process = None
        return code

    def cleanup(self) -> None:
        self.stop()
        with _admin_connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.database)
                )
            )
        if self.nats:
            asyncio.run(_delete_stream(self.stream))
        self.log.unlink(missing_ok=True)


async def _delete_stream(name: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    connection = await nats.connect(NATS_URL, connect_timeout=2)
    try:
        with contextlib.suppress(NotFoundError):
            await connection.jetstream().delete_stream(name)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A fresh `tally serve` for one test module."""
    running = Server(request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"))
    if getattr(request.module, "WITH_STRIPE", False):  # against the test Stripe server
        from tests.stripe_signing import SECRET

        running.env |= {
            "TALLY_STRIPE_API_KEY": "sk_test_tally",
            "TALLY_STRIPE_API_BASE": request.getfixturevalue("stripe_api"),
            "TALLY_STRIPE_WEBHOOK_SECRET": SECRET,
            "TALLY_STRIPE_POLL_SECONDS": "0.2",
        }
    try:
        running.start()
        yield running
    finally:
        running.cleanup()


def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Retry `check` until it returns without AssertionError (read models are eventually
    consistent when fed through JetStream)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)
