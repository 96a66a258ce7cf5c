"""The real stack a scenario runs on: a scratch database, `tally serve`, its workers as
processes (to be SIGKILLed), and private NATS / PostgreSQL servers (to be stopped).

Servers that a scenario stops are always private instances on free ports of their own;
the machine's PostgreSQL (5432), NATS (4222) and Redis (6379) are only used, never stopped.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
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

import httpx

from benchmarks.tally_server import free_port, scratch_database, serve_command

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("TALLY_CHAOS_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("TALLY_CHAOS_NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("TALLY_CHAOS_REDIS_URL", "redis://127.0.0.1:6379/0")
START_TIMEOUT = 90.0
LOGS = ROOT / "var" / "chaos" / "logs"
"""Each stack's process logs, `<LOGS>/<run>/api.log` and so on: kept after the run (the
suite empties the folder when it starts), so a failure can be read afterwards."""


def tally() -> list[str]:
    """The `tally` command of this venv."""
    return serve_command()[:-1]


def split_workers() -> dict[str, list[str]]:
    """The relay, the entitlements and usage projectors, and every other worker (one
    process), each a process of its own: what R3 kills."""
    return {
        "relay": [*tally(), "worker", "relay"],
        "entitlements": [*tally(), "worker", "projector", "entitlements"],
        "usage": [*tally(), "worker", "projector", "usage"],
        "others": [
            sys.executable,
            *("-m", "benchmarks.tally_workers", "--without", "entitlements", "usage"),
        ],
    }


def answers(url: str) -> bool:
    """True when something listens at the URL's host and port."""
    from urllib.parse import urlparse

    parts = urlparse(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1):
            return True
    except OSError:
        return False


@dataclass
class Stack:
    """`tally serve` on a database of its own, optionally NATS (a stream of its own) and
    Redis; with `workers`, the API runs alone and each worker is its own process."""

    database_url: str
    nats_url: str | None = None
    redis_url: str | None = None
    workers: dict[str, list[str]] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    port: int = field(default_factory=free_port)
    log_dir: Path = field(default_factory=lambda: LOGS / uuid.uuid4().hex[:10])
    api: subprocess.Popen[bytes] | None = None
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stream(self) -> str:
        return f"CHAOS_{self.run_id.upper()}"

    @property
    def subject_prefix(self) -> str:
        return f"chaos{self.run_id}.events"

    def env(self) -> dict[str, str]:
        """The children's environment: none of our TALLY_* but what this stack sets."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
        env |= {"TALLY_DATABASE_URL": self.database_url, "PYTHONUNBUFFERED": "1"}
        env |= {"TALLY_ACCESS_LOG": "false", "TALLY_LOG_LEVEL": "warning"}
        if self.nats_url:
            env |= {"TALLY_NATS_URL": self.nats_url, "TALLY_NATS_STREAM": self.stream}
            env["TALLY_NATS_SUBJECT_PREFIX"] = self.subject_prefix
        if self.redis_url:
            env |= {"TALLY_REDIS_URL": self.redis_url, "TALLY_REDIS_NAMESPACE": self.run_id}
        if self.workers:
            env["TALLY_SERVE_WORKERS"] = "false"
        return env | self.extra_env

    def launch(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                command, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT
            )

    def start(self) -> None:
        """The API (until /ready answers 200), then every worker."""
        self.api = self.launch("api", [*tally(), "serve", "--port", str(self.port)])
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(f"tally serve exited at start:\n{self.log_tail('api')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/ready", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"tally serve not ready:\n{self.log_tail('api')}")
        for name in self.workers:
            self.restart(name)

    def restart(self, name: str) -> None:
        """Start the worker `name` (again)."""
        self.running[name] = self.launch(name, self.workers[name])

    def kill(self, name: str) -> None:
        """SIGKILL the worker `name`: nothing flushed, nothing finished."""
        process = self.running[name]
        if process.poll() is None:
            process.kill()
        process.wait(10)

    def check_workers(self) -> list[str]:
        """The workers that exited by themselves."""
        return [name for name, p in self.running.items() if p.poll() is not None]

    def key(self, app_id: str, scope: str = "admin") -> str:
        """A new key of the app (`tally keys create`; the key is on the last line)."""
        command = [*tally(), "keys", "create", "--app", app_id, "--scope", scope]
        done = subprocess.run(
            command, cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"tally keys create: {done.stderr}{done.stdout}")
        return done.stdout.strip().splitlines()[-1]

    def client(self, key: str, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def stop(self) -> None:
        """SIGTERM everything, SIGKILL what is still running after 30 s."""
        processes = [p for p in [self.api, *self.running.values()] if p is not None]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running_stack(pg_url: str = PG_URL, **options: Any) -> Iterator[Stack]:
    """A started Stack on a scratch database of the server of pg_url; everything it made
    (database, stream, Redis keys, logs) is removed afterwards."""
    with scratch_database(pg_url, "chaos") as database_url:
        stack = Stack(database_url, **options)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()
            forget(stack)


def forget(stack: Stack) -> None:
    """Remove the stream and the Redis keys of a stack (its logs stay)."""
    if stack.nats_url and answers(stack.nats_url):
        import asyncio

        from benchmarks.tally_server import delete_stream

        with contextlib.suppress(Exception):
            asyncio.run(delete_stream(stack.nats_url, stack.stream))
    if stack.redis_url:
        import redis

        client = redis.Redis.from_url(stack.redis_url)
        with contextlib.suppress(Exception):
            keys = list(client.scan_iter(match=f"*{stack.run_id}*", count=1000))
            if keys:
                client.delete(*keys)
        client.close()


# --- private servers (the ones a scenario stops) ------------------------------------------


def wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


class PrivateNats:
    """A nats-server of our own (JetStream on, its own store and port): stopped by R4."""

    def __init__(self) -> None:
        self.binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.root = Path(tempfile.mkdtemp(prefix="tally-chaos-nats-"))
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        with (self.root / "nats.log").open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "-sd", str(self.root / "js")], stdout=log, stderr=subprocess.STDOUT
            )
        if not wait_for_port(self.port, 10):
            self.stop()
            raise RuntimeError(f"private nats-server did not start ({self.root}/nats.log)")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def pg_binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        raise RuntimeError(f"{name} is not installed (the PostgreSQL server binaries)")
    return found[-1]


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb, a free port): stopped by R5."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tally-chaos-pg-"))
        self.data = self.root / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, command: list[str], check: bool = True) -> None:
        if os.geteuid() == 0:  # root may not run initdb or the server
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{command}: {done.stdout}{done.stderr}")

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self.run([pg_binary("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"])
        self.start()

    def pg_ctl(self, *args: str, check: bool = True) -> None:
        self.run([pg_binary("pg_ctl"), "-D", str(self.data), *args], check)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.pg_ctl("-l", str(self.root / "pg.log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        """As a crash looks to clients: gone at once, connections cut."""
        self.pg_ctl("-m", "immediate", "-w", "stop")

    def cleanup(self) -> None:
        self.pg_ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
