from datetime import timedelta
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidTransition, InvalidValue, SubscriptionAlreadyActive
from domain.subscription import (
    PlanChanged,
    Status,
    Subscription,
    SubscriptionCanceled,
    SubscriptionStarted,
    TenantSlot,
)
from tests.factories import T0, cause, terms


def start(trial_days: int = 0, trial: bool = True) -> Subscription:
    return Subscription.start(
        uuid4(), "acme", "t1", terms(trial_days=trial_days), cause(), trial=trial
    )


def test_start_with_trial_then_trial_ends() -> None:
    sub = start(trial_days=14)
    [event] = sub.collect_events()
    assert isinstance(event, SubscriptionStarted)
    assert event.terms.plan_key == "pro" and event.tenant_id == "t1"
    assert sub.status is Status.TRIALING
    assert sub.state.trial_end == T0 + timedelta(days=14)
    sub.end_trial(cause(T0 + timedelta(days=14)))
    assert sub.status is Status.ACTIVE
    assert sub.state.current_period.start == T0 + timedelta(days=14)


def test_start_without_trial_is_active_for_one_interval() -> None:
    sub = start(trial_days=14, trial=False)
    assert sub.status is Status.ACTIVE
    assert sub.state.current_period.end.month == 2


def test_cancel_at_period_end_can_be_undone_and_renew_applies_it() -> None:
    sub = start()
    sub.cancel(cause(), at_period_end=True)
    assert sub.state.cancel_at_period_end
    sub.undo_cancel(cause())
    assert not sub.state.cancel_at_period_end
    with pytest.raises(InvalidTransition):
        sub.undo_cancel(cause())
    sub.cancel(cause(), at_period_end=True)
    end = sub.state.current_period.end
    with pytest.raises(InvalidTransition, match="not ended"):
        sub.renew(cause(end - timedelta(seconds=1)))
    sub.renew(cause(end))
    assert sub.status is Status.CANCELED
    assert isinstance(sub.pending_events[-1], SubscriptionCanceled)


def test_renew_starts_the_next_period_with_a_scheduled_plan() -> None:
    sub = start()
    sub.change_plan(terms("team", price=5000), cause(), timing="period_end")
    assert sub.state.terms.plan_key == "pro"
    end = sub.state.current_period.end
    sub.renew(cause(end))
    assert sub.state.terms.plan_key == "team"
    assert sub.state.price.amount == 5000
    assert sub.state.current_period.start == end


def test_change_plan_now_records_what_proration_needs() -> None:
    sub = start()
    sub.change_plan(terms("team", price=5000), cause(T0 + timedelta(days=10)))
    event = sub.pending_events[-1]
    assert isinstance(event, PlanChanged)
    assert (event.old_price.amount, event.new_price.amount) == (1000, 5000)
    assert event.period == sub.state.current_period
    with pytest.raises(InvalidTransition, match="already on"):
        sub.change_plan(terms("team", price=5000), cause())
    with pytest.raises(InvalidValue, match="currency"):
        sub.change_plan(terms("eu", currency="EUR"), cause())


def test_invalid_transitions_raise() -> None:
    sub = start()
    with pytest.raises(InvalidTransition, match="resume"):
        sub.resume(cause())
    sub.cancel(cause())
    with pytest.raises(InvalidTransition, match="cancel a canceled"):
        sub.cancel(cause())
    with pytest.raises(InvalidTransition):
        sub.pause(cause())


def test_tenant_slot_refuses_a_second_live_subscription() -> None:
    first = start()
    slot = TenantSlot.open("acme", "t1", first.id, cause())
    with pytest.raises(SubscriptionAlreadyActive):
        slot.reassign(first, uuid4(), cause())
    first.cancel(cause())
    second = uuid4()
    slot.reassign(first, second, cause())
    assert slot.state.subscription_id == second


# --- property: the aggregate accepts exactly the transitions of the lifecycle table ---

LIVE = {"trialing", "active", "past_due"}
ALLOWED: dict[str, set[str]] = {
    "end_trial": {"trialing"},
    "cancel_now": LIVE | {"paused"},
    "schedule_cancel": LIVE,
    "change_now": LIVE,
    "pause": {"active"},
    "resume": {"paused"},
    "renew": {"active", "past_due"},
    "mark_past_due": {"active"},
    "recover": {"past_due"},
    "expire": LIVE | {"paused"},
}
AFTER = {
    "end_trial": "active",
    "cancel_now": "canceled",
    "pause": "paused",
    "resume": "active",
    "mark_past_due": "past_due",
    "recover": "active",
    "expire": "expired",
}


def act(sub: Subscription, action: str, step: int) -> None:
    at = sub.state.current_period.end if action == "renew" else T0 + timedelta(hours=step)
    c = cause(max(at, T0))
    if action == "end_trial":
        sub.end_trial(c)
    elif action == "cancel_now":
        sub.cancel(c)
    elif action == "schedule_cancel":
        sub.cancel(c, at_period_end=True)
    elif action == "change_now":
        sub.change_plan(terms(f"plan-{step}"), c)
    elif action == "pause":
        sub.pause(c)
    elif action == "resume":
        sub.resume(c)
    elif action == "renew":
        sub.renew(c)
    elif action == "mark_past_due":
        sub.mark_past_due(c)
    elif action == "recover":
        sub.recover_payment(c)
    else:
        sub.expire(c)


@settings(max_examples=300)
@given(st.booleans(), st.lists(st.sampled_from(sorted(ALLOWED)), max_size=25))
def test_no_invalid_transition_is_accepted(trial: bool, actions: list[str]) -> None:
    sub = start(trial_days=7 if trial else 0)
    for step, action in enumerate(actions):
        before, scheduled = sub.status.value, sub.state.cancel_at_period_end
        allowed = before in ALLOWED[action] and not (action == "schedule_cancel" and scheduled)
        version = sub.version
        try:
            act(sub, action, step)
        except InvalidTransition:
            assert not allowed, f"{action} refused from {before}"
            assert sub.version == version  # nothing recorded
            continue
        assert allowed, f"{action} accepted from {before}"
        ends = action in ("renew", "end_trial") and scheduled  # a cancel scheduled for its end
        expected = "canceled" if ends else AFTER.get(action, before)
        assert sub.status.value == expected
