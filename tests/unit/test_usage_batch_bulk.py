"""A quota that accepts a batch whole counts it in one step (UsageTally.accepts_all/add_all),
to the same figures the fact-by-fact walk reaches; where a hard limit could refuse one of the
facts, or the meter does not add up, it does not accept the batch whole."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.catalog import FeatureSpec
from domain.quota import Quota
from domain.usage_batch import UsageFact, UsageTally
from tests.factories import T0, cause

SUB = UUID("00000000-0000-0000-0000-000000000001")
NOW = T0 + timedelta(days=3)


def quota(limit: int | None, enforcement: str, meter: str = "sum", used: int = 0) -> Quota:
    feature = {"key": "api", "kind": "metered", "limit": limit, "enforcement": enforcement}
    built = Quota.configure(
        "acme", "t1", FeatureSpec.model_validate({**feature, "meter": meter}), SUB, T0, cause()
    )
    if used:
        built.consume(used, "before", cause(NOW))
    return built


def facts(values: list[int], late: list[bool] | None = None) -> list[UsageFact]:
    late = late or [False] * len(values)
    return [
        UsageFact.trusted(f"k{i}", value, T0 - timedelta(days=2) if old else NOW)
        for i, (value, old) in enumerate(zip(values, late, strict=True))
    ]


def walked(tally: UsageTally, batch: list[UsageFact]) -> UsageTally:
    for fact in batch:
        if tally.refusal(fact) is None:
            tally.add(fact)
        else:
            tally.refuse(fact)
    return tally


def figures(tally: UsageTally) -> tuple[Any, ...]:
    keys = sorted(f.key for f in tally.counted)
    late = sorted(f.key for f in tally.late)
    return tally.used, tally.overage, tally.latest_at, keys, late, len(tally.refusals)


TERMS = st.sampled_from(
    [(None, "hard"), (None, "soft"), (50, "hard"), (50, "soft"), (2_000, "hard"), (5, "soft")]
)


@settings(max_examples=150, deadline=None)
@given(
    terms=TERMS,
    meter=st.sampled_from(["sum", "count"]),
    used=st.integers(0, 40),
    values=st.lists(st.integers(1, 20), min_size=1, max_size=30),
    late=st.data(),
)
def test_a_batch_accepted_whole_reaches_the_figures_of_the_walk(
    terms: tuple[int | None, str], meter: str, used: int, values: list[int], late: Any
) -> None:
    limit, enforcement = terms
    if limit is not None and enforcement == "hard" and used > limit:
        used = limit
    old = late.draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values)))
    batch = facts(values, old)
    bulk = UsageTally.open(quota(limit, enforcement, meter, used), NOW)
    walk = walked(UsageTally.open(quota(limit, enforcement, meter, used), NOW), batch)
    if bulk.accepts_all(batch):
        bulk.add_all(batch)
        assert figures(bulk) == figures(walk)
        assert not walk.refusals
    else:
        assert enforcement == "hard" and limit is not None  # only a hard limit can refuse
        assert walk.refusals  # and the walk did: the whole batch would have passed it


def test_a_hard_limit_the_batch_would_pass_is_left_to_the_walk() -> None:
    tally = UsageTally.open(quota(10, "hard", used=8), NOW)
    assert not tally.accepts_all(facts([1, 2]))
    assert tally.accepts_all(facts([1, 1]))


def test_meters_that_do_not_add_up_are_walked() -> None:
    for meter in ("max", "latest", "unique_count"):
        assert not UsageTally.open(quota(None, "soft", meter), NOW).accepts_all(facts([1]))


def test_a_disabled_quota_is_walked_unless_a_feature_grant_keeps_it_counting() -> None:
    disabled = quota(None, "soft")
    disabled.disable(cause(NOW))
    assert not UsageTally.open(disabled, NOW).accepts_all(facts([1]))
    assert UsageTally.open(disabled, NOW, granted=True).accepts_all(facts([1]))


def test_a_grant_limit_replaces_the_plan_limit_in_the_bulk_rule() -> None:
    plan_limited = quota(10, "hard")
    assert not UsageTally.open(plan_limited, NOW).accepts_all(facts([11]))
    assert UsageTally.open(plan_limited, NOW, grant_limit=11).accepts_all(facts([11]))
    assert not UsageTally.open(plan_limited, NOW, grant_limit=5).accepts_all(facts([6]))
