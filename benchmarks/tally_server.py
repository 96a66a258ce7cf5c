"""The real `tally serve` for a benchmark: a scratch PostgreSQL database of its own, the server
started as a child process on it (optionally with NATS and Redis), killed or stopped.

`tally serve` takes its store from TALLY_DATABASE_URL and has no schema option, so each run
gets a database of its own (`CREATE DATABASE bench_…`, dropped afterwards) instead of the
scratch schema the in-process benchmarks use. The child's environment keeps no TALLY_*
variable of ours: only the URLs given here.
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

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> float:
        """Launch on a free port; the seconds until the first 200 on /health."""
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")} | self.env
        started = time.perf_counter()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*serve_command(), "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tally serve exited at start:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"tally serve gave no 200 on /health in {timeout:g} s:\n{self.log_tail()}"
        )

    def kill(self) -> None:
        """SIGKILL: nothing is flushed or finished (what was acknowledged must be durable)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after timeout seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def discard_log(self) -> None:
        self.log_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def server_env(
    database_url: str, run_id: str, nats_url: str | None, redis_url: str | None
) -> dict[str, str]:
    """TALLY_* for the child: the scratch database, and NATS/Redis kept apart by run_id."""
    env = {"TALLY_DATABASE_URL": database_url}
    if nats_url:
        env |= {
            "TALLY_NATS_URL": nats_url,
            "TALLY_NATS_STREAM": f"BENCH_{run_id.upper()}",
            "TALLY_NATS_SUBJECT_PREFIX": f"bench.{run_id}",
        }
    if redis_url:
        env |= {"TALLY_REDIS_URL": redis_url, "TALLY_REDIS_NAMESPACE": f"bench-{run_id}"}
    return env


def delivery(nats_url: str | None) -> str:
    """How the server's read models are fed, for the notes of a figure."""
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
