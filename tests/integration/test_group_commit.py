"""Group commit: many commands, one transaction, each outcome as if run alone."""

from __future__ import annotations

from typing import Any

from adapters.bootstrap import System
from commands.bus import CommandBus, CommandResult
from commands.plans.define_plan import DefinePlan
from commands.plans.revise_plan import RevisePlan
from commands.quotas.consume_quota import ConsumeQuota
from commands.registry import HANDLERS
from commands.subscriptions.cancel_subscription import CancelSubscription
from commands.subscriptions.start_subscription import StartSubscription
from commands.unit_of_work import UnitOfWork
from domain.errors import DomainError, SubscriptionAlreadyActive
from domain.plan import Plan, plan_id
from domain.quota import quota_id

PLAN = {
    "app_id": "acme",
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 1000, "currency": "USD"},
    "features": [{"key": "api", "kind": "metered", "limit": 3}],
}


def event_count(system: System) -> int:
    return system.ledger.recorder.max_notification_id() or 0


def test_batch_outcomes_match_one_by_one_and_commit_together(system: System) -> None:
    system.handle(DefinePlan.model_validate(PLAN))
    before = event_count(system)
    start = StartSubscription(app_id="acme", tenant_id="t1", plan_key="pro", command_id="s1")
    consumes = [
        ConsumeQuota(app_id="acme", tenant_id="t1", feature_key="api", idempotency_key=f"k{i}")
        for i in range(5)
    ]
    again = StartSubscription(app_id="acme", tenant_id="t1", plan_key="pro")
    outcomes = system.bus.handle_many([start, *consumes, again, start])

    assert isinstance(outcomes[0], CommandResult) and not outcomes[0].duplicate
    allowed = [o.result["allowed"] for o in outcomes[1:6] if isinstance(o, CommandResult)]
    assert allowed == [True, True, True, False, False]  # later commands see earlier ones
    assert isinstance(outcomes[6], SubscriptionAlreadyActive)
    duplicate = outcomes[7]
    assert isinstance(duplicate, CommandResult) and duplicate.duplicate
    assert duplicate.result == outcomes[0].result
    quota = system.aggregate(quota_id("acme", "t1", "api"))
    assert quota.state.used == 3
    positions = [
        n.id for n in system.ledger.recorder.select_notifications(start=before + 1, limit=100)
    ]
    assert positions == list(range(before + 1, before + 1 + len(positions)))  # one transaction
    # slot, subscription, quota configured, receipt, 3 consumed, 2 refusals (QuotaExceeded)
    assert len(positions) == 9


def test_a_refused_command_leaves_no_trace_in_the_batch(system: System) -> None:
    def revise_then_refuse(command: Any, uow: UnitOfWork) -> dict[str, Any]:
        plan = uow.get(Plan, plan_id("acme", "pro"), field="plan_key", app_id="acme")
        plan.revise(plan.terms(), uow.cause)  # changes the aggregate...
        raise DomainError("refused after a change")  # ...then refuses

    class Refusing(RevisePlan):
        NAME = "refusing"

    bus = CommandBus(
        store=system.ledger, clock=system.clock, handlers={**HANDLERS, Refusing: revise_then_refuse}
    )
    bus.handle(DefinePlan.model_validate(PLAN))
    revise = RevisePlan.model_validate({**PLAN, "name": "Pro 2"})
    outcomes = bus.handle_many([Refusing.model_validate(PLAN), revise])
    assert isinstance(outcomes[0], DomainError)
    assert isinstance(outcomes[1], CommandResult) and outcomes[1].result["version"] == 2
    plan = system.ledger.get(plan_id("acme", "pro"))
    assert [t.version for t in plan.state.versions] == [1, 2]
    assert plan.state.versions[1].name == "Pro 2"


def test_a_collision_with_another_writer_falls_back_to_one_by_one(system: System) -> None:
    system.handle(DefinePlan.model_validate(PLAN))
    system.handle(StartSubscription(app_id="acme", tenant_id="t1", plan_key="pro"))
    calls = []

    def interfering_consume(command: Any, uow: UnitOfWork) -> dict[str, Any]:
        result = system.bus.handlers[ConsumeQuota](command, uow)
        if not calls:  # after the batch loaded the quota, another process writes it
            outside = system.ledger.get(quota_id("acme", "t1", "api"))
            outside.consume(1, "outside", uow.cause)
            system.ledger.save(outside)
        calls.append(command.idempotency_key)
        return result

    bus = CommandBus(
        store=system.ledger,
        clock=system.clock,
        handlers={**HANDLERS, ConsumeQuota: interfering_consume},
    )
    commands = [
        ConsumeQuota(app_id="acme", tenant_id="t1", feature_key="api", idempotency_key=f"k{i}")
        for i in range(3)
    ]
    outcomes = bus.handle_many(commands)
    allowed = [o.result["allowed"] for o in outcomes if isinstance(o, CommandResult)]
    assert allowed == [True, True, False]  # the outside consume took one of three
    assert calls == ["k0", "k1", "k2", "k0", "k1", "k2"]  # the batch, then one by one
    assert system.ledger.get(quota_id("acme", "t1", "api")).state.used == 3


def test_cancel_in_the_same_batch_sees_the_new_subscription(system: System) -> None:
    system.handle(DefinePlan.model_validate(PLAN))
    started = system.bus.handle_many(
        [StartSubscription(app_id="acme", tenant_id="t2", plan_key="pro")]
    )[0]
    assert isinstance(started, CommandResult)
    sub_id = started.result["subscription_id"]
    outcomes = system.bus.handle_many(
        [
            CancelSubscription(app_id="acme", subscription_id=sub_id),
            CancelSubscription(app_id="acme", subscription_id=sub_id),
        ]
    )
    assert isinstance(outcomes[0], CommandResult) and outcomes[0].result["status"] == "canceled"
    assert isinstance(outcomes[1], DomainError) and outcomes[1].code == "invalid_transition"


def test_a_batch_repeating_a_committed_command_id_answers_duplicate(system: System) -> None:
    system.handle(DefinePlan.model_validate(PLAN))
    start = StartSubscription(app_id="acme", tenant_id="t3", plan_key="pro", command_id="s3")
    first = system.handle(start)
    consume = ConsumeQuota(
        app_id="acme", tenant_id="t3", feature_key="api", idempotency_key="k", command_id="c3"
    )
    system.handle(consume)
    before = event_count(system)
    outcomes = system.bus.handle_many([start, consume])
    assert all(isinstance(o, CommandResult) and o.duplicate for o in outcomes)
    assert isinstance(outcomes[0], CommandResult) and outcomes[0].result == first.result
    assert event_count(system) == before  # nothing run twice


def test_one_key_in_two_apps_of_one_batch_counts_in_each_and_a_repeat_once(
    system: System,
) -> None:
    for app in ("acme", "globex"):
        system.handle(DefinePlan.model_validate({**PLAN, "app_id": app}))
        system.handle(StartSubscription(app_id=app, tenant_id="t1", plan_key="pro"))
    consumes = [
        ConsumeQuota(app_id=app, tenant_id="t1", feature_key="api", idempotency_key="same")
        for app in ("acme", "globex", "acme")
    ]
    outcomes = system.bus.handle_many(consumes)
    results = [o.result for o in outcomes if isinstance(o, CommandResult)]
    assert [r["duplicate"] for r in results] == [False, False, True]
    for app in ("acme", "globex"):
        assert system.aggregate(quota_id(app, "t1", "api")).state.used == 1
