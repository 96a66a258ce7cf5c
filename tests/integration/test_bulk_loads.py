"""Bulk loads and the cache of saved aggregates (adapters/eventstore/ledger.py `get_many`,
`_record`; adapters/eventstore/bulk_load.py) and the binary insert of events
(adapters/eventstore/binary_insert.py), on SQLite and real PostgreSQL.

Whatever path loads an aggregate (the cache brought up to date, a snapshot and the events
after it, the whole history) it must equal a replay of its events; a copy handed out is the
caller's own; an aggregate changed by another writer loads at its new version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from adapters.bootstrap import open_stores
from adapters.eventstore.ledger import Ledger
from domain.plan import Plan
from tests.conftest import T0, StoreSettings
from tests.factories import cause, terms


@pytest.fixture
def open_store(store_settings: StoreSettings) -> Iterator[Callable[..., Ledger]]:
    settings, schema = store_settings
    opened: list[Ledger] = []

    def open_(**overrides: Any) -> Ledger:
        ledger, views, _ = open_stores(settings.model_copy(update=overrides), schema)
        views.close()
        opened.append(ledger)
        return ledger

    yield open_
    for ledger in opened:
        ledger.close()


def replay(ledger: Ledger, aggregate_id: UUID) -> Any:
    aggregate = None
    for event in ledger.events.get(aggregate_id):
        aggregate = cast(Any, event).mutate(aggregate)
    return aggregate


def same(a: Any, b: Any) -> bool:
    return (type(a), a.id, a.version, a.created_on, a.modified_on, a.state) == (
        type(b),
        b.id,
        b.version,
        b.created_on,
        b.modified_on,
        b.state,
    )


def revised_plan(ledger: Ledger, revisions: int, key: str = "pro") -> Plan:
    plan = Plan.define("acme", terms(key, price=100), cause())
    ledger.save(plan)
    for revision in range(1, revisions + 1):
        plan.revise(terms(key, price=100 + revision), cause(T0 + timedelta(hours=revision)))
        ledger.save(plan)
    return plan


def test_get_many_equals_a_replay_from_the_cache_from_snapshots_and_from_history(
    open_store: Callable[..., Ledger],
) -> None:
    writer = open_store(snapshot_interval=4)
    plans = [revised_plan(writer, revisions, f"p{revisions}") for revisions in (0, 3, 4, 9)]
    ids = [plan.id for plan in plans]
    absent = uuid4()

    for ledger in (writer, open_store(snapshot_interval=4)):  # cached, then nothing cached
        found = ledger.get_many([*ids, absent, ids[0]])
        assert list(found) == ids  # each once, in the order asked; the absent one left out
        for plan in plans:
            assert same(found[plan.id], replay(ledger, plan.id))
            assert same(found[plan.id], plan)
    assert writer.get_many([]) == {}


def test_get_many_hands_out_copies_of_their_own(open_store: Callable[..., Ledger]) -> None:
    ledger = open_store()
    plan = revised_plan(ledger, 2)
    first = ledger.get_many([plan.id])[plan.id]
    first.revise(terms(price=999), cause())  # changed, never saved
    again = ledger.get_many([plan.id])[plan.id]
    assert again is not first
    assert again.version == 3 and same(again, replay(ledger, plan.id))
    assert same(ledger.get(plan.id), again)


def test_an_aggregate_another_writer_changed_loads_at_its_new_version(
    open_store: Callable[..., Ledger],
) -> None:
    mine, theirs = open_store(), open_store()
    plan = revised_plan(mine, 1)
    assert mine.get_many([plan.id])[plan.id].version == 2  # in mine's cache now
    other = theirs.get(plan.id)
    other.revise(terms(price=555), cause())
    theirs.save(other)

    found = mine.get_many([plan.id])[plan.id]
    assert found.version == 3 and found.terms().base_price.amount == 555
    assert same(found, replay(mine, plan.id))


def test_a_saved_aggregate_is_cached_as_saved_not_as_changed_later(
    open_store: Callable[..., Ledger],
) -> None:
    ledger = open_store()
    plan = revised_plan(ledger, 1)
    plan.revise(terms(price=777), cause())  # after the save: in memory only
    loaded = ledger.get(plan.id)
    assert loaded.version == 2 and loaded.terms().base_price.amount == 101
    assert same(ledger.get_many([plan.id])[plan.id], loaded)


@pytest.mark.postgres
def test_the_binary_insert_stores_every_byte_and_returns_positions_in_order(
    pg_url: str, pg_schema: str
) -> None:
    from adapters.settings import Settings

    ledger, views, _ = open_stores(Settings(database_url=pg_url), pg_schema)
    views.close()
    try:
        states = [bytes(range(256)) * 1200, b"{}", b"\x00\\x00'\"", bytes(300_000)]
        events = [
            StoredEvent(originator_id=uuid4(), originator_version=1, topic=f"T{n}", state=state)
            for n, state in enumerate(states)
        ]
        positions = ledger.recorder.insert_events(events)
        assert positions is not None and list(positions) == sorted(positions)
        assert len(set(positions)) == len(events)
        for event in events:
            (stored,) = ledger.recorder.select_events(event.originator_id)
            assert (stored.topic, bytes(stored.state)) == (event.topic, event.state)
        notes = ledger.recorder.select_notifications(start=positions[0], limit=10)
        assert [n.id for n in notes] == list(positions)
    finally:
        ledger.close()
