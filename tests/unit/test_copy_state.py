"""domain.value.copy_state: the copy an aggregate's state gets (Aggregate.private_copy) equals
a deep copy, shares the immutable values and copies every container once (ADR 0013)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from uuid import uuid4

from pydantic import BaseModel, Field

from domain.money import Money
from domain.period import Period
from domain.value import copy_state


class Inner(BaseModel):
    tags: list[str] = Field(default_factory=list)


class State(BaseModel):
    at: datetime
    id: object
    price: Money
    prices: list[Money]
    by_key: dict[str, list[int]]
    keys: set[str]
    inner: Inner
    same_twice: list[list[int]]
    period: Period | None = None


def make() -> State:
    shared = [1, 2]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    state = State(
        at=start,
        id=uuid4(),
        price=Money(amount=5, currency="USD"),
        prices=[Money(amount=1, currency="EUR")],
        by_key={"a": [1]},
        keys={"x"},
        inner=Inner(tags=["t"]),
        same_twice=[],
        period=Period(start=start, end=datetime(2026, 2, 1, tzinfo=UTC)),
    )
    state.same_twice = [shared, shared]  # assigned: validation would have copied each
    return state


def test_a_copy_equals_a_deep_copy_and_shares_only_immutable_values() -> None:
    state = make()
    clone = copy_state(state)
    assert clone == state == copy.deepcopy(state)
    assert clone is not state and clone.inner is not state.inner
    assert clone.prices is not state.prices and clone.by_key["a"] is not state.by_key["a"]
    assert clone.keys is not state.keys
    assert clone.price is state.price and clone.prices[0] is state.prices[0]
    assert clone.period is state.period and clone.id is state.id
    assert clone.same_twice[0] is clone.same_twice[1]  # one list twice stays one list
    assert clone.same_twice[0] is not state.same_twice[0]


def test_changing_a_copy_leaves_the_original_as_it_was() -> None:
    state = make()
    clone = copy_state(state)
    clone.inner.tags.append("u")
    clone.by_key["a"].append(2)
    clone.keys.add("y")
    clone.prices.append(Money(amount=2, currency="EUR"))
    clone.at = datetime(2027, 1, 1, tzinfo=UTC)
    assert state == make().model_copy(update={"id": state.id})
    assert clone.model_fields_set == state.model_fields_set
