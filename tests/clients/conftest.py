"""tally-client against the real stack: one `tally serve` subprocess for the session
(tests/e2e/conftest.py's Server: its own PostgreSQL database, JetStream stream and subject
prefix), a `tally worker command-bus` beside it for the bus tests, NATS at 127.0.0.1:4222.

The client is imported from clients/python/src (put first on sys.path here), so `make test`
runs these tests from a fresh clone without installing it; `pip install ./clients/python`
installs the same package for other projects.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SRC = ROOT / "clients" / "python" / "src"
if str(CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(CLIENT_SRC))

from tally_client import Tally  # noqa: E402

from tests.e2e.conftest import NATS_URL, Server, answers, tally_command  # noqa: E402


@pytest.fixture(scope="session")
def live() -> Iterator[Server]:
    """One `tally serve` for all the client tests (each module uses an app of its own: APP);
    they need its NATS side (the relay publishes the events)."""
    if not answers(NATS_URL):
        pytest.fail(f"NATS is not reachable at {NATS_URL}; start it with scripts/services.sh up")
    running = Server("clients")
    try:
        running.start()
        yield running
    finally:
        running.cleanup()


def stream_of(server: Server) -> dict[str, str]:
    """Where the server publishes: its stream and subject prefix (subscribe() options)."""
    return {"stream": server.stream, "subject_prefix": server.env["TALLY_NATS_SUBJECT_PREFIX"]}


def app_of(request: pytest.FixtureRequest) -> str:
    """The test module's app name (APP), "acme" when it names none."""
    return str(getattr(request.module, "APP", "acme"))


@pytest.fixture(scope="module")
def admin(live: Server, request: pytest.FixtureRequest) -> Iterator[Tally]:
    """An admin client of the module's app."""
    with Tally(live.base_url, live.key(app_of(request), "admin")) as client:
        yield client


class CommandBus:
    """A `tally worker command-bus` on a subject prefix of its own, beside the server."""

    def __init__(self, server: Server) -> None:
        self.prefix = f"cb{uuid.uuid4().hex[:10]}"
        self.log = ROOT / "var" / f"client-bus-{self.prefix}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.server = server

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*tally_command(), "worker", "command-bus", "--prefix", self.prefix],
                cwd=ROOT,
                env=self.server.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while b"command bus listening" not in self.log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"command bus did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def command_bus(live: Server) -> Iterator[CommandBus]:
    running = CommandBus(live)
    try:
        running.start()
        yield running
    finally:
        running.stop()
