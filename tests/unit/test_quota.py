from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from adapters.bootstrap import System, bootstrap
from adapters.settings import Settings
from commands.quotas.consume_quota import ConsumeQuota
from domain.base import DomainEvent
from domain.catalog import FeatureSpec, Meter
from domain.clock import SettableClock
from domain.errors import AlreadyExists, InvalidTransition, InvalidValue, NotFound
from domain.metering import aggregate
from domain.quota import (
    MAX_AMOUNT,
    AllowanceGranted,
    GrantRevoked,
    Quota,
    QuotaConfigured,
    QuotaConsumed,
    QuotaDisabled,
    QuotaExceeded,
    QuotaReconfigured,
    QuotaReset,
    SoftLimitReached,
    UsageRecorded,
    quota_id,
)
from tests.factories import T0, cause, embedded_system, ok

SUB = UUID("00000000-0000-0000-0000-000000000001")


def spec(
    key: str = "api-calls",
    limit: int | None = 10,
    enforcement: str = "hard",
    period: str = "month",
    threshold: int = 80,
    kind: str = "metered",
) -> FeatureSpec:
    return FeatureSpec.model_validate(
        {
            "key": key,
            "kind": kind,
            "limit": limit,
            "enforcement": enforcement,
            "period": period,
            "soft_threshold_percent": threshold,
        }
    )


def make(anchor: datetime = T0, **kwargs: Any) -> Quota:
    return Quota.configure("acme", "t1", spec(**kwargs), SUB, anchor, cause(anchor))


def events_of(quota: Quota) -> list[DomainEvent]:
    return quota.collect_events()


def replay(events: list[DomainEvent]) -> Quota:
    aggregate: Any = None
    for event in events:
        aggregate = event.mutate(aggregate)
        aggregate.version = event.originator_version
    return aggregate  # type: ignore[no-any-return]


# --- configuration ---


def test_configure_records_the_window_and_what_projectors_need() -> None:
    quota = make(anchor=datetime(2026, 1, 31, tzinfo=UTC))
    [event] = events_of(quota)
    assert isinstance(event, QuotaConfigured)
    assert event.aggregate_type == "quota"
    assert (event.feature_key, event.limit, event.tenant_id, event.app_id) == (
        "api-calls",
        10,
        "t1",
        "acme",
    )
    assert event.window is not None
    assert event.window.start == datetime(2026, 1, 31, tzinfo=UTC)
    assert event.window.end == datetime(2026, 2, 28, tzinfo=UTC)
    assert quota.id == quota_id("acme", "t1", "api-calls")
    assert quota.state.subscription_id == SUB and quota.state.enabled


def test_only_metered_features_have_quotas() -> None:
    with pytest.raises(InvalidValue) as error:
        Quota.configure("acme", "t1", spec(kind="seats"), SUB, T0, cause())
    assert error.value.field == "features.api-calls.kind"


def test_absolute_quota_has_no_window_and_never_resets() -> None:
    quota = make(period="absolute")
    assert quota.state.window is None
    assert not quota.window_ended(T0 + timedelta(days=10_000))
    with pytest.raises(InvalidTransition, match="never resets"):
        quota.reset(cause(T0 + timedelta(days=400)))


# --- hard limits ---


def test_hard_limit_refuses_and_records_quota_exceeded() -> None:
    quota = make(limit=10)
    events_of(quota)
    assert quota.consume(8, "a", cause()).allowed
    refused = quota.consume(3, "b", cause())
    assert not refused.allowed and refused.reason == "hard_limit_exceeded"
    assert (refused.used, refused.limit, refused.remaining) == (8, 10, 2)
    consumed, exceeded = events_of(quota)
    assert isinstance(consumed, UsageRecorded) and consumed.remaining == 2
    assert isinstance(exceeded, QuotaExceeded)
    assert (exceeded.amount, exceeded.idempotency_key, exceeded.used, exceeded.limit) == (
        3,
        "b",
        8,
        10,
    )
    assert quota.consume(2, "c", cause()).used == 10
    assert not quota.consume(1, "d", cause()).allowed
    assert quota.state.used == 10


def test_a_refused_key_is_not_remembered_so_a_retry_can_succeed_after_a_grant() -> None:
    quota = make(limit=1)
    quota.consume(1, "a", cause())
    assert not quota.consume(1, "b", cause()).allowed
    quota.grant("g1", 1, "support ticket 42", None, cause())
    retry = quota.consume(1, "b", cause())
    assert retry.allowed and not retry.duplicate and retry.used == 2


def test_zero_limit_refuses_everything() -> None:
    quota = make(limit=0)
    assert quota.consume(1, "a", cause()).reason == "hard_limit_exceeded"


# Idempotency is the database's (usage_keys): tests/integration/test_usage_ingest.py.


# --- soft limits ---


