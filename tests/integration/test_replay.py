"""Replay rebuilds a read model aside and switches over; live and replayed models agree."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from adapters.bootstrap import System, bootstrap
from adapters.readmodels.replay import replay
from adapters.readmodels.runner import ProjectionRunner
from commands.plans.define_plan import DefinePlan
from commands.plans.revise_plan import RevisePlan
from domain.clock import SettableClock
from projections.base import Projector, ViewTx
from projections.envelope import EventEnvelope
from tests.conftest import T0, StoreSettings


class PlanEventCounts(Projector):
    """Counts plan events per app and type (a minimal read model for replay tests)."""

    NAME: ClassVar[str] = "test_plan_counts"
    TABLES: ClassVar[dict[str, tuple[list[str], list[str]]]] = {
        "test_plan_counts": (["app_id TEXT", "type TEXT", "n BIGINT NOT NULL"], ["app_id", "type"])
    }
    HANDLES: ClassVar[frozenset[str]] = frozenset({"PlanDefined", "PlanRevised"})

    def __init__(self) -> None:
        self.rebuilt = 0

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        tx.increment("test_plan_counts", {"app_id": event.app_id, "type": event.type}, {"n": 1})

    def after_rebuild(self) -> None:
        self.rebuilt += 1


@pytest.fixture
def quiet_system(store_settings: StoreSettings) -> Iterator[System]:
    settings, schema = store_settings
    system = bootstrap(settings, SettableClock(T0), schema=schema, deliver_in_process=False)
    try:
        yield system
    finally:
        system.close()


def rows(system: System) -> list[dict[str, object]]:
    return system.views.query(
        "SELECT app_id, type, n FROM {test_plan_counts} ORDER BY app_id, type"
    )


def define_plans(system: System, app_id: str, revisions: int) -> None:
    terms = {"plan_key": "pro", "name": "Pro", "base_price": {"amount": 100, "currency": "EUR"}}
    system.handle(DefinePlan(app_id=app_id, **terms))  # type: ignore[arg-type]
    for _ in range(revisions):
        system.handle(RevisePlan(app_id=app_id, **terms))  # type: ignore[arg-type]


def test_replay_equals_live(quiet_system: System) -> None:
    live = PlanEventCounts()
    runner = ProjectionRunner(quiet_system.ledger.recorder, quiet_system.views, [live])
    runner.ensure_tables()
    define_plans(quiet_system, "acme", 3)
    define_plans(quiet_system, "umbrella", 1)
    runner.catch_up()
    before = rows(quiet_system)
    assert before == [
        {"app_id": "acme", "type": "PlanDefined", "n": 1},
        {"app_id": "acme", "type": "PlanRevised", "n": 3},
        {"app_id": "umbrella", "type": "PlanDefined", "n": 1},
        {"app_id": "umbrella", "type": "PlanRevised", "n": 1},
    ]
    seen: list[tuple[int, int]] = []
    position = replay(
        quiet_system.views, quiet_system.ledger.recorder, live, lambda d, t: seen.append((d, t))
    )
    assert rows(quiet_system) == before
    assert position == quiet_system.ledger.recorder.max_notification_id()
    assert quiet_system.views.position(live.NAME) == position
    assert seen[-1] == (position, position) and live.rebuilt == 1
    runner.catch_up()  # the live projector carries on from the switched position
    assert rows(quiet_system) == before


def test_readers_see_the_old_model_until_the_switch_and_nothing_is_lost(
    quiet_system: System,
) -> None:
    live = PlanEventCounts()
    runner = ProjectionRunner(quiet_system.ledger.recorder, quiet_system.views, [live])
    runner.ensure_tables()
    define_plans(quiet_system, "acme", 4)  # positions 1..5
    runner.catch_up()
    complete = rows(quiet_system)

    paused, resume, outcome = threading.Event(), threading.Event(), []

    def between_batches(done: int, total: int) -> None:
        if done == 2:  # two of five events rebuilt: the shadow is half-built
            paused.set()
            assert resume.wait(10)

    def rebuild() -> None:
        recorder = quiet_system.ledger.recorder
        outcome.append(replay(quiet_system.views, recorder, live, between_batches, batch=2))

    worker = threading.Thread(target=rebuild)
    worker.start()
    assert paused.wait(10)
    assert rows(quiet_system) == complete  # readers never see the half-built shadow
    define_plans(quiet_system, "late", 0)  # committed after the rebuild started
    resume.set()
    worker.join(10)
    assert outcome == [6]  # the switch caught up with the late event
    assert rows(quiet_system)[-1] == {"app_id": "late", "type": "PlanDefined", "n": 1}
    runner.catch_up()
    assert rows(quiet_system) == [*complete, {"app_id": "late", "type": "PlanDefined", "n": 1}]
