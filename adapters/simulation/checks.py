"""The invariants about events and read models, each a `Check` with its figures:

- events_exactly_once: the log's positions run 1..head with no gap, every (aggregate,
  version) once with each aggregate's versions 1..n, every event id once;
- delivered_exactly_once: through every fault, each event reached the projectors once (the
  audit projector counted one application of each position and id, and nothing else);
- read_models_equal_replay: every table of every read model equals a from-scratch replay
  into an empty store, row for row, with the same positions (at checkpoints and at the end);
- entitlements_match_quotas: the entitlement read model answers what the quotas hold;
- quotas_within_limits: per quota, attempts = accepted + refused + duplicate + failed; the
  usage the log counted equals the accepted answers; no counted event of a hard quota took
  `used` past its effective limit;
- and the observations made while running (refusals record nothing, duplicates answered as
  duplicates, conflicts resolved, billing runs clean, no unexpected errors).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapters.eventstore.envelopes import iter_envelopes
from adapters.readmodels.sql_store import ViewStore
from adapters.simulation.delivery import AUDIT_TABLE
from adapters.simulation.world import APP, World
from projections.envelope import EventEnvelope
from projections.registry import build_projectors

COUNTED = ("QuotaConsumed", "UsageRecorded")
QUOTA_TERMS = ("QuotaConfigured", "QuotaReconfigured")


@dataclass
class Check:
    """One invariant's verdict, its figures and the first things that broke it."""

    name: str
    figures: str
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        first = f" | {self.problems[0]}" if self.problems else ""
        more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"{verdict} {self.name}: {self.figures}{first}{more}"


def notifications(recorder: Any, batch: int = 2000) -> Iterator[Any]:
    start = 1
    while True:
        found = recorder.select_notifications(start=start, limit=batch)
        yield from found
        if len(found) < batch:
            return
        start = found[-1].id + 1


def events_exactly_once(world: World) -> Check:
    problems: list[str] = []
    versions: dict[Any, int] = {}
    ids: set[str] = set()
    count = 0
    for note in notifications(world.system.ledger.recorder):
        count += 1
        if note.id != count:
            problems.append(f"position {count} missing (next is {note.id})")
            count = note.id
        if note.originator_version != versions.get(note.originator_id, 0) + 1:
            problems.append(f"{note.topic} v{note.originator_version} out of order at {note.id}")
        versions[note.originator_id] = note.originator_version
        event_id = orjson.loads(note.state)["event_id"]
        if event_id in ids:
            problems.append(f"event id at {note.id} seen before")
        ids.add(event_id)
    head = world.head()
    if count != head:
        problems.append(f"read {count} events, head is {head}")
    figures = f"events={count} positions=1..{head} aggregates={len(versions)} ids={len(ids)}"
    return Check("events_exactly_once", figures, [world.labels.scrub(p) for p in problems])


def delivered_exactly_once(world: World) -> Check:
    """Everything delivered now: each position applied once, with its own event id."""
    rows = world.system.views.query(
        f"SELECT position, event_id, times FROM {{{AUDIT_TABLE}}} ORDER BY position"
    )
    logged = {
        n.id: orjson.loads(n.state)["event_id"] for n in notifications(world.system.ledger.recorder)
    }
    problems = [
        f"position {r['position']} applied {r['times']} times" for r in rows if r["times"] != 1
    ]
    seen = {int(r["position"]): str(r["event_id"]) for r in rows}
    problems += [f"position {p} never delivered" for p in sorted(set(logged) - set(seen))]
    problems += [
        f"position {p} delivered with another id" for p, i in seen.items() if logged.get(p) != i
    ]
    figures = f"delivered={len(rows)} of {len(logged)} once each; {delivery_faults(world)}"
    return Check("delivered_exactly_once", figures, problems)


def delivery_faults(world: World) -> str:
    counts = world.counts
    return (
        f"relay crashes={counts['crashes_before_publish']} "
        f"redeliveries={counts['redeliveries']} crashes mid-batch={world.delivery.crashes} "
        f"restarts={counts['projector_restarts']} rebuilds={counts['projector_rebuilds']}"
    )


# --- replay ---------------------------------------------------------------------------------


def snapshot(views: ViewStore) -> dict[str, Any]:
    """Every row of every read model, ordered by key, and each projector's position."""
    tables: dict[str, Any] = {}
    for projector in build_projectors():
        tables[f"tracking:{projector.NAME}"] = views.position(projector.NAME)
        for logical, (_columns, key) in projector.TABLES.items():
            order = ", ".join(key)
            tables[f"{projector.NAME}:{logical}"] = views.query(
                f"SELECT * FROM {{{logical}}} ORDER BY {order}"
            )
    return tables


def replayed(recorder: Any, batch: int) -> dict[str, Any]:
    """Every read model rebuilt from position 0 into an empty in-memory store."""
    store = ViewStore("sqlite", ":memory:")
    try:
        projectors = build_projectors()
        for projector in projectors:
            store.ensure(projector)
        for envelopes in iter_envelopes(recorder, 0, batch):
            for projector in projectors:
                store.apply(projector, envelopes)
        return snapshot(store)
    finally:
        store.close()


def compare_with_replay(world: World, where: str) -> list[str]:
    """The tables that differ between the live read models and a replay (none, or named)."""
    world.system.sync()
    live = snapshot(world.system.views)
    again = replayed(world.system.ledger.recorder, world.rng.randint(7, 900))
    differ = sorted(k for k in live.keys() | again.keys() if live.get(k) != again.get(k))
    world.counts["replays_compared"] += 1
    world.counts["read_model_rows"] = sum(len(v) for v in live.values() if isinstance(v, list))
    for table in differ:
        world.fail("read_models_equal_replay", f"{where}: {table} differs from a replay")
    return differ


