"""Usage steps: single consumes, group commits of consumes and ingest batches, with repeated
idempotency keys (within a batch and across requests) and late timestamps; every answer is
tallied per quota (attempts = accepted + refused + duplicate + failed, checked at the end
against the events in the log)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from adapters.simulation.catalog import METERED
from adapters.simulation.world import APP, World
from commands.alerts.create_alert import CreateAlert
from commands.bus import CommandResult
from commands.entitlements.grant_feature import GrantFeature
from commands.entitlements.revoke_feature import RevokeFeature
from commands.quotas.consume_quota import ConsumeQuota
from commands.quotas.grant_allowance import GrantAllowance
from commands.usage.record_usage import UsageEventIn
from domain.errors import DomainError

RECENT = timedelta(days=30)  # a key resent within this is a duplicate (kept at least 35 days)
LATE_HOURS = (0, 0, 0, 0, 1, 30, 24 * 10, 24 * 34)
TOO_LATE = timedelta(days=36)  # refused: the whole request records nothing
Sent = tuple[str, str, str, int]  # tenant, feature, key, amount


def tally(world: World, tenant: str, feature: str, status: str) -> None:
    counter = world.usage_tally.setdefault((tenant, feature), Counter())
    counter["attempts"] += 1
    counter[status] += 1


def event_to_send(world: World) -> Sent:
    """A new usage event, or (a quarter of the time) one sent recently, sent again."""
    recent = [s for s, at in world.usage_keys if world.clock.now() - at < RECENT]
    if recent and world.rng.random() < 0.25:
        return world.pick(recent)  # type: ignore[no-any-return]
    subscribed = sorted(world.subscriptions)
    tenant = world.pick(subscribed) if subscribed and world.rng.random() < 0.8 else None
    sent = (
        tenant or world.pick(world.tenants),
        world.rng.choice(METERED),
        world.new_key("use"),
        world.rng.randint(1, 40),
    )
    world.usage_keys.append((sent, world.clock.now()))
    return sent


def consume_status(result: dict[str, Any], duplicate: bool) -> str:
    if duplicate or result.get("duplicate"):
        return "duplicate"
    return "accepted" if result.get("allowed") else "refused"


def consume(world: World) -> None:
    tenant, feature, key, amount = event_to_send(world)
    command = world.build(
        ConsumeQuota, tenant_id=tenant, feature_key=feature, amount=amount, idempotency_key=key
    )
    outcome = world.send(command)
    status = consume_status(outcome.result, outcome.kind == "duplicate") if outcome.ok else "failed"
    tally(world, tenant, feature, status)
    world.log(f"consume {tenant}/{feature} {amount} {key}", f"{outcome.text()} {status}")


def consume_group(world: World) -> None:
    """Several consumes in one group commit (the NATS bus's path), repeats included."""
    sends = [event_to_send(world) for _ in range(world.rng.randint(2, 8))]
    commands = [
        world.build(ConsumeQuota, tenant_id=t, feature_key=f, amount=a, idempotency_key=k)
        for t, f, k, a in sends
    ]
    try:
        outcomes = world.system.bus.handle_many(commands)
    except Exception as error:
        world.crashed("consume_group", error)
        return
    statuses = [group_status(o) for o in outcomes]
    for (tenant, feature, _key, _amount), status in zip(sends, statuses, strict=True):
        tally(world, tenant, feature, status)
    world.log(f"consume_group {len(commands)}", " ".join(statuses))


def group_status(outcome: CommandResult | DomainError) -> str:
    if isinstance(outcome, DomainError):
        return "failed"
    return consume_status(outcome.result, outcome.duplicate)


def usage_batch(world: World) -> None:
    """A batch through the ingest (POST /v1/usage), some events late, sometimes one too late."""
    sends = [event_to_send(world) for _ in range(world.rng.randint(1, 25))]
    now = world.clock.now()
    late = [timedelta(hours=world.rng.choice(LATE_HOURS)) for _ in sends]
    if world.rng.random() < 0.03:
        late[world.rng.randrange(len(late))] = TOO_LATE
    events = [
        UsageEventIn(
            idempotency_key=k,
            tenant_id=t,
            feature_key=f,
            quantity=a,
            timestamp=now - gap if gap else None,
        )
        for (t, f, k, a), gap in zip(sends, late, strict=True)
    ]
    statuses = record(world, events)
    for (tenant, feature, _key, _amount), status in zip(sends, statuses, strict=True):
        tally(world, tenant, feature, status)
    counts = Counter(statuses)
    world.log(f"usage_batch {len(events)}", " ".join(f"{s}={counts[s]}" for s in sorted(counts)))


def record(world: World, events: list[UsageEventIn]) -> list[str]:
    """Each event's status; a refused request (one event too late) must record nothing."""
    head = world.head()
    try:
        answer = world.system.usage.record(APP, events)
    except DomainError as error:
        world.expect("refusals_record_nothing", world.head() == head, f"usage: {error.code}")
        return ["failed"] * len(events)
    except Exception as error:
        world.crashed("usage_batch", error)
        return ["failed"] * len(events)
    return [str(result["status"]) for result in answer["results"]]


def grant_allowance(world: World) -> None:
    tenant, amount = world.pick(world.tenants), world.rng.choice([20, 50, 200])
    grant = world.new_key("allowance")
    world.act(
        f"grant_allowance {tenant}/api {amount}",
        GrantAllowance,
        tenant_id=tenant,
        feature_key="api",
        amount=amount,
        reason="support",
        grant_id=grant,
    )


def grant_feature(world: World) -> None:
    """A support override: the feature stays on (a suspended quota keeps counting)."""
    tenant, feature = world.pick(world.tenants), world.rng.choice([*METERED, "sso"])
    limit = world.rng.choice([None, 50])
    world.act(
        f"grant_feature {tenant}/{feature} limit={limit}",
        GrantFeature,
        tenant_id=tenant,
        feature_key=feature,
        reason="support",
        limit=limit,
    )


def revoke_feature(world: World) -> None:
    tenant, feature = world.pick(world.tenants), world.rng.choice([*METERED, "sso"])
    world.act(
        f"revoke_feature {tenant}/{feature}",
        RevokeFeature,
        tenant_id=tenant,
        feature_key=feature,
        reason="done",
    )


def create_alert(world: World) -> None:
    """Usage, spend or credit-balance alerts (evaluated when read models catch up)."""
    kind = world.rng.choice(["usage", "spend", "credit_balance"])
    tenant = world.pick([None, *world.tenants])
    if kind == "usage":
        extra: dict[str, Any] = {"feature_key": "api", "thresholds": [{"percent": 80}]}
    else:
        extra = {
            "thresholds": [{"amount": {"amount": world.rng.choice([500, 5000]), "currency": "USD"}}]
        }
    world.act(
        f"create_alert {kind} {tenant}",
        CreateAlert,
        alert_key=world.new_key("alert"),
        tenant_id=tenant,
        kind=kind,
        **extra,
    )
