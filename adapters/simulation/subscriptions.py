"""Subscription steps: starts (with trials, seats and coupons), plan and seat changes with
each proration mode, pauses, resumes, cancels now or at the period end, and their undo."""

from __future__ import annotations

from uuid import UUID

from adapters.simulation.world import World
from commands.coupons.attach_coupon import AttachCoupon
from commands.subscriptions.cancel_subscription import CancelSubscription
from commands.subscriptions.change_plan import ChangePlan
from commands.subscriptions.change_seats import ChangeSeats
from commands.subscriptions.end_trial import EndTrial
from commands.subscriptions.pause_subscription import PauseSubscription
from commands.subscriptions.resume_subscription import ResumeSubscription
from commands.subscriptions.start_subscription import StartSubscription
from commands.subscriptions.undo_scheduled_cancel import UndoScheduledCancel

PRORATIONS = ("create_prorations", "create_prorations", "always_invoice", "none")


def start(world: World) -> None:
    rng = world.rng
    tenant, plan = world.pick(world.tenants), world.pick(sorted(world.plans))
    coupon = world.pick(world.coupons) if rng.random() < 0.3 else None
    seats, trial = rng.randint(1, 5), rng.random() < 0.5
    subscription_id = world.new_id("subscription")
    label = world.labels.name("sub", subscription_id)
    outcome = world.act(
        f"start {tenant} {plan} {label} seats={seats} trial={trial} coupon={coupon}",
        StartSubscription,
        tenant_id=tenant,
        plan_key=plan,
        subscription_id=subscription_id,
        seats=seats,
        trial=trial,
        coupon=coupon,
    )
    if outcome.ok:
        world.subscriptions[tenant] = subscription_id


def chosen(world: World) -> tuple[str, UUID] | None:
    """A tenant's latest subscription (whatever its status: refusals are outcomes too)."""
    tenant = world.pick(sorted(world.subscriptions))
    return None if tenant is None else (tenant, world.subscriptions[tenant])


def change_plan(world: World) -> None:
    found = chosen(world)
    if found is None:
        return
    plan, timing = world.pick(sorted(world.plans)), world.rng.choice(["now", "now", "period_end"])
    proration = world.rng.choice(PRORATIONS)
    world.act(
        f"change_plan {world.labels.name('sub', found[1])} {plan} {timing} {proration}",
        ChangePlan,
        subscription_id=found[1],
        plan_key=plan,
        timing=timing,
        proration=proration,
    )


def change_seats(world: World) -> None:
    found = chosen(world)
    if found is None:
        return
    quantity, proration = world.rng.randint(1, 12), world.rng.choice(PRORATIONS)
    world.act(
        f"change_seats {world.labels.name('sub', found[1])} {quantity} {proration}",
        ChangeSeats,
        subscription_id=found[1],
        quantity=quantity,
        proration=proration,
    )


def cancel(world: World) -> None:
    found = chosen(world)
    if found is None:
        return
    at_end, proration = world.rng.random() < 0.5, world.rng.choice(PRORATIONS)
    world.act(
        f"cancel {world.labels.name('sub', found[1])} at_period_end={at_end} {proration}",
        CancelSubscription,
        subscription_id=found[1],
        at_period_end=at_end,
        proration=proration,
    )


SIMPLE = {
    "pause": PauseSubscription,
    "resume": ResumeSubscription,
    "undo_cancel": UndoScheduledCancel,
    "end_trial": EndTrial,
}


def simple(world: World, action: str) -> None:
    """A change that takes nothing but the subscription (pause, resume, undo, end trial)."""
    found = chosen(world)
    if found is not None:
        label = world.labels.name("sub", found[1])
        world.act(f"{action} {label}", SIMPLE[action], subscription_id=found[1])


def attach_coupon(world: World) -> None:
    found = chosen(world)
    code = world.pick(world.coupons)
    if found is not None:
        label = world.labels.name("sub", found[1])
        world.act(
            f"attach_coupon {label} {code}", AttachCoupon, subscription_id=found[1], code=code
        )
