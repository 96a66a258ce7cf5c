"""One contract for the event store, run on SQLite and on real PostgreSQL.

Whatever backs the ledger must: append and load aggregates (now and at past versions),
snapshot without changing what a load returns, refuse concurrent writes to one aggregate,
run a command_id exactly once, upcast old event schemas, and answer "as of" questions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, ClassVar, cast
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from adapters.bootstrap import System, open_stores
from adapters.eventstore.history import state_as_of
from adapters.eventstore.ledger import Ledger
from adapters.eventstore.mapper import SCHEMA_KEY, encode_event_state
from commands.bus import CommandIdReused
from commands.plans.define_plan import DefinePlan
from commands.receipt import CommandAccepted
from commands.subscriptions.cancel_subscription import CancelSubscription
from commands.subscriptions.pause_subscription import PauseSubscription
from commands.subscriptions.start_subscription import StartSubscription
from domain.base import (
    AGGREGATE_TYPES,
    EVENT_TYPES,
    Aggregate,
    AggregateState,
    Cause,
    CreatedEvent,
    DomainEvent,
)
from domain.plan import Plan, PlanDefined, PlanRevised
from domain.subscription import Status, SubscriptionStarted
from tests.conftest import T0, StoreSettings
from tests.factories import cause, terms

# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def open_store(store_settings: StoreSettings) -> Iterator[Callable[..., Ledger]]:
    """Opens ledgers on this test's fresh store (each with its own cache), closing them after."""
    settings, schema = store_settings
    opened: list[Ledger] = []

    def open_(**overrides: Any) -> Ledger:
        ledger, views, _ = open_stores(settings.model_copy(update=overrides), schema)
        views.close()  # the ledger alone, migrated (PostgreSQL creates no table at open)
        opened.append(ledger)
        return ledger

    yield open_
    for ledger in opened:
        ledger.close()


def stored_topics(ledger: Ledger) -> list[str]:
    """Every event's stored name, in position order."""
    return [n.topic for n in ledger.recorder.select_notifications(start=1, limit=100_000)]


def replay(ledger: Ledger, aggregate_id: UUID) -> Any:
    """The aggregate folded from its events alone, never from a snapshot or a cache."""
    aggregate = None
    for event in ledger.events.get(aggregate_id):
        aggregate = cast(Any, event).mutate(aggregate)
    return aggregate


def same_aggregate(a: Any, b: Any) -> bool:
    return (type(a), a.id, a.version, a.created_on, a.modified_on, a.state) == (
        type(b),
        b.id,
        b.version,
        b.created_on,
        b.modified_on,
        b.state,
    )


def define_plan_command(**fields: Any) -> DefinePlan:
    return DefinePlan(
        app_id="acme",
        plan_key="pro",
        name="Pro",
        base_price={"amount": 1000, "currency": "USD"},
        **fields,
    )


def start_command(tenant: str = "t-1", command_id: str | None = "x") -> StartSubscription:
    return StartSubscription(app_id="acme", tenant_id=tenant, plan_key="pro", command_id=command_id)


