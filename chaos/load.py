"""Background load for R3-R5: threads sending usage batches (each event its own key) and
consume_quota commands on a few soft quotas, until stopped; every answer is kept with the
moment it came, so a scenario can tell what happened during its fault."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from chaos.result import post
from chaos.stack import Stack

TENANTS = ("t0", "t1", "t2", "t3")


@dataclass
class Answer:
    """One request of the load: when it was sent and answered, its status, what it sent."""

    sent: float
    seconds: float
    status: int
    body: Any
    keys: list[str]
    quantity: int
    tenant: str

    @property
    def answered(self) -> float:
        return self.sent + self.seconds


@dataclass
class Load:
    """`threads` clients, each sending a batch of `batch` usage events, then a command."""

    stack: Stack
    key: str
    threads: int = 4
    batch: int = 10
    pause: float = 0.0
    tag: str = "w"  # keeps the idempotency keys of two loads on one stack apart
    answers: list[Answer] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    running: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def prepare(self) -> None:
        """A soft quota without limit for each tenant."""
        with self.stack.client(self.key) as admin:
            for tenant in TENANTS:
                quota = {"limit": None, "enforcement": "soft"}
                admin.put(f"/v1/tenants/{tenant}/quotas/calls", json=quota).raise_for_status()

    def start(self) -> None:
        self.running = [
            threading.Thread(target=self.work, args=(n,), daemon=True) for n in range(self.threads)
        ]
        for thread in self.running:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.running:
            thread.join(120)

    def work(self, number: int) -> None:
        with self.stack.client(self.key, timeout=30) as client:
            sequence = 0
            while not self.stopping.is_set():
                tenant = TENANTS[(number + sequence) % len(TENANTS)]
                self.usage(client, tenant, f"{self.tag}{number}-{sequence}")
                self.command(client, tenant, f"{self.tag}{number}-{sequence}")
                sequence += 1
                if self.pause:
                    time.sleep(self.pause)

    def usage(self, client: httpx.Client, tenant: str, tag: str) -> None:
        keys = [f"{tag}-{i}" for i in range(self.batch)]
        events = [{"idempotency_key": k, "tenant_id": tenant, "feature_key": "calls"} for k in keys]
        self.send(client, "/v1/usage", {"events": events}, keys, self.batch, tenant)

    def command(self, client: httpx.Client, tenant: str, tag: str) -> None:
        body = {"tenant_id": tenant, "feature_key": "calls", "amount": 2}
        body |= {"idempotency_key": f"{tag}-cmd", "command_id": f"{tag}-cmd"}
        self.send(client, "/v1/commands/consume_quota", body, [f"{tag}-cmd"], 2, tenant)

    def send(
        self, client: httpx.Client, path: str, body: Any, keys: list[str], n: int, tenant: str
    ) -> None:
        sent = time.monotonic()
        status, reply = post(client, path, body)
        answer = Answer(sent, time.monotonic() - sent, status, reply, keys, n, tenant)
        with self.lock:
            self.answers.append(answer)
        if status != 200:
            time.sleep(0.05)  # as a client would back off a little (Retry-After says 1 s)

    def expected_used(self) -> Counter[str]:
        """Per tenant, the units the answers 200 say were counted."""
        used: Counter[str] = Counter()
        for answer in self.answers:
            if answer.status == 200:
                used[answer.tenant] += answer.quantity
        return used

    def used(self) -> Counter[str]:
        """Per tenant, the quota's `used` as the event store says now."""
        used: Counter[str] = Counter()
        with self.stack.client(self.key) as client:
            for tenant in TENANTS:
                reply = client.get(f"/v1/tenants/{tenant}/quotas/calls").json()
                used[tenant] = int(reply["used"])
        return used

    def refusals(self) -> str:
        """The answers other than 200 by status and error code, e.g. `503 unavailable x2`
        (none: `0`). The quota totals check that they recorded nothing."""
        seen: Counter[str] = Counter()
        for answer in self.answers:
            if answer.status != 200:
                seen[f"{answer.status} {refusal(answer.body)}".strip()] += 1
        return ",".join(f"{what} x{n}" for what, n in seen.items()) or "0"


def refusal(body: Any) -> str:
    """The error code of an answer, or the exception's name when none came (status 0)."""
    if isinstance(body, dict):
        return str(body.get("error", {}).get("code", ""))
    return str(body).split("(", 1)[0]
