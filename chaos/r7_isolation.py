"""R7: keys and apps on every /v1 operation of the running server's /openapi.json. No key
and a forged key answer 401 everywhere; a read key gets 403 on every write; another app's
admin key never sees app A's data (no 2xx answer holds A's ids or names) and never
changes it (A's event count and subscription unchanged); a forged, unsigned or stale
Stripe webhook is refused 400 and nothing is recorded (a signed one is taken)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import psycopg

from chaos.r6_fuzz import stripe_env
from chaos.result import Result
from chaos.stack import NATS_URL, PG_URL, REDIS_URL, Stack, answers, running_stack

TITLE = "other app's key, no key, wrong scope, forged webhook"
READ_POSTS = {"/v1/entitlements/check", "/v1/pricing/rate", "/v1/simulations/pricing"}
Operation = tuple[str, str, list[str]]  # (method, path template, path parameter names)


class World:
    """App A's data, made through the API with A's admin key."""

    def __init__(self, stack: Stack) -> None:
        tag = uuid.uuid4().hex[:8]
        self.plan_key, self.plan_name, self.coupon = f"gold{tag}", f"Gold {tag}", f"alpha{tag}"
        self.admin = stack.client(stack.key("chaos-r7-alpha"))
        self.reader = stack.client(stack.key("chaos-r7-alpha", "read"))
        self.other = stack.client(stack.key("chaos-r7-beta"))
        feature = {"key": "calls", "kind": "metered", "limit": 100}
        plan: dict[str, Any] = {"plan_key": self.plan_key, "name": self.plan_name}
        plan["features"] = [feature]
        plan["base_price"] = {"amount": 5000, "currency": "USD"}
        self.ok(self.admin.post("/v1/plans", json=plan))
        start = {"tenant_id": "tenant-a", "plan_key": self.plan_key}
        self.subscription_id = self.ok(self.admin.post("/v1/subscriptions", json=start))[
            "subscription_id"
        ]
        coupon = {"code": self.coupon, "percent_off": 10, "duration": "forever"}
        self.ok(self.admin.post("/v1/coupons", json=coupon))
        usage = {"idempotency_key": "a-1", "tenant_id": "tenant-a", "feature_key": "calls"}
        self.ok(self.admin.post("/v1/usage", json=usage))
        self.markers = [self.subscription_id, self.plan_name, self.coupon, self.plan_key]

    @staticmethod
    def ok(response: httpx.Response) -> Any:
        if response.status_code >= 300:
            raise RuntimeError(f"R7 setup: {response.status_code} {response.text}")
        return response.json()

    def parameters(self) -> dict[str, str]:
        return {
            "tenant_id": "tenant-a",
            "plan_key": self.plan_key,
            "subscription_id": self.subscription_id,
            "code": self.coupon,
            "feature_key": "calls",
            "command_name": "consume_quota",
        }

    def path(self, template: str, names: list[str]) -> str:
        values = self.parameters()
        for name in names:
            template = template.replace(f"{{{name}}}", values.get(name, str(uuid.uuid4())))
        return template

    def state(self) -> tuple[int, Any]:
        """A's event count and subscription, as A's key sees them."""
        events = self.ok(self.admin.get("/v1/events", params={"limit": 1000}))
        subscription = self.ok(self.admin.get(f"/v1/subscriptions/{self.subscription_id}"))
        return len(events["events"]), subscription

    def settled(self, timeout: float = 30.0) -> tuple[int, Any]:
        """A's state once it stops changing (what the workers do after a command is done)."""
        deadline, last = time.monotonic() + timeout, self.state()
        while time.monotonic() < deadline:
            time.sleep(2.0)
            now = self.state()
            if now == last:
                return now
            last = now
        raise RuntimeError("R7 setup: app A's state keeps changing")

    def close(self) -> None:
        for client in (self.admin, self.reader, self.other):
            client.close()


