"""The real `tally serve` for a benchmark: a scratch PostgreSQL database of its own, the server
started as a child process on it (optionally with NATS and Redis), killed or stopped.

`tally serve` takes its store from TALLY_DATABASE_URL and has no schema option, so each run
gets a database of its own (`CREATE DATABASE bench_…`, dropped afterwards) instead of the
scratch schema the in-process benchmarks use. The child's environment keeps no TALLY_*
variable of ours: only the URLs given here.

With `workers` (e.g. `split_workers()`), the server runs the API alone
(TALLY_SERVE_WORKERS=false) and each command given runs beside it as a process of its own
(the relay, the usage projector, the other workers), started once and stopped with it; a
`kill()` kills the API process only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def scratch_database(pg_url: str, prefix: str) -> Iterator[str]:
    """A fresh database on the server of pg_url (its URL), dropped with everything after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunparse(urlparse(pg_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process used so far (Linux /proc; 0 when gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu(conn: psycopg.Connection[Any]) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend on this connection's database but its
    own (the server is local)."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    ).fetchall()
    return {int(pid): cpu_seconds(int(pid)) for (pid,) in rows}


@dataclass
class CpuMeter:
    """CPU seconds the API process, each worker process and the database's PostgreSQL
    backends spend between `start()` and each `read()` (backends that came later count from
    0; one that ended keeps what it was last seen to use: a SIGKILLed server's connections
    end with it): where a benchmark's time goes, whatever else loads the machine."""

    server: TallyServer
    db_url: str
    processes: dict[str, float] = field(default_factory=dict)
    backends: dict[int, float] = field(default_factory=dict)  # at start
    last: dict[int, float] = field(default_factory=dict)  # as last seen
    conn: psycopg.Connection[Any] | None = None  # one, kept: a shared server runs out

    def start(self) -> CpuMeter:
        self.conn = psycopg.connect(self.db_url, autocommit=True)
        self.processes = self.server.cpu()
        self.backends = postgres_cpu(self.conn)
        self.last = dict(self.backends)
        return self

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def read(self) -> dict[str, float]:
        assert self.conn is not None, "start() first"
        self.last |= postgres_cpu(self.conn)
        used = sum(max(0.0, cpu - self.backends.get(pid, 0.0)) for pid, cpu in self.last.items())
        spent = {n: cpu - self.processes.get(n, 0.0) for n, cpu in self.server.cpu().items()}
        return spent | {"postgres": used}


def split_workers() -> dict[str, list[str]]:
    """The workers `tally serve` would run, as processes of their own: the relay, the usage
    projector, and every other worker in one (benchmarks/tally_workers.py), by name."""
    tally = serve_command()[:-1]
    return {
        "relay": [*tally, "worker", "relay"],
        "usage_projector": [*tally, "worker", "projector", "usage"],
        "other_workers": [sys.executable, "-m", "benchmarks.tally_workers", "--without", "usage"],
    }


def serve_command() -> list[str]:
    """`tally serve` from this venv (the console script, or its module when not installed)."""
    script = Path(sys.executable).with_name("tally")
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "adapters.cli.main", "serve"]


@dataclass
class TallyServer:
    """One `tally serve` child process on 127.0.0.1; start() waits for 200 on /health."""

    env: dict[str, str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkstemp(prefix="tally-bench-", suffix=".log")[1])
    )
    workers: dict[str, list[str]] = field(default_factory=dict)
    """Commands run beside the API, each its own process (the server then runs none)."""
    worker_processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> float:
        """Launch on a free port; the seconds until the first 200 on /health."""
        self.port = free_port()
        started = time.perf_counter()
        self.process = self._launch(
            [*serve_command(), "--host", "127.0.0.1", "--port", str(self.port)]
        )
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tally serve exited at start:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    if not self.worker_processes and self.workers:
                        self.start_workers()
                    return time.perf_counter() - started
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"tally serve gave no 200 on /health in {timeout:g} s:\n{self.log_tail()}"
        )

    def _launch(self, command: list[str]) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")} | self.env
        if self.workers:
            env["TALLY_SERVE_WORKERS"] = "false"
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def start_workers(self, timeout: float = 60.0) -> None:
        """Launch the workers and wait until they are done starting (imports, connections:
        under a tenth of a core each over half a second), so a measure never counts that."""
        self.worker_processes = {n: self._launch(w) for n, w in self.workers.items()}
        deadline = time.perf_counter() + timeout
        last = self._workers_cpu()
        while time.perf_counter() < deadline:
            time.sleep(0.5)
            now = self._workers_cpu()
            if now - last < 0.05 * len(self.worker_processes):  # 0.1 core over 0.5 s
                break
            last = now
        self.check_workers()

    def check_workers(self) -> None:
        """RuntimeError (with the log's tail) if a worker process has exited."""
        gone = [n for n, p in self.worker_processes.items() if p.poll() is not None]
        if gone:
            raise RuntimeError(f"worker {', '.join(gone)} exited:\n{self.log_tail(40)}")

    def _workers_cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.worker_processes.values())

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the API process (`api`) and of each worker process."""
        api = cpu_seconds(self.process.pid) if self.process is not None else 0.0
        return {"api": api} | {n: cpu_seconds(p.pid) for n, p in self.worker_processes.items()}

    def kill(self) -> None:
        """SIGKILL: nothing is flushed or finished (what was acknowledged must be durable)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after timeout seconds (the workers
        too)."""
        for process in [self.process, *self.worker_processes.values()]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [self.process, *self.worker_processes.values()]:
            if process is None:
                continue
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.worker_processes = {}

    def discard_log(self) -> None:
        self.log_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


CONNECT_TIMEOUT, POOL_TIMEOUT = 10, 10.0
"""Store timeouts for a benchmark's processes: on a loaded shared machine a connection can
take longer than the fail-fast defaults (2 s, 1 s) allow, which would fail a figure, not
measure it."""


def bench_settings(database_url: str) -> Any:
    """Settings on this database with the benchmark's store timeouts."""
    from adapters.settings import Settings

    return Settings(
        database_url=database_url,
        db_connect_timeout_seconds=CONNECT_TIMEOUT,
        db_pool_timeout_seconds=POOL_TIMEOUT,
    )


