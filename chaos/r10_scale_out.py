"""R10: scale-out on loopback. A 3-node NATS JetStream cluster (the stream kept on all three,
TALLY_NATS_STREAM_REPLICAS=3), 2 API replicas each under load, 2 relays (one active by
its PostgreSQL advisory lock, the other standing by) and 2 instances of each projector
(active + standby, the same lock). Under load the stream's leader node and the active relay
are SIGKILLed (neither comes back): the standby relay takes over, the cluster elects a
new leader, and nothing is lost or doubled after dedupe; the read models equal a replay.
The processes are given one node's URL (n1): a leader on n1 is asked to step down first,
since a process that connects after n1 died could not reach the cluster (a limit of
TALLY_NATS_URL, which takes one URL; docs/operations.md)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.tally_server import free_port
from chaos.load import Load
from chaos.result import Result
from chaos.stack import (
    PG_URL,
    REDIS_URL,
    Stack,
    answers,
    running_stack,
    split_workers,
    tally,
    wait_for_port,
)
from chaos.verify import committed, replay_differences, stream_problems, wait_for_stream

TITLE = "3 NATS nodes, 2 APIs, 2 relays: a node and the active relay killed"


class NatsCluster:
    """Three nats-servers of our own, routed to each other, JetStream on each."""

    def __init__(self, size: int = 3) -> None:
        self.binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.root = Path(tempfile.mkdtemp(prefix="tally-chaos-cluster-"))
        self.ports = [free_port() for _ in range(size)]
        self.routes = [free_port() for _ in range(size)]
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, index: int = 0) -> str:
        return f"nats://127.0.0.1:{self.ports[index]}"

    def start(self) -> None:
        routes = ",".join(f"nats://127.0.0.1:{port}" for port in self.routes)
        for index, (port, route) in enumerate(zip(self.ports, self.routes, strict=True)):
            name = f"n{index + 1}"
            command = [self.binary, "-a", "127.0.0.1", "-p", str(port), "-js"]
            command += ["-sd", str(self.root / name), "--server_name", name]
            command += ["--cluster_name", "chaos", "--cluster", f"nats://127.0.0.1:{route}"]
            with (self.root / f"{name}.log").open("ab") as log:
                self.nodes[name] = subprocess.Popen(
                    [*command, "--routes", routes], stdout=log, stderr=subprocess.STDOUT
                )
        if not all(wait_for_port(port, 10) for port in self.ports):
            raise RuntimeError(f"the NATS cluster did not start ({self.root})")

    async def leader(self, stream: str, timeout: float = 60.0) -> str:
        """The node leading the stream (once the cluster is ready to answer)."""
        import nats

        deadline = time.monotonic() + timeout
        while True:
            try:
                nc = await nats.connect(self.url(), connect_timeout=2)
                try:
                    info = await nc.jetstream().stream_info(stream)
                    if info.cluster and info.cluster.leader:
                        return str(info.cluster.leader)
                finally:
                    await nc.close()
            except Exception:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.5)

    async def leader_off_seed(self, stream: str, timeout: float = 60.0) -> str:
        """The stream's leader, asked to step down while it is n1: the one node every
        process was given (TALLY_NATS_URL takes one URL, so a process that connects after
        n1 died could not reach the others; docs/operations.md)."""
        import nats

        deadline = time.monotonic() + timeout
        while (leader := await self.leader(stream)) == "n1" and time.monotonic() < deadline:
            nc = await nats.connect(self.url(), connect_timeout=2)
            try:
                await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
            finally:
                await nc.close()
            await asyncio.sleep(1.0)
        return leader

    def kill(self, name: str) -> int:
        """SIGKILL one node; the index of a node still up."""
        self.nodes[name].kill()
        self.nodes[name].wait(10)
        return next(i for i, n in enumerate(self.nodes) if self.nodes[n].poll() is None)

    def cleanup(self) -> None:
        for process in self.nodes.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def workers() -> dict[str, list[str]]:
    """Two of the relay and of each projector; one of the other workers."""
    single = split_workers()
    doubled = {f"{name}-b": command for name, command in single.items() if name != "others"}
    return single | doubled


def second_api(stack: Stack) -> Stack:
    """Another `tally serve` replica on the same stores: a view of the stack on its port."""
    replica = dataclasses.replace(stack, port=free_port(), workers={}, running={})
    stack.running["api-b"] = stack.launch("api-b", [*tally(), "serve", "--port", str(replica.port)])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{replica.base_url}/ready", timeout=2).status_code == 200:
                return replica
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the second API replica is not ready:\n{stack.log_tail('api-b')}")


def run(before: float = 10.0, after: float = 20.0) -> Result:
    began = time.monotonic()
    result = Result("R10", TITLE)
    cluster = NatsCluster()
    cluster.start()
    redis = REDIS_URL if answers(REDIS_URL) else None
    extra = {"TALLY_NATS_STREAM_REPLICAS": "3", "TALLY_LOG_LEVEL": "info"}  # relay_active
    try:
        with running_stack(
            PG_URL, nats_url=cluster.url(), redis_url=redis, workers=workers(), extra_env=extra
        ) as stack:
            drive(stack, second_api(stack), cluster, result, before, after)
    finally:
        cluster.cleanup()
    result.seconds = time.monotonic() - began
    return result


def drive(
    stack: Stack, replica: Stack, cluster: NatsCluster, result: Result, before: float, after: float
) -> None:
    """Load on both replicas; kill the stream's leader and the active relay; check."""
    key = stack.key("chaos-r10")
    loads = [Load(stack, key, threads=2, tag="a"), Load(replica, key, threads=2, tag="b")]
    loads[0].prepare()
    for load in loads:
        load.start()
    time.sleep(before)
    leader = asyncio.run(cluster.leader_off_seed(stack.stream))
    active = [
        name for name in ("relay", "relay-b") if "relay_active" in stack.log_tail(name, 10**6)
    ]
    alive = cluster.kill(leader)
    stack.kill(active[0])
    time.sleep(after)
    for load in loads:
        load.stop()
    standby = "relay-b" if active[0] == "relay" else "relay"
    took_over = "relay_active" in stack.log_tail(standby, 10**6)
    result.figures = {"clients_on": "n1", "killed_node": f"{leader} (stream leader)"}
    result.figures |= {"killed_relay": f"{active[0]} (active)", "standby_took_over": took_over}
    result.check(len(active) == 1, f"relays active before the kill: {active}")
    result.check(took_over, f"the standby relay {standby} never became active")
    check_after(stack, loads, cluster.url(alive), result, active[0])


def check_after(stack: Stack, loads: list[Load], url: str, result: Result, killed: str) -> None:
    """Stream complete on the nodes left, read models = a replay, totals exact."""
    events = committed(stack.database_url)
    caught, messages = asyncio.run(wait_for_stream(url, stack.stream, events, 120))
    gaps = stream_problems(events, messages)
    replay_s, different, _ = replay_differences(stack.database_url, 120)
    requests = sum(len(load.answers) for load in loads)
    result.figures |= {"requests": requests, "non_200": "+".join(x.refusals() for x in loads)}
    result.figures |= {"events": len(events), "messages": len(messages)} | gaps
    result.figures |= {"catch_up_s": round(caught, 1), "replay_equal_after_s": round(replay_s, 1)}
    expected = loads[0].expected_used() + loads[1].expected_used()
    result.check(gaps["missing"] == 0 and gaps["out_of_order"] == 0, f"stream gaps: {gaps}")
    result.check(gaps["unknown"] == 0, "messages in the stream that are no committed event")
    result.check(not different, f"read models differ from a replay: {different}")
    result.check(loads[0].used() == expected, "quota totals differ from the answers")
    exited = [name for name in stack.check_workers() if name != killed]
    result.check(not exited, f"workers exited: {exited}")