def test_soft_limit_warns_once_per_window_and_counts_overage() -> None:
    quota = make(limit=10, enforcement="soft", threshold=80)
    events_of(quota)
    out = quota.consume(7, "a", cause())
    assert out.soft_limit == 8 and not out.soft_limit_reached
    assert [type(e) for e in events_of(quota)] == [UsageRecorded]
    out = quota.consume(1, "b", cause())
    assert out.soft_limit_reached
    consumed, warned = events_of(quota)
    assert isinstance(warned, SoftLimitReached)
    assert (warned.threshold, warned.threshold_units, warned.used, warned.limit) == (80, 8, 8, 10)
    out = quota.consume(5, "c", cause())
    assert out.allowed and (out.used, out.overage, out.remaining) == (13, 3, 0)
    [consumed] = events_of(quota)
    assert isinstance(consumed, UsageRecorded)
    assert (consumed.overage, consumed.overage_added) == (3, 3)
    assert quota.consume(2, "d", cause()).overage == 5
    assert not any(isinstance(e, SoftLimitReached) for e in events_of(quota))
    # the next window warns again
    later = T0 + timedelta(days=31)
    quota.reset(cause(later))
    assert quota.state.overage == 0 and not quota.state.soft_warned
    quota.consume(9, "e", cause(later))
    assert any(isinstance(e, SoftLimitReached) for e in events_of(quota))


def test_hard_quotas_do_not_record_soft_warnings() -> None:
    quota = make(limit=10, enforcement="hard")
    out = quota.consume(10, "a", cause())
    assert out.soft_limit is None
    assert not any(isinstance(e, SoftLimitReached) for e in events_of(quota))


def test_unlimited_is_always_allowed() -> None:
    quota = make(limit=None)
    for i in range(5):
        out = quota.consume(MAX_AMOUNT, f"k{i}", cause())
        assert out.allowed and out.limit is None and out.remaining is None
    assert quota.state.used == 5 * MAX_AMOUNT and quota.state.overage == 0


# --- grants ---


def test_grants_raise_the_effective_limit_and_expire_by_the_clock() -> None:
    quota = make(limit=5)
    expires = T0 + timedelta(days=1)
    quota.grant("g1", 3, "launch week", expires, cause(actor="support"))
    event = events_of(quota)[-1]
    assert isinstance(event, AllowanceGranted)
    assert (event.grant_id, event.amount, event.effective_limit, event.actor) == (
        "g1",
        3,
        8,
        "support",
    )
    assert quota.state.grants["g1"].actor == "support"
    assert quota.consume(8, "a", cause(T0 + timedelta(hours=1))).allowed
    after = T0 + timedelta(days=2)
    assert quota.effective_limit(after) == 5
    out = quota.consume(1, "b", cause(after))
    assert not out.allowed and out.limit == 5 and out.remaining == 0
    # a reset drops the expired grant; a grant without expiry is kept
    quota.grant("g2", 2, "goodwill", None, cause(after))
    quota.reset(cause(T0 + timedelta(days=40)))
    reset = events_of(quota)[-1]
    assert isinstance(reset, QuotaReset) and reset.expired_grants == ["g1"]
    assert set(quota.state.grants) == {"g2"}
    assert quota.effective_limit(T0 + timedelta(days=40)) == 7


def test_grant_validation() -> None:
    quota = make()
    with pytest.raises(InvalidValue) as error:
        quota.grant("g", 1, "  ", None, cause())
    assert error.value.field == "reason"
    with pytest.raises(InvalidValue) as error:
        quota.grant("g", 1, "ok", T0, cause())
    assert error.value.field == "expires_at"
    with pytest.raises(InvalidValue) as error:
        quota.grant("g", 1, "ok", datetime(2027, 1, 1), cause())  # naive
    assert error.value.field == "expires_at"
    with pytest.raises(InvalidValue) as error:
        quota.grant("g", 0, "ok", None, cause())
    assert error.value.field == "amount"
    quota.grant("g", 1, "ok", None, cause())
    with pytest.raises(AlreadyExists) as exists:
        quota.grant("g", 1, "ok", None, cause())
    assert exists.value.field == "grant_id"


def test_revoke_lowers_the_limit_and_unknown_grants_are_not_found() -> None:
    quota = make(limit=5)
    quota.grant("g1", 5, "trial extension", None, cause())
    with pytest.raises(NotFound) as error:
        quota.revoke("nope", "typo", cause())
    assert error.value.field == "grant_id"
    with pytest.raises(InvalidValue):
        quota.revoke("g1", "", cause())
    quota.consume(7, "a", cause())
    quota.revoke("g1", "granted by mistake", cause())
    event = events_of(quota)[-1]
    assert isinstance(event, GrantRevoked)
    assert (event.amount, event.effective_limit, event.used, event.remaining) == (5, 5, 7, 0)
    # counted usage stays counted, but nothing more is accepted
    assert quota.state.used == 7
    assert not quota.consume(1, "b", cause()).allowed


# --- reset and rollover ---


def test_reset_opens_the_window_containing_the_clock_time() -> None:
    anchor = datetime(2026, 1, 31, tzinfo=UTC)
    quota = make(anchor=anchor, limit=10)
    quota.consume(10, "a", cause(anchor))
    assert not quota.window_ended(datetime(2026, 2, 27, 23, tzinfo=UTC))
    now = datetime(2026, 3, 5, tzinfo=UTC)
    assert quota.window_ended(now)
    quota.reset(cause(now))
    event = events_of(quota)[-1]
    assert isinstance(event, QuotaReset)
    assert event.previous_used == 10 and event.previous_window is not None
    assert event.previous_window.start == anchor
    assert event.window.start == datetime(2026, 2, 28, tzinfo=UTC)
    assert event.window.end == datetime(2026, 3, 31, tzinfo=UTC)
    assert quota.state.used == 0 and quota.consume(10, "b", cause(now)).allowed