def operations(stack: Stack) -> list[Operation]:
    """Every /v1 operation of /openapi.json."""
    spec = httpx.get(f"{stack.base_url}/openapi.json", timeout=30).json()
    found: list[Operation] = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if path.startswith("/v1/") and method in {"get", "post", "put", "delete", "patch"}:
                names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
                found.append((method.upper(), path, names))
    return found


def run() -> Result:
    began = time.monotonic()
    result = Result("R7", TITLE)
    nats = NATS_URL if answers(NATS_URL) else None
    redis = REDIS_URL if answers(REDIS_URL) else None
    with (
        stripe_env() as env,
        running_stack(PG_URL, nats_url=nats, redis_url=redis, extra_env=env) as stack,
    ):
        world = World(stack)
        try:
            check_keys(stack, world, result)
            check_webhooks(stack, result)
        finally:
            world.close()
    result.seconds = time.monotonic() - began
    return result


def check_keys(stack: Stack, world: World, result: Result) -> None:
    every = operations(stack)
    before = world.settled()
    bad: dict[str, list[str]] = {"no_key": [], "forged_key": [], "read_scope": [], "leak": []}
    other_404 = 0
    with httpx.Client(base_url=stack.base_url, timeout=30) as anonymous:
        for method, template, names in every:
            path = world.path(template, names)
            body: dict[str, Any] | None = {} if method != "GET" else None
            for kind, headers in (("no_key", {}), ("forged_key", forged())):
                status = anonymous.request(method, path, json=body, headers=headers).status_code
                if status != 401:
                    bad[kind].append(f"{method} {template} -> {status}")
            if method != "GET" and template not in READ_POSTS:
                status = world.reader.request(method, path, json=body).status_code
                if status != 403:
                    bad["read_scope"].append(f"{method} {template} -> {status}")
            response = world.other.request(method, path, json=body)
            other_404 += response.status_code == 404
            if response.status_code < 300 and any(m in response.text for m in world.markers):
                bad["leak"].append(f"{method} {template} -> {response.status_code}")
    after = world.settled()
    result.figures = {"operations": len(every)} | {kind: len(v) for kind, v in bad.items()}
    result.figures |= {"other_app_404": other_404, "a_unchanged": before == after}
    for kind, problems in bad.items():
        result.check(not problems, f"{kind}: {'; '.join(problems[:5])}")
    result.check(before == after, f"app A's state changed by B's key: {before} -> {after}")


def forged() -> dict[str, str]:
    return {"Authorization": f"Bearer tk_{uuid.uuid4().hex}_{uuid.uuid4().hex}"}


def check_webhooks(stack: Stack, result: Result) -> None:
    """Forged, unsigned and stale deliveries: 400, nothing stored; a signed one: 200."""
    from tests.stripe_signing import headers, stripe_event

    url, stale = f"{stack.base_url}/v1/webhooks/stripe", int(time.time()) - 3600
    payload = stripe_event(f"evt_{uuid.uuid4().hex[:12]}", app_id="chaos-r7-alpha")
    refused = {
        "forged": headers(payload, secret="whsec_not_the_secret"),
        "unsigned": {"Content-Type": "application/json"},
        "stale": headers(payload, timestamp=stale),
    }
    stored_before = inbox_rows(stack)
    statuses = {
        k: httpx.post(url, content=payload, headers=h).status_code for k, h in refused.items()
    }
    stored_after = inbox_rows(stack)
    signed = httpx.post(url, content=payload, headers=headers(payload)).status_code
    result.figures |= {f"webhook_{k}": v for k, v in statuses.items()} | {"webhook_signed": signed}
    result.figures["webhooks_stored_when_refused"] = stored_after - stored_before
    result.check(all(s == 400 for s in statuses.values()), f"webhooks not refused: {statuses}")
    result.check(stored_after == stored_before, "a refused webhook was stored")
    result.check(
        signed == 200 and inbox_rows(stack) == stored_after + 1, "a signed webhook was not stored"
    )


def inbox_rows(stack: Stack) -> int:
    """Rows in the Stripe webhook inbox (0 before it exists)."""
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        try:
            row = conn.execute("SELECT count(*) FROM stripe_webhooks").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return int(row[0]) if row else 0
