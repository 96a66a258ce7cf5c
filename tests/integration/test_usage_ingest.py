"""The usage ingest on real stores: one transaction per batch, keys counted once by the
database (inside a batch, across batches, across a period reset and a restart, under
concurrency), hard limits atomic under racing clients, late events in their own buckets."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.bootstrap import System, bootstrap
from adapters.eventstore.usage_keys import UsageKeyStore
from adapters.settings import Settings
from commands.usage.record_usage import UsageEventIn
from domain.clock import SettableClock
from domain.errors import InvalidValue
from domain.quota import QuotaExceeded, UsageRecorded, quota_id
from tests.conftest import StoreSettings

APP = "acme"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def setup_tenants(system: System, tenants: int, limit: int | None, enforcement: str) -> None:
    feature = {"key": "api", "kind": "metered", "limit": limit, "enforcement": enforcement}
    plan = {
        "plan_key": "pro",
        "name": "Pro",
        "base_price": {"amount": 1000, "currency": "USD"},
        "features": [feature],
    }
    assert system.dispatch("define_plan", {"app_id": APP, **plan})["ok"]
    for i in range(tenants):
        reply = system.dispatch(
            "start_subscription", {"app_id": APP, "tenant_id": f"t{i}", "plan_key": "pro"}
        )
        assert reply["ok"], reply


def plain(key: str, tenant: str = "t0", quantity: int = 1, **extra: Any) -> UsageEventIn:
    return UsageEventIn(
        idempotency_key=key, tenant_id=tenant, feature_key="api", quantity=quantity, **extra
    )


def used(system: System, tenant: str = "t0") -> int:
    quota = system.aggregate(quota_id(APP, tenant, "api"))
    return int(quota.state.used)


def head(system: System) -> int:
    return system.ledger.recorder.max_notification_id() or 0


@pytest.fixture
def soft(system: System) -> System:
    setup_tenants(system, 10, 1_000_000, "soft")
    return system


def test_a_batch_of_1000_is_one_transaction_with_one_event_per_quota(soft: System) -> None:
    before = head(soft)
    events = [plain(f"k{i}", f"t{i % 10}", quantity=2) for i in range(1000)]
    answer = soft.usage.record(APP, events)
    assert (answer["accepted"], answer["duplicates"], answer["failed"]) == (1000, 0, 0)
    notes = soft.ledger.recorder.select_notifications(start=before + 1, limit=100)
    assert [n.topic for n in notes] == ["UsageRecorded"] * 10  # one per quota
    assert [n.id for n in notes] == list(range(notes[0].id, notes[0].id + 10))
    assert all(used(soft, f"t{i}") == 200 for i in range(10))
    assert [r["index"] for r in answer["results"]] == list(range(1000))


def test_duplicates_inside_a_batch_and_across_batches_count_once(soft: System) -> None:
    answer = soft.usage.record(APP, [plain("a", quantity=5), plain("a", quantity=7), plain("b")])
    assert (answer["accepted"], answer["duplicates"]) == (2, 1)
    assert [r["status"] for r in answer["results"]] == ["accepted", "duplicate", "accepted"]
    again = soft.usage.record(APP, [plain("b"), plain("c", quantity=3)])
    assert (again["accepted"], again["duplicates"]) == (1, 1)
    assert again["results"][0]["used"] == 9  # a duplicate answers the quota's figures
    assert used(soft) == 9


def test_a_key_counts_once_across_a_period_reset_and_a_restart(
    store_settings: StoreSettings, clock: SettableClock
) -> None:
    settings, schema = store_settings
    first = bootstrap(settings, clock, schema=schema)
    try:
        setup_tenants(first, 1, 100, "hard")
        assert first.usage.record(APP, [plain("once", quantity=4)])["accepted"] == 1
        clock.advance(timedelta(days=40))  # the monthly window ended: the next batch resets it
        late = first.usage.record(APP, [plain("once", quantity=4), plain("new")])
        assert (late["duplicates"], late["accepted"]) == (1, 1)
        assert used(first) == 1
    finally:
        first.close()
    restarted = bootstrap(settings, clock, schema=schema)
    try:
        answer = restarted.usage.record(APP, [plain("once"), plain("new")])
        assert answer["duplicates"] == 2 and used(restarted) == 1
        reply = restarted.dispatch(
            "consume_quota",
            {"app_id": APP, "tenant_id": "t0", "feature_key": "api", "idempotency_key": "once"},
        )
        assert reply["ok"] and reply["result"]["duplicate"]  # the command form asks the same table
    finally:
        restarted.close()


def test_concurrent_batches_with_overlapping_keys_count_each_key_once(soft: System) -> None:
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()

    def send(offset: int) -> None:
        events = [plain(f"k{(offset + i) % 300}", f"t{i % 10}") for i in range(200)]
        answer = soft.usage.record(APP, events)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=send, args=(n * 50,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = sum(a["accepted"] for a in answers)
    keys = {f"k{(n * 50 + i) % 300}" for n in range(6) for i in range(200)}
    assert accepted == len(keys)
    assert sum(a["accepted"] + a["duplicates"] for a in answers) == 6 * 200
    # every key went to tenant t{i % 10} by its position in its batch; totals add up
    assert sum(used(soft, f"t{i}") for i in range(10)) == len(keys)


def test_a_refused_key_records_one_quota_exceeded_and_can_pass_after_a_grant(
    system: System,
) -> None:
    setup_tenants(system, 1, 3, "hard")
    assert system.usage.record(APP, [plain("a", quantity=3)])["accepted"] == 1
    for _ in range(3):
        answer = system.usage.record(APP, [plain("over")])
        assert answer["refused"] == 1 and answer["results"][0]["reason"] == "hard_limit_exceeded"
    history = list(system.ledger.events.get(quota_id(APP, "t0", "api")))
    assert sum(isinstance(e, QuotaExceeded) for e in history) == 1
    grant = {"app_id": APP, "tenant_id": "t0", "feature_key": "api", "amount": 1}
    assert system.dispatch("grant_allowance", {**grant, "grant_id": "g", "reason": "support"})["ok"]
    assert system.usage.record(APP, [plain("over")])["accepted"] == 1 and used(system) == 4


def test_a_typed_or_plain_event_feeding_nothing_fails_and_the_rest_counts(soft: System) -> None:
    answer = soft.usage.record(APP, [plain("x", tenant="nobody"), plain("y")])
    assert (answer["failed"], answer["accepted"]) == (1, 1)
    assert answer["results"][0]["error"]["field"] == "feature_key"


def test_late_events_land_in_their_own_bucket_and_not_in_the_current_window(
    system: System, clock: SettableClock
) -> None:
    setup_tenants(system, 1, 100, "hard")
    clock.set(T0 + timedelta(days=40, hours=3))  # the second window: Feb 1 .. Mar 1
    current = system.usage.record(APP, [plain("now", quantity=2)])
    assert current["accepted"] == 1
    late_at = T0 + timedelta(days=20, hours=5)  # January 21st: the first window
    late = system.usage.record(APP, [plain("late", quantity=7, timestamp=late_at)])
    assert late["accepted"] == 1 and used(system) == 2  # the current window is unchanged
    system.sync()
    days = system.query("usage", app_id=APP, tenant_id="t0", feature="api", granularity="day")
    by_day = {row["bucket_start"][:10]: row["quantity"] for row in days}
    assert by_day == {"2026-01-21": 7, "2026-02-10": 2}
    history = list(system.ledger.events.get(quota_id(APP, "t0", "api")))
    recorded = [e for e in history if isinstance(e, UsageRecorded)]
    assert [len(e.late_facts) for e in recorded] == [0, 1]


@pytest.mark.parametrize(
    ("offset", "rule"),
    [(timedelta(days=-36), "35 days old"), (timedelta(minutes=6), "5 minutes in the future")],
)
def test_times_outside_the_window_are_refused_naming_the_event(
    soft: System, clock: SettableClock, offset: timedelta, rule: str
) -> None:
    events = [plain("ok"), plain("bad", timestamp=clock.now() + offset)]
    with pytest.raises(InvalidValue, match=rule) as error:
        soft.usage.record(APP, events)
    assert error.value.field == "events.1.timestamp"
    assert used(soft) == 0  # nothing of the batch was written


@pytest.mark.postgres
def test_32_racing_clients_never_push_used_past_a_hard_limit(
    pg_url: str, pg_schema: str, clock: SettableClock
) -> None:
    """Four processes' worth of systems (own caches and locks), eight clients each."""
    systems = [
        bootstrap(Settings(database_url=pg_url), clock, schema=pg_schema, deliver_in_process=False)
        for _ in range(4)
    ]
    try:
        setup_tenants(systems[0], 1, 500, "hard")
        outcomes: list[str] = []
        lock = threading.Lock()

        def client(n: int) -> None:
            system = systems[n % 4]
            for i in range(25):
                batch = [plain(f"c{n}-{i}-{j}", quantity=1) for j in range(4)]
                answer = system.usage.record(APP, batch)
                with lock:
                    outcomes.extend(r["status"] for r in answer["results"])

        threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(outcomes) == 32 * 25 * 4  # every attempt answered
        accepted, refused = outcomes.count("accepted"), outcomes.count("refused")
        assert accepted + refused == len(outcomes)
        assert accepted == 500 and used(systems[0]) == 500
    finally:
        for system in systems:
            system.close()


def test_keys_older_than_the_retention_can_be_pruned_never_younger(
    soft: System, clock: SettableClock
) -> None:
    soft.usage.record(APP, [plain(f"k{i}") for i in range(5)])
    keys = soft.usage.keys
    assert isinstance(keys, UsageKeyStore)
    assert keys.prune(clock.now() - timedelta(days=35)) == 0
    clock.advance(timedelta(days=36))
    assert keys.prune(clock.now() - timedelta(days=35)) == 5
    assert keys.counted(APP, ["k0"]) == set()


def test_a_failing_listener_after_the_commit_does_not_fail_the_request(soft: System) -> None:
    def broken(app_id: str, tenants: object) -> None:
        raise RuntimeError("the index is down")

    soft.usage.after_usage.append(broken)
    answer = soft.usage.record(APP, [plain("k")])
    assert answer["accepted"] == 1 and used(soft) == 1