def test_daily_windows() -> None:
    anchor = datetime(2026, 1, 1, 9, tzinfo=UTC)
    quota = make(anchor=anchor, period="day", limit=1)
    assert quota.state.window is not None and quota.state.window.end == anchor + timedelta(days=1)
    quota.reset(cause(anchor + timedelta(days=3, hours=2)))
    assert quota.state.window is not None
    assert quota.state.window.start == anchor + timedelta(days=3)


# --- disabled ---


def test_disabled_quota_refuses_without_recording_and_can_come_back() -> None:
    quota = make(limit=10)
    quota.consume(2, "a", cause())
    quota.disable(cause())
    assert isinstance(events_of(quota)[-1], QuotaDisabled)
    with pytest.raises(InvalidTransition):
        quota.disable(cause())
    out = quota.consume(1, "b", cause())
    assert not out.allowed and out.reason == "feature_not_in_plan"
    assert events_of(quota) == []
    assert quota.reconfigure(spec(limit=10), SUB, cause())
    assert quota.state.enabled and quota.consume(1, "b", cause()).allowed


# --- reconfigure ---


def test_reconfigure_changes_terms_keeps_usage_and_is_a_no_op_when_unchanged() -> None:
    quota = make(limit=10, enforcement="soft")
    quota.consume(9, "a", cause())
    assert quota.state.soft_warned
    events_of(quota)
    assert not quota.reconfigure(spec(limit=10, enforcement="soft"), SUB, cause())
    assert events_of(quota) == []
    assert quota.reconfigure(spec(limit=100, enforcement="soft"), SUB, cause())
    [event] = events_of(quota)
    assert isinstance(event, QuotaReconfigured)
    assert (event.limit, event.used, event.remaining, event.soft_warned) == (100, 9, 91, False)
    assert quota.state.used == 9 and not quota.state.soft_warned  # warning re-armed
    assert quota.reconfigure(spec(limit=100, period="day"), SUB, cause(T0 + timedelta(days=3)))
    assert quota.state.window is not None
    assert quota.state.window.start == T0 + timedelta(days=3)
    with pytest.raises(InvalidValue):
        quota.reconfigure(spec(key="other"), SUB, cause())


# --- bad input ---


@pytest.mark.parametrize("amount", [0, -1, 1.5, True, "3", None, MAX_AMOUNT + 1])
def test_bad_amounts_are_refused_naming_the_field(amount: Any) -> None:
    quota = make()
    with pytest.raises(InvalidValue) as error:
        quota.consume(amount, "k", cause())
    assert error.value.field == "amount"
    with pytest.raises(InvalidValue) as error:
        quota.grant("g", amount, "reason", None, cause())
    assert error.value.field == "amount"
    assert quota.state.used == 0 and quota.state.grants == {}


@pytest.mark.parametrize("key", ["", "   "])
def test_an_idempotency_key_is_required(key: str) -> None:
    with pytest.raises(InvalidValue) as error:
        make().consume(1, key, cause())
    assert error.value.field == "idempotency_key"


def test_state_survives_replay_and_snapshots() -> None:
    quota = make(limit=10, enforcement="soft")
    quota.grant("g", 2, "why", T0 + timedelta(days=3), cause())
    quota.consume(9, "a", cause())
    quota.consume(9, "b", cause())
    rebuilt = replay(events_of(quota))
    assert rebuilt.state == quota.state
    restored = Quota.Snapshot.take(quota).mutate(None)
    assert restored.state == quota.state


# --- properties ---

START = T0 + timedelta(hours=5)