def read_models_equal_replay(world: World) -> Check:
    compare_with_replay(world, "at the end")
    counts = world.counts
    figures = (
        f"tables={len(snapshot(world.system.views))} rows={counts['read_model_rows']} "
        f"replays={counts['replays_compared']}"
    )
    return Check(
        "read_models_equal_replay", figures, world.failures.get("read_models_equal_replay", [])
    )


# --- quotas ---------------------------------------------------------------------------------


def counted_in_log(world: World) -> tuple[Counter[tuple[str, str]], list[str]]:
    """Usage counted per (tenant, feature) by the log, and hard-limit breaches."""
    counted: Counter[tuple[str, str]] = Counter()
    enforcement: dict[Any, str] = {}
    breaches: list[str] = []
    topics = (*COUNTED, *QUOTA_TERMS)
    for envelopes in iter_envelopes(world.system.ledger.recorder, 0, 2000, topics=topics):
        for event in envelopes:
            breach = follow_quota(event, enforcement, counted)
            if breach:
                breaches.append(breach)
    return counted, breaches


def follow_quota(
    event: EventEnvelope, enforcement: dict[Any, str], counted: Counter[tuple[str, str]]
) -> str | None:
    data = event.data
    if event.type in QUOTA_TERMS:
        enforcement[event.aggregate_id] = str(data["enforcement"])
        return None
    key = (str(event.tenant_id), str(data["feature_key"]))
    facts = 1 if event.type == "QuotaConsumed" else len(data["facts"]) + len(data["late_facts"])
    counted[key] += facts
    limit, used = data.get("limit"), int(data["used"])
    if enforcement.get(event.aggregate_id) == "hard" and limit is not None and used > limit:
        return f"{key[0]}/{key[1]} used {used} past its hard limit {limit} at @{event.position}"
    return None


def quotas_within_limits(world: World) -> Check:
    counted, problems = counted_in_log(world)
    totals: Counter[str] = Counter()
    for (tenant, feature), tally in sorted(world.usage_tally.items()):
        totals.update(tally)
        parts = sum(tally[s] for s in ("accepted", "refused", "duplicate", "failed"))
        if parts != tally["attempts"]:
            problems.append(f"{tenant}/{feature}: {tally['attempts']} attempts, {parts} answers")
        if counted[(tenant, feature)] != tally["accepted"]:
            problems.append(
                f"{tenant}/{feature}: {tally['accepted']} accepted, "
                f"{counted[(tenant, feature)]} counted in the log"
            )
    figures = (
        f"attempts={totals['attempts']} = accepted {totals['accepted']} + refused "
        f"{totals['refused']} + duplicate {totals['duplicate']} + failed {totals['failed']}; "
        f"counted in the log={sum(counted.values())}"
    )
    return Check("quotas_within_limits", figures, problems)


def entitlements_match_quotas(world: World) -> Check:
    """The entitlement read model answers what the quota aggregates hold (used, effective
    limit), for each enabled quota in an open window answered from the plan; one whose window
    ended (reset lazily, on its next consume) or answered from a feature grant is skipped.
    A hard quota used past the limit of a feature grant is counted, not failed: the grant's
    limit governs the check, the plan's the consumes (docs/commands.md, see the report)."""
    system, now = world.system, world.clock.now()
    problems: list[str] = []
    seen: Counter[str] = Counter()
    for quota in (system.aggregate(i) for i in system.index.ids(APP, "quota")):
        answer = system.query(
            "entitlement",
            app_id=APP,
            tenant_id=quota.state.tenant_id,
            feature_key=quota.state.feature_key,
        )
        seen[compare_entitlement(quota, answer, now, problems)] += 1
    figures = (
        f"compared={seen['compared']} skipped={seen['skipped'] + seen['past_grant']} "
        f"(hard quotas used past a feature grant's limit={seen['past_grant']})"
    )
    return Check("entitlements_match_quotas", figures, problems)


def compare_entitlement(quota: Any, answer: dict[str, Any], now: Any, problems: list[str]) -> str:
    state = quota.state
    if answer["source"] == "grant" and state.enforcement == "hard" and answer["limit"] is not None:
        return "past_grant" if state.used > answer["limit"] else "skipped"
    if not state.enabled or quota.window_ended(now) or answer["source"] != "plan":
        return "skipped"
    held = (state.used, quota.outcome(now, allowed=True).limit)
    if (answer["used"], answer["limit"]) != held:
        problems.append(f"{state.tenant_id}/{state.feature_key}: quota {held}, read {answer}")
    return "compared"


# --- what was observed while running --------------------------------------------------------

OBSERVED = {
    "refusals_record_nothing": "refusals",
    "duplicates_answered_as_duplicates": "resent",
    "conflicts_resolved": "conflicts",
    "billing_runs_clean": "runs",
}


def observed(world: World, name: str) -> Check:
    figures = f"{OBSERVED[name]}={world.counts[name]}"
    if name == "conflicts_resolved":
        figures += f" retried={world.counts['conflicts_retried']}"
    return Check(name, figures, world.failures.get(name, []))


def no_unexpected_errors(world: World) -> Check:
    problems = world.failures.get("no_unexpected_errors", [])
    return Check("no_unexpected_errors", f"crashes={len(problems)}", problems)