def run_in_threads(count: int, work: Callable[[], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run `work` in `count` threads released together; their results and errors."""
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def target() -> None:
        barrier.wait()
        try:
            outcome = work()
        except BaseException as error:
            with lock:
                errors.append(error)
        else:
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer thread hung"
    return results, errors


# --- append and load ---------------------------------------------------------------------------


def test_appended_events_load_back_as_the_same_aggregate(open_store: Callable[..., Ledger]) -> None:
    writer = open_store()
    plan = Plan.define("acme", terms(price=1000), cause(command_id="c-1"))
    plan.revise(terms(price=2000), cause(T0 + timedelta(days=1)))
    writer.save(plan)

    loaded = open_store().get(plan.id)  # a second ledger: from the store, not a cache

    assert same_aggregate(loaded, plan)
    assert loaded.version == 2
    assert [t.base_price.amount for t in loaded.state.versions] == [1000, 2000]
    first, second = open_store().events.get(plan.id)
    assert isinstance(first, PlanDefined)
    assert isinstance(second, PlanRevised)
    assert (first.actor, first.command_id, first.correlation_id) == ("tester", "c-1", "corr-1")
    assert first.timestamp == T0
    assert second.timestamp == T0 + timedelta(days=1)
    assert stored_topics(writer) == ["PlanDefined", "PlanRevised"]


def test_loading_a_missing_aggregate_gives_none(open_store: Callable[..., Ledger]) -> None:
    assert open_store().get(uuid4()) is None


def test_an_aggregate_loads_at_an_older_version(open_store: Callable[..., Ledger]) -> None:
    ledger = open_store()
    plan = Plan.define("acme", terms(price=1000), cause())
    ledger.save(plan)
    for price in (2000, 3000):
        plan.revise(terms(price=price), cause())
        ledger.save(plan)

    old = open_store().get(plan.id, version=2)

    assert old.version == 2
    assert [t.base_price.amount for t in old.state.versions] == [1000, 2000]
    assert ledger.get(plan.id).version == 3  # the latest is untouched by the past load


# --- snapshots ---------------------------------------------------------------------------------


def test_snapshots_every_interval_and_loads_equal_a_full_replay(
    open_store: Callable[..., Ledger],
) -> None:
    ledger = open_store(snapshot_interval=5)
    plan = Plan.define("acme", terms(price=100), cause())
    ledger.save(plan)
    for revision in range(1, 13):
        plan.revise(terms(price=100 + revision), cause(T0 + timedelta(hours=revision)))
        ledger.save(plan)
    assert plan.version == 13

    assert ledger.snapshots is not None
    snapshots = list(ledger.snapshots.get(plan.id))
    assert [s.originator_version for s in snapshots] == [5, 10]
    assert same_aggregate(
        cast(Any, snapshots[-1]).mutate(None), open_store().get(plan.id, version=10)
    )

    fresh = open_store(snapshot_interval=5)
    from_snapshot = fresh.get(plan.id)
    from_events = replay(fresh, plan.id)
    assert same_aggregate(from_snapshot, from_events)
    assert same_aggregate(from_snapshot, plan)
    assert from_snapshot.terms().base_price.amount == 112
    # A version between snapshots: snapshot 10 plus events 11 and 12.
    at_12 = fresh.get(plan.id, version=12)
    assert [t.base_price.amount for t in at_12.state.versions][-1] == 111
    assert at_12.version == 12


# --- optimistic concurrency --------------------------------------------------------------------


def test_concurrent_writers_of_one_aggregate_exactly_one_wins(
    open_store: Callable[..., Ledger],
) -> None:
    ledger = open_store()
    plan = Plan.define("acme", terms(price=1000), cause())
    ledger.save(plan)
    loaded_both = threading.Barrier(2)

    def revise_and_save() -> int:
        mine = ledger.get(plan.id)
        loaded_both.wait(timeout=30)  # both have loaded version 1 before either saves
        version = mine.revise(terms(price=2000), cause())
        ledger.save(mine)
        return int(version)

    results, errors = run_in_threads(2, revise_and_save)

    assert results == [2]
    assert len(errors) == 1
    assert isinstance(errors[0], IntegrityError), repr(errors[0])
    assert stored_topics(open_store()) == ["PlanDefined", "PlanRevised"]
    assert open_store().get(plan.id).version == 2


# --- command_id: exactly once ------------------------------------------------------------------


def test_a_repeated_command_id_runs_once_and_replies_duplicate(system: System) -> None:
    system.handle(define_plan_command())

    first = system.handle(start_command(command_id="x"))
    second = system.handle(start_command(command_id="x"))

    assert first.duplicate is False
    assert second.duplicate is True
    assert second.result == first.result
    assert stored_topics(system.ledger).count(SubscriptionStarted.NAME) == 1
    reply = system.dispatch("start_subscription", start_command().model_dump())
    replay = {"ok": True, "result": first.result, "duplicate": True}
    assert reply == {**replay, "position": reply["position"]}
    assert reply["position"] >= (first.position or 0) > 0  # read your writes: the head or later


def test_one_command_id_from_eight_threads_runs_exactly_once(system: System) -> None:
    system.handle(define_plan_command())
    command = start_command(command_id="x")

    results, errors = run_in_threads(8, lambda: system.handle(command))

    topics = stored_topics(system.ledger)
    assert topics.count(SubscriptionStarted.NAME) == 1
    assert topics.count(CommandAccepted.NAME) == 1
    assert errors == [], (
        "every concurrent copy of a command_id must get the first result (duplicate=True), "
        f"not an error: {errors!r}"
    )
    assert sorted(r.duplicate for r in results) == [False] + [True] * 7
    assert all(r.result == results[0].result for r in results)


def test_a_command_id_reused_for_other_fields_is_refused(system: System) -> None:
    system.handle(define_plan_command())
    system.handle(start_command(tenant="t-1", command_id="x"))

    with pytest.raises(CommandIdReused) as refused:
        system.handle(start_command(tenant="t-2", command_id="x"))
    assert refused.value.code == "command_id_reused"

    reply = system.dispatch("start_subscription", start_command(tenant="t-2").model_dump())
    assert reply["ok"] is False
    assert reply["error"]["code"] == "command_id_reused"
    assert stored_topics(system.ledger).count(SubscriptionStarted.NAME) == 1


# --- upcasting ---------------------------------------------------------------------------------


class NotebookState(AggregateState):
    notes: list[tuple[str, int]] = []


class NotebookOpened(CreatedEvent):
    AGGREGATE_TYPE: ClassVar[str] = "contract_test_notebook"
    NAME: ClassVar[str] = "ContractTestNotebookOpened"

    def apply(self, aggregate: Any) -> None:
        aggregate.state = NotebookState(app_id=self.app_id)


def _v1_to_v2(state: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 had `text`; schema 2 calls it `note` and adds `priority` (default 0)."""
    state = dict(state)
    state["note"] = state.pop("text")
    state.setdefault("priority", 0)
    return state


class NoteAdded(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "contract_test_notebook"
    NAME: ClassVar[str] = "ContractTestNoteAdded"
    SCHEMA_VERSION: ClassVar[int] = 2
    UPCASTERS: ClassVar[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {1: _v1_to_v2}

    note: str
    priority: int

    def apply(self, aggregate: Any) -> None:
        aggregate.state.notes.append((self.note, self.priority))


class Notebook(Aggregate[NotebookState]):
    TYPE: ClassVar[str] = "contract_test_notebook"
    State = NotebookState

    @classmethod
    def open(cls, notebook_id: UUID, c: Cause) -> Notebook:
        return cls._create(NotebookOpened, notebook_id, c, app_id="acme")

    def add(self, note: str, priority: int, c: Cause) -> None:
        self._trigger(NoteAdded, c, note=note, priority=priority)


# Defining the classes registered them globally; keep them registered only while a test uses
# them, so nothing else (docs, projections, relays) ever sees these test-only types.
for _event in (NotebookOpened, NoteAdded):
    del EVENT_TYPES[_event.NAME]
del AGGREGATE_TYPES[Notebook.TYPE]


@pytest.fixture
def notebook_types() -> Iterator[None]:
    EVENT_TYPES.update({NotebookOpened.NAME: NotebookOpened, NoteAdded.NAME: NoteAdded})
    AGGREGATE_TYPES[Notebook.TYPE] = Notebook
    yield
    for name in (NotebookOpened.NAME, NoteAdded.NAME):
        del EVENT_TYPES[name]
    del AGGREGATE_TYPES[Notebook.TYPE]


@pytest.mark.usefixtures("notebook_types")
def test_old_event_schemas_are_upcast_on_load(open_store: Callable[..., Ledger]) -> None:
    ledger = open_store()
    notebook = Notebook.open(uuid4(), cause())
    ledger.save(notebook)

    # Write version 2 and 3 as schema-1 rows, the way an older release stored them.
    for version, text in ((2, "written by v1"), (3, "also by v1")):
        current = NoteAdded(
            originator_id=notebook.id,
            originator_version=version,
            timestamp=T0,
            app_id="acme",
            note=text,
            priority=9,
        )
        state = encode_event_state(current)
        state[SCHEMA_KEY] = 1
        state["text"] = state.pop("note")
        del state["priority"]
        if version == 3:
            del state[SCHEMA_KEY]  # rows from before schema versions were recorded at all
        ledger.recorder.insert_events(
            [
                StoredEvent(
                    originator_id=notebook.id,
                    originator_version=version,
                    topic=NoteAdded.NAME,
                    state=ledger.mapper.transcoder.encode(state),
                )
            ]
        )

    loaded = open_store().get(notebook.id)
    assert loaded.version == 3
    assert loaded.state.notes == [("written by v1", 0), ("also by v1", 0)]

    # New events are written in the current schema and load unchanged.
    loaded.add("written by v2", 5, cause())
    ledger.save(loaded)
    [row] = ledger.recorder.select_events(notebook.id, gt=3)
    assert ledger.mapper.transcoder.decode(row.state)[SCHEMA_KEY] == 2
    assert open_store().get(notebook.id).state.notes[-1] == ("written by v2", 5)


# --- time travel -------------------------------------------------------------------------------


def test_state_as_of_returns_the_state_at_a_past_instant(system: System) -> None:
    system.handle(define_plan_command())
    started = system.handle(start_command(command_id=None)).result
    subscription_id = UUID(started["subscription_id"])
    system.clock.advance(timedelta(days=10))  # type: ignore[attr-defined]
    system.handle(PauseSubscription(app_id="acme", subscription_id=subscription_id))
    system.clock.advance(timedelta(days=10))  # type: ignore[attr-defined]
    system.handle(CancelSubscription(app_id="acme", subscription_id=subscription_id))

    def status_at(instant: Any) -> Status | None:
        past = state_as_of(system.ledger, subscription_id, instant)
        return None if past is None else past.status

    assert status_at(T0 - timedelta(seconds=1)) is None
    assert status_at(T0) is Status.ACTIVE
    assert status_at(T0 + timedelta(days=5)) is Status.ACTIVE
    assert status_at(T0 + timedelta(days=10)) is Status.PAUSED
    assert status_at(T0 + timedelta(days=15)) is Status.PAUSED
    assert status_at(T0 + timedelta(days=25)) is Status.CANCELED
    assert system.aggregate(subscription_id, as_of=T0 + timedelta(days=5)).version == 1
    assert system.aggregate(subscription_id).status is Status.CANCELED