consume_op = st.tuples(
    st.just("consume"), st.integers(1, 6), st.sampled_from([f"k{i}" for i in range(8)])
)
grant_op = st.tuples(st.just("grant"), st.integers(1, 6), st.one_of(st.none(), st.integers(1, 96)))
revoke_op = st.tuples(st.just("revoke"), st.integers(0, 5), st.none())
reset_op = st.tuples(st.just("reset"), st.none(), st.none())
advance_op = st.tuples(st.just("advance"), st.integers(0, 24 * 20), st.none())
ops = st.lists(
    st.one_of(consume_op, consume_op, grant_op, revoke_op, reset_op, advance_op), max_size=60
)


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(0, 20),
    period=st.sampled_from(["day", "month", "absolute"]),
    enforcement=st.sampled_from(["hard", "soft"]),
    steps=ops,
)
def test_used_never_exceeds_the_hard_limit_and_keys_count_once(
    limit: int, period: str, enforcement: str, steps: list[tuple[str, Any, Any]]
) -> None:
    """A consume is only ever counted if it fits the effective limit at that instant.

    A revoke or an expiring grant may later lower the limit below what was already
    legitimately counted; from then on every consume is refused until the window resets.
    """
    quota = make(anchor=T0, limit=limit, period=period, enforcement=enforcement)
    now = START
    grants = 0
    counted: dict[str, int] = {}
    for op, a, b in steps:
        if op == "advance":
            now += timedelta(hours=a)
            continue
        c = cause(now)
        if op == "grant":
            grants += 1
            expires = None if b is None else now + timedelta(hours=b)
            quota.grant(f"g{grants}", a, "support", expires, c)
        elif op == "revoke":
            ids = sorted(quota.state.grants)
            if ids:
                quota.revoke(ids[a % len(ids)], "support", c)
        elif op == "reset":
            if period == "absolute":
                with pytest.raises(InvalidTransition):
                    quota.reset(c)
            else:
                quota.reset(c)
                counted.clear()
        else:
            if quota.window_ended(now):  # rollover by the clock, as the handler does
                quota.reset(c)
                counted.clear()
            if b in counted:
                continue  # a counted key never reaches the quota: the ingest's database says
            before, overage_before = quota.state.used, quota.state.overage
            out = quota.consume(a, b, c)
            effective = quota.effective_limit(now)
            assert effective is not None
            if out.allowed:
                counted[b] = a
                assert quota.state.used == before + a
                if enforcement == "hard":
                    assert quota.state.used <= effective
                    assert quota.state.overage == 0
                else:
                    # only the part of this consume beyond the limit right now is overage
                    added = quota.state.overage - overage_before
                    assert added == min(a, max(0, quota.state.used - effective))
                    assert 0 <= quota.state.overage <= quota.state.used
            else:
                assert enforcement == "hard" and before + a > effective
                assert quota.state.used == before
                assert isinstance(quota.pending_events[-1], QuotaExceeded)
        assert quota.state.used == sum(counted.values())
    assert replay(quota.collect_events()).state == quota.state


@settings(max_examples=200, deadline=None)
@given(limit=st.integers(0, 30), amounts=st.lists(st.integers(1, 10), max_size=40))
def test_without_revokes_or_expiry_used_stays_within_the_hard_limit(
    limit: int, amounts: list[int]
) -> None:
    quota = make(limit=limit)
    quota.grant("forever", 3, "support", None, cause())
    for i, amount in enumerate(amounts):
        quota.consume(amount, f"k{i}", cause())
        assert quota.state.used <= limit + 3


