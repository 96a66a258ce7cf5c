"""The hash chain without a store: what a seal's digest covers, and how ChainCheck names the
first break (edited, missing, reordered) of a chain of seals."""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID, uuid4

import orjson
import pytest

from adapters.eventstore.chain import (
    EDITED,
    GENESIS,
    MISSING,
    REORDERED,
    Break,
    ChainCheck,
    Locate,
    LoggedEvent,
    Seal,
    Verification,
    event_digest,
    link,
    seal_of,
)

AGGREGATE = uuid4()


def event(position: int, name: str = "Pro", version: int | None = None) -> LoggedEvent:
    state = {"app_id": "acme", "event_id": f"e{position}", "name": name}
    return LoggedEvent(
        position=position,
        originator_id=AGGREGATE,
        version=version if version is not None else position,
        topic="PlanDefined",
        state=orjson.dumps(state),
    )


def chain(events: list[LoggedEvent]) -> list[Seal]:
    seals, prev = [], GENESIS
    for seq, item in enumerate(events, start=1):
        seals.append(seal_of("acme", f"e{item.position}", seq, prev, item))
        prev = seals[-1].hash
    return seals


def nowhere(_: UUID, __: int) -> int | None:
    return None


def first_break(
    seals: list[Seal], stored: dict[int, LoggedEvent], locate: Locate = nowhere
) -> tuple[Break | None, ChainCheck]:
    check = ChainCheck()
    for seal in seals:
        broken = check.check(seal, stored.get(seal.position), locate)
        if broken is not None:
            return broken, check
    return None, check


EVENTS = [event(1), event(2), event(5), event(9)]  # gaps in positions are normal


@pytest.mark.parametrize(
    "changed",
    [
        replace(EVENTS[0], position=2),
        replace(EVENTS[0], topic="PlanRevised"),
        replace(EVENTS[0], originator_id=uuid4()),
        replace(EVENTS[0], version=7),
        replace(EVENTS[0], state=EVENTS[0].state.replace(b"Pro", b"Pra")),
    ],
    ids=["position", "topic", "originator", "version", "state"],
)
def test_the_digest_covers_every_stored_field(changed: LoggedEvent) -> None:
    assert event_digest(changed) != event_digest(EVENTS[0])


def test_fields_cannot_run_into_each_other() -> None:
    """A byte moved from the topic to the state is another digest (length prefixes)."""
    one = replace(EVENTS[0], topic="Plan", state=b"Defined{}")
    other = replace(EVENTS[0], topic="PlanDefined", state=b"{}")
    assert event_digest(one) != event_digest(other)


def test_each_link_depends_on_the_one_before() -> None:
    assert link(GENESIS, EVENTS[0]) == link(GENESIS, EVENTS[0])
    assert link("11" * 32, EVENTS[0]) != link(GENESIS, EVENTS[0])
    seals = chain(EVENTS)
    assert [s.prev_hash for s in seals[1:]] == [s.hash for s in seals[:-1]]


def test_an_intact_chain_holds_to_its_head() -> None:
    seals = chain(EVENTS)
    broken, check = first_break(seals, {e.position: e for e in EVENTS})
    assert broken is None
    assert (check.checked, check.head) == (4, seals[-1].hash)


def test_an_edited_event_breaks_the_chain_at_its_position() -> None:
    stored = {e.position: e for e in EVENTS}
    stored[5] = event(5, name="Free")
    broken, check = first_break(chain(EVENTS), stored)
    assert broken is not None
    assert (broken.position, broken.event_id, broken.reason) == (5, "e5", EDITED)
    assert check.checked == 2  # the entries before it held


def test_a_deleted_event_is_missing() -> None:
    stored = {e.position: e for e in EVENTS if e.position != 2}
    broken, _ = first_break(chain(EVENTS), stored)
    assert broken is not None and (broken.position, broken.reason) == (2, MISSING)


def test_an_event_moved_to_another_position_is_reordered() -> None:
    stored = {e.position: e for e in EVENTS if e.position != 2}
    broken, _ = first_break(chain(EVENTS), stored, lambda _, version: 40 if version == 2 else None)
    assert broken is not None and (broken.position, broken.reason) == (2, REORDERED)
    assert "40" in broken.detail


def test_another_event_in_a_sealed_position_is_reordered() -> None:
    stored = {e.position: e for e in EVENTS}
    stored[2], stored[5] = replace(EVENTS[2], position=2), replace(EVENTS[1], position=5)
    broken, _ = first_break(chain(EVENTS), stored, lambda _, v: {2: 5, 5: 2}.get(v))
    assert broken is not None and (broken.position, broken.reason) == (2, REORDERED)


def test_a_deleted_seal_row_is_missing_from_the_chain() -> None:
    seals = chain(EVENTS)
    del seals[1]
    broken, _ = first_break(seals, {e.position: e for e in EVENTS})
    assert broken is not None and (broken.position, broken.reason) == (5, MISSING)
    assert "entry 2" in broken.detail


def test_a_seal_relinked_by_hand_is_edited() -> None:
    seals = chain(EVENTS)
    seals[2] = replace(seals[2], prev_hash=GENESIS)
    broken, _ = first_break(seals, {e.position: e for e in EVENTS})
    assert broken is not None and (broken.position, broken.reason) == (5, EDITED)


def test_an_event_not_of_our_json_has_no_identity() -> None:
    assert replace(EVENTS[0], state=b"\xff not json").identity() == ("", "")
    assert replace(EVENTS[0], state=b"[1, 2]").identity() == ("", "")
    assert EVENTS[0].identity() == ("acme", "e1")


def test_the_answer_names_the_first_break() -> None:
    intact = Verification("acme", checked=4, head_hash="ab", sealed_through=9, not_yet_sealed=1)
    assert intact.as_json() == {
        "app_id": "acme",
        "intact": True,
        "checked": 4,
        "head_hash": "ab",
        "sealed_through": 9,
        "not_yet_sealed": 1,
        "first_break": None,
    }
    broken = replace(intact, broken=Break(5, "e5", EDITED, "changed"))
    assert broken.as_json()["intact"] is False
    assert broken.as_json()["first_break"] == {
        "position": 5,
        "event_id": "e5",
        "reason": EDITED,
        "detail": "changed",
    }