def server_env(
    database_url: str, run_id: str, nats_url: str | None, redis_url: str | None
) -> dict[str, str]:
    """TALLY_* for the child: the scratch database, and NATS/Redis kept apart by run_id."""
    env = {"TALLY_DATABASE_URL": database_url}
    env["TALLY_DB_CONNECT_TIMEOUT_SECONDS"] = str(CONNECT_TIMEOUT)
    env["TALLY_DB_POOL_TIMEOUT_SECONDS"] = str(POOL_TIMEOUT)
    if nats_url:
        env |= {
            "TALLY_NATS_URL": nats_url,
            "TALLY_NATS_STREAM": f"BENCH_{run_id.upper()}",
            "TALLY_NATS_SUBJECT_PREFIX": f"bench.{run_id}",
        }
    if redis_url:
        env |= {"TALLY_REDIS_URL": redis_url, "TALLY_REDIS_NAMESPACE": f"bench-{run_id}"}
    return env


def delivery(nats_url: str | None, split: bool = False) -> str:
    """How the server's read models are fed, for the notes of a figure."""
    if nats_url and split:
        return (
            "relay and projectors over NATS JetStream in processes of their own (relay, usage "
            "projector, the other workers)"
        )
    if nats_url:
        return "relay and projectors over NATS JetStream in the server"
    return "read models fed in process (no NATS)"


def forget_run(nats_url: str | None, redis_url: str | None, run_id: str) -> None:
    """Remove what a run left outside its database: its JetStream stream, its Redis keys."""
    if nats_url:
        import asyncio

        asyncio.run(delete_stream(nats_url, f"BENCH_{run_id.upper()}"))
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url)
        try:
            keys = list(client.scan_iter(match=f"*bench-{run_id}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


async def delete_stream(nats_url: str, stream: str) -> None:
    """Remove the JetStream stream a run created (nothing if it does not exist)."""
    import nats

    nc = await nats.connect(nats_url)
    try:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()