class QuotaMachine(RuleBasedStateMachine):
    """Random walks over one quota; a simple model tracks what must have been counted."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.quota: Quota | None = None
        self.events: list[DomainEvent] = []
        self.counted: dict[str, int] = {}
        self.grant_no = 0

    def _cause(self) -> Any:
        return cause(self.now)

    def _flush(self) -> None:
        assert self.quota is not None
        self.events.extend(self.quota.collect_events())

    @precondition(lambda self: self.quota is None)
    @rule(
        limit=st.one_of(st.none(), st.integers(0, 12)),
        enforcement=st.sampled_from(["hard", "hard", "soft"]),
        period=st.sampled_from(["day", "month"]),
    )
    def configure(self, limit: int | None, enforcement: str, period: str) -> None:
        self.quota = make(anchor=T0, limit=limit, enforcement=enforcement, period=period)
        self.hard = enforcement == "hard" and limit is not None
        self._flush()

    @precondition(lambda self: self.quota is not None)
    @rule(amount=st.integers(1, 5), key=st.sampled_from([f"k{i}" for i in range(10)]))
    def consume(self, amount: int, key: str) -> None:
        assert self.quota is not None
        if self.quota.window_ended(self.now):
            self.quota.reset(self._cause())
            self.counted.clear()
        if key in self.counted:
            return  # a counted key never reaches the quota: the ingest's database says
        before = self.quota.state.used
        out = self.quota.consume(amount, key, self._cause())
        if out.allowed:
            self.counted[key] = amount
            limit = self.quota.effective_limit(self.now)
            if self.hard:
                assert limit is not None and self.quota.state.used <= limit
        else:
            assert out.reason == "hard_limit_exceeded" and self.quota.state.used == before
        self._flush()

    @precondition(lambda self: self.quota is not None)
    @rule(amount=st.integers(1, 8), hours=st.one_of(st.none(), st.integers(1, 100)))
    def grant(self, amount: int, hours: int | None) -> None:
        assert self.quota is not None
        self.grant_no += 1
        expires = None if hours is None else self.now + timedelta(hours=hours)
        self.quota.grant(f"g{self.grant_no}", amount, "support", expires, self._cause())
        self._flush()

    @precondition(lambda self: self.quota is not None and bool(self.quota.state.grants))
    @rule(pick=st.integers(0, 100))
    def revoke(self, pick: int) -> None:
        assert self.quota is not None
        ids = sorted(self.quota.state.grants)
        self.quota.revoke(ids[pick % len(ids)], "support", self._cause())
        self._flush()

    @precondition(lambda self: self.quota is not None)
    @rule()
    def reset(self) -> None:
        assert self.quota is not None
        self.quota.reset(self._cause())
        self.counted.clear()
        self._flush()

    @precondition(lambda self: self.quota is not None)
    @rule(limit=st.integers(0, 12))
    def change_limit(self, limit: int) -> None:
        assert self.quota is not None
        state = self.quota.state
        new = spec(limit=limit, enforcement=state.enforcement.value, period=state.period.value)
        self.quota.reconfigure(new, SUB, self._cause())
        self.hard = state.enforcement.value == "hard"
        self._flush()

    @rule(hours=st.integers(0, 24 * 40))
    def advance(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @invariant()
    def counters_match_the_model(self) -> None:
        if self.quota is None:
            return
        state = self.quota.state
        assert state.used == sum(self.counted.values())
        assert state.overage >= 0 and state.used >= 0
        if state.limit is None:
            assert state.overage == 0

    @invariant()
    def replay_rebuilds_the_same_state(self) -> None:
        if self.quota is None:
            return
        assert replay(self.events).state == self.quota.state
        assert Quota.Snapshot.take(self.quota).mutate(None).state == self.quota.state


QuotaMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestQuotaMachine = QuotaMachine.TestCase


# --- through the command bus on the embedded store ---

PLAN_FEATURES: list[dict[str, Any]] = [
    {"key": "sso", "kind": "boolean"},
    {"key": "api-calls", "kind": "metered", "limit": 3, "enforcement": "hard"},
    {"key": "exports", "kind": "metered", "limit": 5, "enforcement": "soft"},
    {"key": "projects", "kind": "metered", "limit": 2, "period": "absolute"},
]
PRO_FEATURES: list[dict[str, Any]] = [
    {"key": "api-calls", "kind": "metered", "limit": 10, "enforcement": "hard"},
    {"key": "projects", "kind": "metered", "limit": 20, "period": "absolute"},
    {"key": "storage", "kind": "metered", "limit": 1000, "period": "day"},
]
START_AT = datetime(2026, 1, 31, 12, tzinfo=UTC)


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(START_AT)


@pytest.fixture
def system(clock: SettableClock) -> Iterator[System]:
    built = embedded_system(clock, deliver_in_process=True)
    ok(built.dispatch("define_plan", plan("starter", PLAN_FEATURES)))
    ok(built.dispatch("define_plan", plan("pro", PRO_FEATURES)))
    yield built
    built.close()


def plan(key: str, features: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "app_id": "acme",
        "plan_key": key,
        "name": key.title(),
        "base_price": {"amount": 1000, "currency": "USD"},
        "interval": "month",
        "features": features,
    }


def consume(system: System, feature: str, key: str, amount: int = 1) -> dict[str, Any]:
    return ok(
        system.dispatch(
            "consume_quota",
            {
                "app_id": "acme",
                "tenant_id": "t1",
                "feature_key": feature,
                "amount": amount,
                "idempotency_key": key,
            },
        )
    )


def start(system: System, plan_key: str = "starter", tenant: str = "t1") -> str:
    reply = system.dispatch(
        "start_subscription", {"app_id": "acme", "tenant_id": tenant, "plan_key": plan_key}
    )
    return str(ok(reply)["subscription_id"])


def quota(system: System, feature: str, tenant: str = "t1") -> Any:
    return system.aggregate(quota_id("acme", tenant, feature))


def test_starting_a_subscription_creates_one_quota_per_metered_feature(system: System) -> None:
    subscription_id = start(system)
    assert quota(system, "sso") is None
    api = quota(system, "api-calls")
    assert api.state.limit == 3 and str(api.state.subscription_id) == subscription_id
    assert api.state.anchor == START_AT
    assert api.state.window.end == datetime(2026, 2, 28, 12, tzinfo=UTC)
    assert quota(system, "exports").state.enforcement.value == "soft"
    assert quota(system, "projects").state.window is None
    sub_event: Any = next(iter(system.ledger.events.get(UUID(subscription_id))))
    quota_event: Any = next(iter(system.ledger.events.get(api.id)))
    assert quota_event.correlation_id == sub_event.correlation_id


def test_the_subscription_and_its_quotas_are_saved_in_one_transaction(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Quota.configure.__func__  # type: ignore[attr-defined]
    calls: list[str] = []

    def failing(cls: type[Quota], *args: Any) -> Quota:
        calls.append(args[2].key)
        if len(calls) == 2:
            raise InvalidValue("boom", field="features")
        return original(cls, *args)  # type: ignore[no-any-return]

    monkeypatch.setattr(Quota, "configure", classmethod(failing))
    reply = system.dispatch(
        "start_subscription",
        {"app_id": "acme", "tenant_id": "t1", "plan_key": "starter", "subscription_id": str(SUB)},
    )
    assert reply["error"]["code"] == "invalid_value" and len(calls) == 2
    assert system.aggregate(SUB) is None
    assert quota(system, calls[0]) is None


def test_consume_to_the_limit_then_refuse_and_save_the_refusal(system: System) -> None:
    start(system)
    for i in range(3):
        out = consume(system, "api-calls", f"k{i}")
        assert out["allowed"] and out["used"] == i + 1
    refused = consume(system, "api-calls", "k3")
    assert refused["allowed"] is False and refused["reason"] == "hard_limit_exceeded"
    assert (refused["used"], refused["limit"], refused["remaining"]) == (3, 3, 0)
    assert set(refused) >= {
        "allowed",
        "duplicate",
        "used",
        "limit",
        "remaining",
        "overage",
        "soft_limit",
        "reason",
        "feature_key",
        "window",
    }
    history = list(system.ledger.events.get(quota_id("acme", "t1", "api-calls")))
    assert isinstance(history[-1], QuotaExceeded)
    dup = consume(system, "api-calls", "k1")
    assert dup["duplicate"] and dup["used"] == 3


def test_soft_quota_through_the_bus_reports_overage(system: System) -> None:
    start(system)
    consume(system, "exports", "a", 4)
    out = consume(system, "exports", "b", 3)
    assert out["allowed"] and out["overage"] == 2 and out["soft_limit_reached"]
    history = list(system.ledger.events.get(quota_id("acme", "t1", "exports")))
    assert sum(isinstance(e, SoftLimitReached) for e in history) == 1


def test_bad_or_unknown_input_gets_a_named_error(system: System) -> None:
    start(system)
    reply = system.dispatch(
        "consume_quota", {"app_id": "acme", "tenant_id": "t1", "feature_key": "api-calls"}
    )
    assert reply["error"]["code"] == "validation_error"
    assert reply["error"]["details"][0]["field"] == "idempotency_key"
    reply = system.dispatch(
        "consume_quota",
        {"app_id": "acme", "tenant_id": "t1", "feature_key": "sso", "idempotency_key": "x"},
    )
    assert reply["error"]["code"] == "not_found"
    assert reply["error"]["details"] == [{"field": "feature_key"}]
    reply = system.dispatch(
        "consume_quota",
        {
            "app_id": "acme",
            "tenant_id": "t1",
            "feature_key": "api-calls",
            "idempotency_key": "x",
            "amount": 0,
        },
    )
    assert reply["error"]["details"][0]["field"] == "amount"
    reply = system.dispatch(
        "reset_quota", {"app_id": "acme", "tenant_id": "t1", "feature_key": "projects"}
    )
    assert reply["error"]["code"] == "invalid_transition"


def test_a_plan_change_now_adjusts_limits_adds_and_disables_quotas(
    system: System, clock: SettableClock
) -> None:
    subscription_id = start(system)
    for i in range(3):
        consume(system, "api-calls", f"k{i}")
    clock.advance(timedelta(days=5))
    ok(
        system.dispatch(
            "change_plan",
            {"app_id": "acme", "subscription_id": subscription_id, "plan_key": "pro"},
        )
    )
    out = consume(system, "api-calls", "k3")
    assert out["allowed"] and (out["used"], out["limit"]) == (4, 10)
    assert quota(system, "projects").state.limit == 20
    storage = quota(system, "storage")
    assert storage.state.limit == 1000 and storage.state.anchor == START_AT
    disabled = consume(system, "exports", "e1")
    assert disabled["allowed"] is False and disabled["reason"] == "feature_not_in_plan"
    assert quota(system, "exports").state.enabled is False


def test_a_scheduled_change_applies_to_quotas_at_renewal(
    system: System, clock: SettableClock
) -> None:
    subscription_id = start(system)
    ok(
        system.dispatch(
            "change_plan",
            {
                "app_id": "acme",
                "subscription_id": subscription_id,
                "plan_key": "pro",
                "timing": "period_end",
            },
        )
    )
    assert quota(system, "api-calls").state.limit == 3
    clock.set(datetime(2026, 2, 28, 12, tzinfo=UTC))
    ok(
        system.dispatch(
            "renew_subscription", {"app_id": "acme", "subscription_id": subscription_id}
        )
    )
    assert quota(system, "api-calls").state.limit == 10
    assert quota(system, "storage") is not None
    assert quota(system, "exports").state.enabled is False


def test_a_new_subscription_reconfigures_the_tenants_existing_quotas(system: System) -> None:
    first = start(system, "pro")
    ok(system.dispatch("cancel_subscription", {"app_id": "acme", "subscription_id": first}))
    second = start(system, "starter")
    api = quota(system, "api-calls")
    assert api.state.limit == 3 and str(api.state.subscription_id) == second
    assert quota(system, "storage").state.enabled is False
    assert quota(system, "exports").state.enabled


def test_rollover_by_moving_the_clock(system: System, clock: SettableClock) -> None:
    start(system)
    for i in range(3):
        consume(system, "api-calls", f"k{i}")
    assert not consume(system, "api-calls", "k3")["allowed"]
    clock.set(datetime(2026, 2, 28, 12, tzinfo=UTC))
    again = consume(system, "api-calls", "k0")  # a key counts once, across windows too
    assert again["duplicate"] and again["used"] == 0
    out = consume(system, "api-calls", "k4")
    assert out["allowed"] and not out["duplicate"] and out["used"] == 1
    assert out["window"] == {"start": "2026-02-28T12:00:00Z", "end": "2026-03-31T12:00:00Z"}
    history = list(system.ledger.events.get(quota_id("acme", "t1", "api-calls")))
    assert isinstance(history[-2], QuotaReset) and history[-2].previous_used == 3
    # an absolute quota does not roll over
    consume(system, "projects", "p1", 2)
    clock.advance(timedelta(days=400))
    assert not consume(system, "projects", "p2")["allowed"]


def test_grant_revoke_reset_and_configure_commands(system: System, clock: SettableClock) -> None:
    start(system)
    base = {"app_id": "acme", "tenant_id": "t1", "feature_key": "api-calls"}
    granted = ok(
        system.dispatch(
            "grant_allowance",
            {
                **base,
                "amount": 2,
                "reason": "launch",
                "expires_at": "2026-02-10T00:00:00Z",
                "actor": "support@acme",
            },
        )
    )
    assert granted["effective_limit"] == 5 and granted["grants"][0]["actor"] == "support@acme"
    reply = system.dispatch("grant_allowance", {**base, "amount": 2, "reason": " "})
    assert reply["error"]["details"][0]["field"] == "reason"
    reply = system.dispatch(
        "grant_allowance",
        {**base, "amount": 2, "reason": "x", "expires_at": "2026-02-10T00:00:00"},
    )
    assert reply["error"]["details"][0]["field"] == "expires_at"
    for i in range(5):
        assert consume(system, "api-calls", f"k{i}")["allowed"]
    reply = system.dispatch("revoke_grant", {**base, "grant_id": "nope", "reason": "x"})
    assert reply["error"]["code"] == "not_found"
    assert reply["error"]["details"] == [{"field": "grant_id"}]
    revoked = ok(
        system.dispatch(
            "revoke_grant", {**base, "grant_id": granted["grant_id"], "reason": "abuse"}
        )
    )
    assert revoked["effective_limit"] == 3 and revoked["remaining"] == 0
    reset = ok(system.dispatch("reset_quota", base))
    assert reset["used"] == 0
    configured = ok(
        system.dispatch(
            "configure_quota",
            {**base, "limit": 50, "enforcement": "soft", "period": "day", "meter": "max"},
        )
    )
    assert (configured["limit"], configured["enforcement"], configured["period"]) == (
        50,
        "soft",
        "day",
    )
    created = ok(
        system.dispatch(
            "configure_quota", {**base, "tenant_id": "t9", "feature_key": "seats", "limit": 1}
        )
    )
    assert created["version"] == 1 and created["window"]["start"] == "2026-01-31T12:00:00Z"


def test_thirty_two_threads_race_on_one_hard_quota(tmp_path: Path) -> None:
    clock = SettableClock(START_AT)
    system = bootstrap(Settings(database_url=f"sqlite:///{tmp_path / 'race.db'}"), clock)
    try:
        ok(
            system.dispatch(
                "configure_quota",
                {"app_id": "acme", "tenant_id": "t1", "feature_key": "api-calls", "limit": 40},
            )
        )
        threads, per_thread = 32, 4
        accepted: list[int] = []
        refused: list[int] = []
        errors: list[Exception] = []
        lock = threading.Lock()
        barrier = threading.Barrier(threads)

        def worker(n: int) -> None:
            barrier.wait()
            for i in range(per_thread):
                command = ConsumeQuota(
                    app_id="acme",
                    tenant_id="t1",
                    feature_key="api-calls",
                    idempotency_key=f"w{n}-{i}-{uuid4().hex[:6]}",
                )
                try:
                    result = system.handle(command).result
                except Exception as error:
                    with lock:
                        errors.append(error)
                    continue
                with lock:
                    (accepted if result["allowed"] else refused).append(1)

        workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        assert errors == []
        assert len(accepted) + len(refused) == threads * per_thread
        state = system.aggregate(quota_id("acme", "t1", "api-calls")).state
        assert state.used <= 40
        assert len(accepted) == state.used == 40
    finally:
        system.close()


# --- meters (domain/metering.py): `used` follows the quota's meter ---


def metered(meter: str, limit: int | None = None, enforcement: str = "soft", **terms: Any) -> Quota:
    quota = Quota.configure(
        "acme",
        "t1",
        FeatureSpec.model_validate(
            {
                "key": "api-calls",
                "kind": "metered",
                "limit": limit,
                "enforcement": enforcement,
                "meter": meter,
                **terms,
            }
        ),
        SUB,
        T0,
        cause(),
    )
    return quota


@pytest.mark.parametrize(
    ("meter", "used"),
    [("sum", 13), ("count", 3), ("max", 5), ("unique_count", 2), ("latest", 5)],
)
def test_five_three_five_uses_what_each_meter_names(meter: str, used: int) -> None:
    # issue 8: posting 5, 3, 5 reported 13 for every meter; expected 3, 5, 2, 5 (and sum 13)
    quota = metered(meter)
    outcomes = [quota.consume(v, f"k{i}", cause()) for i, v in enumerate([5, 3, 5])]
    assert all(out.allowed for out in outcomes)
    assert quota.state.used == outcomes[-1].used == used
    consumed = [e for e in events_of(quota) if isinstance(e, UsageRecorded)]
    assert [e.meter.value for e in consumed] == [meter] * 3
    assert consumed[-1].used == used


@settings(max_examples=150, deadline=None)
@given(
    meter=st.sampled_from(list(Meter)),
    values=st.lists(st.integers(1, 8), max_size=30),
    snapshot_at=st.integers(0, 30),
)
def test_used_is_the_meter_of_the_counted_values(
    meter: Meter, values: list[int], snapshot_at: int
) -> None:
    quota = metered(meter.value)
    recorded: list[DomainEvent] = []
    for i, value in enumerate(values):
        if i == snapshot_at:  # a snapshot mid-window keeps the distinct values and latest
            recorded += quota.collect_events()
            restored = Quota.Snapshot.take(quota).mutate(None)
            assert isinstance(restored, Quota) and restored.state == quota.state
            quota = restored
        quota.consume(value, f"k{i}", cause(T0 + timedelta(minutes=i)))
        assert quota.state.used == aggregate(meter, values[: i + 1])
    assert replay([*recorded, *quota.collect_events()]).state == quota.state


@settings(max_examples=150, deadline=None)
@given(
    meter=st.sampled_from(list(Meter)),
    limit=st.integers(0, 12),
    values=st.lists(st.integers(1, 8), max_size=30),
)
def test_a_hard_limit_holds_under_every_meter(meter: Meter, limit: int, values: list[int]) -> None:
    quota = metered(meter.value, limit=limit, enforcement="hard")
    counted: list[int] = []
    for i, value in enumerate(values):
        would_be = aggregate(meter, [*counted, value])
        out = quota.consume(value, f"k{i}", cause())
        assert out.allowed == (would_be <= limit)
        if out.allowed:
            counted.append(value)
        assert quota.state.used == aggregate(meter, counted) <= limit
        assert quota.state.overage == 0


def test_latest_follows_the_clock_not_the_order_of_arrival() -> None:
    quota = metered("latest")
    quota.consume(4, "a", cause(T0 + timedelta(hours=2)))
    quota.consume(9, "b", cause(T0 + timedelta(hours=1)))  # earlier by the clock: not latest
    assert quota.state.used == 4
    quota.consume(7, "c", cause(T0 + timedelta(hours=2)))  # same time, later event: latest
    assert quota.state.used == 7


def test_overage_follows_used_and_falls_back_under_latest() -> None:
    quota = metered("latest", limit=10)
    assert quota.consume(15, "a", cause()).overage == 5
    assert quota.consume(3, "b", cause()).overage == 0
    quota = metered("max", limit=10)
    assert [quota.consume(v, f"k{v}", cause()).overage for v in (12, 11, 14)] == [2, 2, 4]


def test_distinct_values_reset_with_the_window() -> None:
    quota = metered("unique_count", period="day")
    for i, value in enumerate([5, 3, 5]):
        quota.consume(value, f"k{i}", cause())
    assert quota.state.distinct_values == {3, 5} and quota.state.latest_at == T0
    quota.reset(cause(T0 + timedelta(days=1)))
    assert quota.state.distinct_values == set() and quota.state.latest_at is None
    assert quota.consume(5, "k9", cause(T0 + timedelta(days=1))).used == 1


def test_other_meters_remember_no_values() -> None:
    for meter in ("sum", "count", "max", "latest"):
        quota = metered(meter)
        for i in range(20):
            quota.consume(i + 1, f"k{i}", cause())
        assert quota.state.distinct_values == set()


def test_distinct_values_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("domain.usage_batch.MAX_DISTINCT_VALUES", 3)
    quota = metered("unique_count")
    for value in (1, 2, 3):
        quota.consume(value, f"k{value}", cause())
    version = quota.version
    refused = quota.consume(4, "k4", cause())
    assert not refused.allowed and refused.reason == "distinct_values_exceeded"
    assert quota.version == version and refused.used == 3  # nothing recorded
    again = quota.consume(2, "k5", cause())  # a value already counted still counts
    assert again.allowed and again.used == 3 and quota.version == version + 1


def test_a_meter_change_carries_used_over_and_applies_from_the_next_consume() -> None:
    quota = metered("unique_count")
    for i, value in enumerate([5, 3, 5]):
        quota.consume(value, f"k{i}", cause())
    assert quota.reconfigure(
        FeatureSpec.model_validate({"key": "api-calls", "kind": "metered", "meter": "max"}),
        SUB,
        cause(),
    )
    assert (quota.state.used, quota.state.distinct_values) == (2, set())
    assert quota.consume(4, "k3", cause()).used == 4


def test_consumes_recorded_before_meters_load_as_sums() -> None:
    quota = metered("max")
    created = events_of(quota)[0]
    stored = {  # a QuotaConsumed as recorded before it named its meter (before UsageRecorded)
        **created.model_dump(mode="json", include={"originator_id", "timestamp", "app_id"}),
        "originator_version": 2,
        "tenant_id": "t1",
        "feature_key": created.feature_key,
        "amount": 5,
        "idempotency_key": "a",
        "used": 5,
        "limit": None,
        "remaining": None,
        "overage": 0,
        "window": created.model_dump(mode="json")["window"],
    }
    old = QuotaConsumed.model_validate(stored)
    assert old.meter is Meter.SUM
    loaded = replay([created, old])
    assert loaded.state.used == 5 and loaded.state.distinct_values == set()
    assert loaded.consume(3, "b", cause()).used == 5  # the quota's own meter from now on
    snapshot = Quota.Snapshot.take(loaded).model_dump(mode="json")
    for field in ("distinct_values", "latest_at"):  # a snapshot taken before these fields
        del snapshot["state"]["state"][field]
    assert Quota.Snapshot.model_validate(snapshot).mutate(None).state.used == 5
