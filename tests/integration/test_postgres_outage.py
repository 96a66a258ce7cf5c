"""PostgreSQL outage (TARGETS.md R5): a real `tally serve` on a PostgreSQL of the test's own
(initdb into a temporary directory, a free port), which the test stops (`pg_ctl stop -m
immediate`, a crash as far as the clients can tell) and starts again.

While PostgreSQL is down every kind of request (commands, usage, reads, key checks) answers
503 `unavailable` with `Retry-After` within 2 s, `/live` within 50 ms even while `/ready`
probes pile up, and a usage batch answered with an error has recorded nothing. When
PostgreSQL is back the same process serves again, without a restart.
"""

from __future__ import annotations

import gc
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import ROOT, tally_command
from tests.factories import free_port

ANSWER_WITHIN = 2.0  # seconds, every request during the outage
LIVE_WITHIN = 0.050  # seconds, /live whatever the dependencies do (18 of 20 calls at least)
LIVE_NEVER_WAITS = 0.5  # seconds, every /live call: half a pool timeout, so it never waited on one
START_TIMEOUT = 60.0
PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 1000, "currency": "USD"},
    "features": [{"key": "api", "kind": "metered", "limit": 1_000_000, "enforcement": "soft"}],
}


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    assert found[-1], f"{name} is not installed (PostgreSQL server binaries)"
    return found[-1]


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own: initdb, start, stop -m immediate, start."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tally-pg-outage-"))
        self.data = self.root / "data"
        self.log = self.root / "pg.log"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        command = [_pg_bin("pg_ctl"), "-D", str(self.data), *args]
        self._run(command, check)

    @staticmethod
    def _run(command: list[str], check: bool = True) -> None:
        if os.geteuid() == 0:  # root may not run initdb or the server
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert not check or done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run([_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"])
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        """As a crash looks to clients: the server is gone at once, connections cut."""
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def cleanup(self) -> None:
        self._pg_ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


class Serve:
    """`tally serve` (embedded delivery, no NATS or Redis) on the private PostgreSQL."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")} | {
            "TALLY_DATABASE_URL": database_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
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
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.base_url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"tally serve not ready:\n{self.log.read_text()[-3000:]}")

    def key(self, app_id: str) -> str:
        done = subprocess.run(
            [*tally_command(), "keys", "create", "--app", app_id, "--scope", "admin"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the requests measured ------------------------------------------------------------------

Request = Callable[[httpx.Client], httpx.Response]


def usage_batch(prefix: str, size: int = 300) -> dict[str, Any]:
    events = [
        {"idempotency_key": f"{prefix}-{i}", "tenant_id": "t1", "feature_key": "api"}
        for i in range(size)
    ]
    return {"events": events}


def requests_of_each_kind(subscription_id: str) -> dict[str, Request]:
    return {
        "command: define plan": lambda c: c.post("/v1/plans", json={**PLAN, "plan_key": "p2"}),
        "command: start subscription": lambda c: c.post(
            "/v1/subscriptions", json={"tenant_id": "t2", "plan_key": "pro"}
        ),
        "usage: one event": lambda c: c.post(
            "/v1/usage", json={"idempotency_key": "single", "tenant_id": "t1", "feature_key": "api"}
        ),
        "usage: batch of 300": lambda c: c.post("/v1/usage", json=usage_batch("outage")),
        "read: plan": lambda c: c.get("/v1/plans/pro"),
        "read: subscription": lambda c: c.get(f"/v1/subscriptions/{subscription_id}"),
        "read: entitlements": lambda c: c.get("/v1/tenants/t1/entitlements"),
        "read: entitlement check": lambda c: c.post(
            "/v1/entitlements/check", json={"tenant_id": "t1", "feature_keys": ["api"]}
        ),
        "read: usage": lambda c: c.get("/v1/tenants/t1/usage"),
        "read: audit log": lambda c: c.get("/v1/events?limit=10"),
    }


def timed(client: httpx.Client, request: Request) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = request(client)
    return time.perf_counter() - started, response


FIGURES: dict[str, float] = {}  # the slowest answer of each sort, printed at the end (-s)


def slowest(sort: str, seconds: float) -> None:
    FIGURES[sort] = max(FIGURES.get(sort, 0.0), round(seconds, 3))


def assert_unavailable(name: str, seconds: float, response: httpx.Response) -> None:
    slowest("503 answer (s)", seconds)
    assert seconds <= ANSWER_WITHIN, f"{name}: answered after {seconds:.2f}s"
    assert response.status_code == 503, f"{name}: {response.status_code} {response.text}"
    assert response.json()["error"]["code"] == "unavailable", f"{name}: {response.text}"
    assert response.headers.get("retry-after", "").isdigit(), f"{name}: no Retry-After"


def batch_counts(database_url: str) -> dict[str, int]:
    """How many keys of each batch (by key prefix) the database counted."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT split_part(idempotency_key, '-', 1), count(*) FROM usage_keys GROUP BY 1"
        ).fetchall()
    return {prefix: int(count) for prefix, count in rows}


def batches_while_postgres_stops(
    serve: Serve, headers: dict[str, str], postgres: PrivatePostgres
) -> dict[str, int]:
    """4 clients send 300-event batches back to back and PostgreSQL stops under them; the
    status each batch got, by its key prefix."""
    outcomes: dict[str, int] = {}
    stop = threading.Event()

    def send_batches(client_number: int) -> None:
        with httpx.Client(base_url=serve.base_url, headers=headers, timeout=30) as client:
            for i in itertools.count():
                if stop.is_set():
                    return
                prefix = f"live{client_number}x{i}"
                outcomes[prefix] = client.post("/v1/usage", json=usage_batch(prefix)).status_code

    with ThreadPoolExecutor(4) as clients:
        sending = [clients.submit(send_batches, n) for n in range(4)]
        time.sleep(1.0)  # batches are committing
        postgres.stop()
        time.sleep(ANSWER_WITHIN)  # every client has had its 503 by now
        stop.set()
        for future in sending:
            future.result()
    statuses = set(outcomes.values())
    assert statuses <= {200, 503} and {200, 503} <= statuses, outcomes
    return outcomes


def live_stays_fast_under_probes(base_url: str, headers: dict[str, str], slow: Request) -> None:
    """/live answers within 50 ms while 8 /ready probes and 8 API requests wait on the
    stopped store; the probes share one round of checks and answer 503 within 2 s.

    Two of the 20 /live calls may take longer, never LIVE_NEVER_WAITS: on a shared machine a
    garbage collection or the CPU scheduler can hold one call up (the client's collector is
    off while it measures), but /live does no I/O, so none ever waits on the store."""

    def probe() -> tuple[float, httpx.Response]:
        return timed(httpx.Client(base_url=base_url, timeout=30), lambda c: c.get("/ready"))

    def api() -> tuple[float, httpx.Response]:
        return timed(httpx.Client(base_url=base_url, headers=headers, timeout=30), slow)

    with ThreadPoolExecutor(16) as pool:
        probes = [pool.submit(probe) for _ in range(8)]
        calls = [pool.submit(api) for _ in range(8)]
        time.sleep(0.2)  # all of them are waiting now
        lives = live_timings(base_url)
    for seconds in lives:
        slowest("/live under load (s)", seconds)
        assert seconds <= LIVE_NEVER_WAITS, f"/live: {seconds:.3f}s"
    assert sorted(lives)[17] <= LIVE_WITHIN, f"/live: {sorted(lives)}"
    for seconds, response in (future.result() for future in probes):
        slowest("/ready while down (s)", seconds)
        assert seconds <= ANSWER_WITHIN and response.status_code == 503, response.text
    assert len({future.result()[1].text for future in probes}) <= 2  # one round, or two
    for future in calls:
        assert_unavailable("usage under load", *future.result())


def live_timings(base_url: str, calls: int = 20) -> list[float]:
    gc.disable()  # the test's own collections are not the server's latency
    try:
        with httpx.Client(base_url=base_url, timeout=5) as live:
            live.get("/live")  # connected
            timings = [timed(live, lambda c: c.get("/live")) for _ in range(calls)]
    finally:
        gc.enable()
    assert all(response.json() == {"status": "ok"} for _, response in timings)
    return [seconds for seconds, _ in timings]


def wait_until_served(
    client: httpx.Client, path: str = "/v1/plans/pro", within: float = 15.0
) -> float:
    """Seconds until a request that needs the store succeeds again."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if client.get(path).status_code == 200:
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"{path} still not served {within:g}s after PostgreSQL came back")


def assert_all_or_nothing(
    client: httpx.Client, database_url: str, outcomes: dict[str, int]
) -> None:
    """Each batch sent as PostgreSQL stopped counted whole or not at all; one answered 200
    counted whole; one answered 503 counts whole when sent again, or answers duplicates
    (its commit reached the disk as the server died: the client could not know)."""
    counts = batch_counts(database_url)
    for prefix, status in outcomes.items():
        counted = counts.get(prefix, 0)
        assert counted in (0, 300), f"batch {prefix} ({status}) counted {counted} of 300"
        if status == 200:
            assert counted == 300, f"batch {prefix} answered 200 but counted {counted}"
            continue
        again = client.post("/v1/usage", json=usage_batch(prefix)).json()
        expected = (300, 0) if counted == 0 else (0, 300)
        assert (again["accepted"], again["duplicates"]) == expected, (prefix, counted)


# --- the test -------------------------------------------------------------------------------


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[PrivatePostgres, Serve]]:
    postgres = PrivatePostgres()
    serve = Serve(postgres.url, tmp_path / "serve.log")
    try:
        postgres.init()
        serve.start()
        yield postgres, serve
    finally:
        serve.stop()
        postgres.cleanup()


def test_postgres_outage_fails_fast_records_nothing_and_recovers(
    stack: tuple[PrivatePostgres, Serve],
) -> None:
    postgres, serve = stack
    admin = {"Authorization": f"Bearer {serve.key('acme')}"}
    client = httpx.Client(base_url=serve.base_url, headers=admin, timeout=30)
    assert client.post("/v1/plans", json=PLAN).status_code == 201
    started = client.post("/v1/subscriptions", json={"tenant_id": "t1", "plan_key": "pro"})
    assert started.status_code == 201, started.text
    kinds = requests_of_each_kind(started.json()["subscription_id"])
    for name, request in kinds.items():  # every kind works before the outage (warm caches)
        if name.startswith("read"):
            assert request(client).status_code == 200, name

    in_flight = batches_while_postgres_stops(serve, admin, postgres)

    # PostgreSQL is down: each kind of request answers 503 unavailable within 2 s
    for name, request in kinds.items():
        assert_unavailable(name, *timed(client, request))
    stranger = {"Authorization": "Bearer tk_0123456789abcdef_notcachedsecret"}
    unknown_key = httpx.Client(base_url=serve.base_url, headers=stranger, timeout=30)
    assert_unavailable("key check", *timed(unknown_key, lambda c: c.get("/v1/plans/pro")))
    live_stays_fast_under_probes(serve.base_url, admin, kinds["usage: batch of 300"])

    postgres.start()
    recovered_after = wait_until_served(client)
    assert serve.process is not None and serve.process.poll() is None  # never restarted
    # the batch refused during the outage recorded nothing: sent again, it counts whole
    assert batch_counts(postgres.url).get("outage", 0) == 0
    again = kinds["usage: batch of 300"](client).json()
    assert (again["accepted"], again["duplicates"]) == (300, 0), again
    for name, request in kinds.items():
        response = request(client)
        assert response.status_code in (200, 201), f"{name} after the outage: {response.text}"
    wait_until_served(client, path="/ready")  # its report may be READY_CACHE_SECONDS old
    slowest("served again after PostgreSQL started (s)", recovered_after)
    assert recovered_after <= 10.0

    assert_all_or_nothing(client, postgres.url, in_flight)
    print(f"batches in flight at the stop: {sorted(set(in_flight.values()))}", FIGURES)
