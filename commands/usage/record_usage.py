"""Record a batch of usage events: each counted once, decided per quota, saved in one go.

The steps, for one request of up to 1,000 events:
1. Each event becomes facts, one per quota it feeds: a plain event feeds its feature with
   its quantity; a typed event feeds every feature of the tenant whose meter it matches.
   Its time is its `timestamp` (or the clock's now), accepted within LATE_WINDOW before now
   and FUTURE_TOLERANCE after it (InvalidValue naming `events.<i>.timestamp` otherwise).
2. A key repeated inside the batch, or already counted by the database, is a duplicate.
3. Each quota decides its facts (domain/usage_batch.py): in one step when it accepts the
   batch whole (it counts, its meter adds, no hard limit could refuse any of them: the
   usual case), else in order, fact by fact; a typed event feeding several quotas counts in
   all or none (one refusal refuses it everywhere). A live feature grant with a limit
   replaces the plan's limit, as in the entitlement check.
4. Every changed quota is saved in ONE transaction with the counted keys (and the keys of
   new hard-limit refusals): a key another batch counted meanwhile, or a quota another
   writer changed, fails the transaction, and the batch is decided again from step 2.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from commands.base import EventStore
from commands.usage.ports import (
    AggregateLoader,
    LoadOneByOne,
    MeterResolver,
    Reading,
    TypedEvent,
    UsageKeys,
)
from commands.usage.shared_commits import SharedCommits
from domain.base import Cause
from domain.entitlement_grant import FeatureGrant, TenantGrants, tenant_grants_id
from domain.errors import Conflict, InvalidValue
from domain.quota import Quota, quota_id
from domain.usage_batch import HARD_LIMIT_EXCEEDED, UsageFact, UsageTally

log = logging.getLogger(__name__)

LATE_WINDOW = timedelta(days=35)
"""Usage may arrive this late (it lands in the period its timestamp names)."""
FUTURE_TOLERANCE = timedelta(minutes=5)
"""Usage may be timed this far ahead of the ledger's clock (clock skew)."""


@dataclass(slots=True)
class UsageEventIn:
    """One usage event as received: plain (feature_key, quantity) or typed (event_type).
    Not frozen: a frozen dataclass costs twice as much to build, 1,000 times per request
    (never changed once built)."""

    idempotency_key: str
    tenant_id: str
    feature_key: str | None = None
    quantity: int = 1
    event_type: str | None = None
    timestamp: datetime | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)


MAX_GROUP_EVENTS = 10_000
"""Most events decided and saved in one transaction when requests share a commit."""


@dataclass(slots=True)
class _Pending:
    """One event being decided: its facts per quota, then its outcome."""

    index: int
    event: UsageEventIn
    facts: list[tuple[UUID, str, UsageFact]]
    status: str = ""
    reason: str | None = None
    error: dict[str, Any] | None = None


@dataclass
class _Request:
    """One request's events on their way through a shared commit, then its answer."""

    pending: list[_Pending]
    actor: str
    answer: dict[str, Any] = field(default_factory=dict)


def _never(error: BaseException) -> bool:
    return False


@dataclass
class UsageIngest:
    """The application service behind POST /v1/usage and the consume_quota command."""

    store: EventStore
    keys: UsageKeys
    meters: MeterResolver
    now: Callable[[], datetime]
    on_commit: list[Callable[[], None]] = field(default_factory=list)
    max_attempts: int = 20
    loader: AggregateLoader | None = None
    exclusive: Callable[[str, Sequence[str]], AbstractContextManager[Any]] | None = None
    """Locks across processes, taken from the second attempt on (after a conflict)."""
    after_usage: list[Callable[[str, Sequence[str]], None]] = field(default_factory=list)
    """Called after a commit that counted usage, with the app and the tenants (progressive
    billing checks its thresholds)."""
    store_unreachable: Callable[[BaseException], bool] = _never
    """Whether an error means the store could not be reached: then the requests waiting for
    the next shared commit get it too, at once, instead of each waiting out the store."""

    def __post_init__(self) -> None:
        if self.loader is None:
            self.loader = LoadOneByOne(self.store)
        self._groups: dict[str, SharedCommits[_Request]] = {}
        self._groups_lock = threading.Lock()

    def record(
        self, app_id: str, events: Sequence[UsageEventIn], actor: str = "system"
    ) -> dict[str, Any]:
        """Counts and one result per event, in order (see the module docstring). Requests
        that arrive together share one decision and one transaction (SharedCommits)."""
        now = self.now()
        typed = self._typed_readings(app_id, events)
        pending = [self._facts(app_id, i, e, now, typed) for i, e in enumerate(events)]
        request = _Request(pending, actor)
        self._group_of(app_id).submit(request, len(pending))
        return request.answer

    def _group_of(self, app_id: str) -> SharedCommits[_Request]:
        with self._groups_lock:
            if app_id not in self._groups:
                run = functools.partial(self._record_group, app_id)
                self._groups[app_id] = SharedCommits(
                    run, max_size=MAX_GROUP_EVENTS, shares_failure=self.store_unreachable
                )
            return self._groups[app_id]

    def _record_group(self, app_id: str, requests: Sequence[_Request]) -> None:
        """Decide and save the requests' events as one batch, then answer each request."""
        now = self.now()
        pending = [item for request in requests for item in request.pending]
        actors = {request.actor for request in requests}
        cause = Cause(occurred_at=now, actor=actors.pop() if len(actors) == 1 else "usage")
        tenants = sorted({item.event.tenant_id for item in pending})
        wanted = list(dict.fromkeys(qid for item in pending for qid, _, _ in item.facts))
        wanted += [tenant_grants_id(app_id, tenant) for tenant in tenants]
        assert self.loader is not None
        for attempt in range(self.max_attempts):
            exclusive = self.exclusive if attempt and self.exclusive else _unlocked
            # one group of an app at a time in this process (SharedCommits); across
            # processes, the database decides, and a conflicted group retries exclusively
            with exclusive(app_id, tenants):
                loaded = self.loader.load(wanted)
                try:
                    quotas = self._decide(app_id, pending, cause, loaded)
                    self._save(app_id, pending, quotas, cause)
                except BaseException as error:
                    self.loader.forget(wanted)
                    if not isinstance(error, IntegrityError):
                        raise
                else:
                    self.loader.saved(t.quota for t in quotas.values())
                    figures = {qid: _figures(t) for qid, t in quotas.items()}
                    for request in requests:
                        request.answer = _answer(request.pending, figures)
                    self._usage_counted(app_id, pending)
                    return
            time.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.1)))
        raise Conflict("usage kept conflicting with concurrent writers; retry", field="events")

    def _usage_counted(self, app_id: str, pending: list[_Pending]) -> None:
        tenants = sorted({p.event.tenant_id for p in pending if p.status == "accepted"})
        if tenants:
            for listener in self.after_usage:
                _after_commit(listener, app_id, tenants)

    def _typed_readings(
        self, app_id: str, events: Sequence[UsageEventIn]
    ) -> dict[int, list[Reading]]:
        """The readings of the typed events, by index (one call for the whole batch)."""
        typed = [
            (i, TypedEvent(e.tenant_id, e.event_type, e.properties, f"events.{i}"))
            for i, e in enumerate(events)
            if e.event_type is not None
        ]
        if not typed:
            return {}
        found = self.meters.resolve(app_id, [event for _, event in typed])
        return {i: readings for (i, _), readings in zip(typed, found, strict=True)}

    def _facts(
        self,
        app_id: str,
        index: int,
        event: UsageEventIn,
        now: datetime,
        typed: dict[int, list[Reading]],
    ) -> _Pending:
        at = now if event.timestamp is None else _checked_time(event.timestamp, now, index)
        key, tenant = event.idempotency_key, event.tenant_id
        if event.event_type is None:
            assert event.feature_key is not None
            feature = event.feature_key
            fact = UsageFact.trusted(key, event.quantity, at)
            return _Pending(index, event, [(quota_id(app_id, tenant, feature), feature, fact)])
        facts = [
            (quota_id(app_id, tenant, feature), feature, UsageFact.trusted(key, value, at, group))
            for feature, value, group in typed[index]
        ]
        return _Pending(index, event, facts)

    def _decide(
        self, app_id: str, pending: list[_Pending], cause: Cause, loaded: dict[UUID, Any]
    ) -> dict[UUID, UsageTally]:
        counted = self.keys.counted(app_id, [p.event.idempotency_key for p in pending])
        tallies: dict[UUID, UsageTally | None] = {}
        seen: set[str] = set()
        fresh: list[_Pending] = []
        for item in pending:
            key = item.event.idempotency_key
            item.status, item.reason, item.error = "", None, None
            for qid, _, _ in item.facts:  # a duplicate's too: the answer gives its figures
                if qid not in tallies:
                    tallies[qid] = self._open(app_id, loaded, qid, item.event.tenant_id, cause)
            if key in seen or key in counted:
                item.status = "duplicate"
                continue
            seen.add(key)
            fresh.append(item)
        for item in _in_bulk(fresh, tallies):
            self._decide_one(item, tallies)
        return {i: t for i, t in tallies.items() if t is not None}

    def _decide_one(self, item: _Pending, tallies: dict[UUID, UsageTally | None]) -> None:
        """Decide one event on its quotas' running figures (the walk, in order)."""
        if not item.facts:
            item.status, item.error = "failed", _no_feature(item)
            return
        opened = [(tallies[qid], fact) for qid, _, fact in item.facts]
        if any(tally is None for tally, _ in opened):
            missing = next(
                f for (t, _), (_, f, _) in zip(opened, item.facts, strict=True) if t is None
            )
            item.status, item.error = "failed", _no_quota(item, missing)
            return
        decided = [(t, f, t.refusal(f)) for t, f in opened if t is not None]
        refusal = next((reason for _, _, reason in decided if reason is not None), None)
        if refusal is None:
            for tally, fact, _ in decided:
                tally.add(fact)
            item.status = "accepted"
            return
        item.status, item.reason = "refused", refusal
        for tally, fact, reason in decided:
            if reason == HARD_LIMIT_EXCEEDED:
                tally.refuse(fact)

    def _open(
        self, app_id: str, loaded: dict[UUID, Any], qid: UUID, tenant_id: str, cause: Cause
    ) -> UsageTally | None:
        quota = loaded.get(qid)
        if not isinstance(quota, Quota) or quota.state.app_id != app_id:
            return None
        now = cause.occurred_at
        if quota.window_ended(now):
            quota.reset(cause)
        grant = _live_grant(loaded.get(tenant_grants_id(app_id, tenant_id)), quota, now)
        granted = not quota.state.enabled and grant is not None
        return UsageTally.open(quota, now, granted, None if grant is None else grant.limit)

    def _save(
        self, app_id: str, pending: list[_Pending], tallies: dict[UUID, UsageTally], cause: Cause
    ) -> None:
        now = cause.occurred_at
        refused_keys = {f.key for t in tallies.values() for f, _ in t.refusals}
        refused_before = frozenset(self.keys.refused(app_id, refused_keys))
        for tally in tallies.values():
            tally.quota.record_usage(tally, cause, refused_before)
        changed = [t.quota for t in tallies.values() if t.quota.pending_events]
        if not changed:
            return
        accepted = [
            (app_id, p.event.idempotency_key, now) for p in pending if p.status == "accepted"
        ]
        refusals = [(app_id, key, now) for key in sorted(refused_keys - refused_before)]
        self.store.save(*changed, usage_keys=accepted, usage_refusals=refusals)
        for listener in self.on_commit:
            _after_commit(listener)


def _live_grant(grants: Any, quota: Quota, now: datetime) -> FeatureGrant | None:
    """The live manual grant of the quota's feature (a support override), if any: it keeps a
    suspended quota counting, and its limit, when it has one, replaces the plan's."""
    if not isinstance(grants, TenantGrants):
        return None
    return grants.active_grants(now).get(quota.state.feature_key)


def _in_bulk(fresh: list[_Pending], tallies: Mapping[UUID, UsageTally | None]) -> list[_Pending]:
    """Count at once every event whose quotas all accept the batch whole (`accepts_all`:
    none of their facts could be refused, so order does not matter); the others are left,
    in order, to be decided one by one. A quota that accepts the whole batch accepts any
    part of it, so the events walked later are never refused by it."""
    facts_of: dict[UUID, list[UsageFact]] = {}
    for item in fresh:
        for qid, _, fact in item.facts:
            facts_of.setdefault(qid, []).append(fact)
    whole = set()
    for qid, facts in facts_of.items():
        tally = tallies.get(qid)
        if tally is not None and tally.accepts_all(facts):
            whole.add(qid)
    if len(whole) < len(facts_of):
        return _part_in_bulk(fresh, tallies, whole)
    for qid, facts in facts_of.items():
        tally = tallies[qid]
        assert tally is not None
        tally.add_all(facts)
    for item in fresh:
        item.status = "accepted" if item.facts else item.status
    return [item for item in fresh if not item.facts]


def _part_in_bulk(
    fresh: list[_Pending], tallies: Mapping[UUID, UsageTally | None], whole: set[UUID]
) -> list[_Pending]:
    """Some quotas need the walk: the events only on quotas that accept everything are
    counted at once, the rest are left for the walk."""
    walk: list[_Pending] = []
    bulk: dict[UUID, list[UsageFact]] = {}
    for item in fresh:
        if item.facts and all(qid in whole for qid, _, _ in item.facts):
            item.status = "accepted"
            for qid, _, fact in item.facts:
                bulk.setdefault(qid, []).append(fact)
        else:
            walk.append(item)
    for qid, facts in bulk.items():
        tally = tallies[qid]
        assert tally is not None
        tally.add_all(facts)
    return walk


def _after_commit(listener: Callable[..., None], *args: Any) -> None:
    """A side effect after the commit: its failure is logged, never the request's (the
    usage is recorded; a retry would only answer duplicates)."""
    try:
        listener(*args)
    except Exception:
        log.exception("usage_listener_failed", extra={"listener": repr(listener)})


@contextmanager
def _unlocked(app_id: str, tenants: Sequence[str]) -> Iterator[None]:
    yield


def _checked_time(timestamp: datetime, now: datetime, index: int) -> datetime:
    field = f"events.{index}.timestamp"
    if timestamp.tzinfo is None:
        raise InvalidValue("the timestamp must carry a timezone", field=field)
    if timestamp < now - LATE_WINDOW:
        raise InvalidValue("usage more than 35 days old is refused", field=field)
    if timestamp > now + FUTURE_TOLERANCE:
        raise InvalidValue("usage more than 5 minutes in the future is refused", field=field)
    return timestamp


def _no_feature(item: _Pending) -> dict[str, Any]:
    return {
        "code": "not_found",
        "message": f"tenant {item.event.tenant_id} has no metered feature that "
        f"event type {item.event.event_type} feeds",
        "field": "event_type",
    }


def _no_quota(item: _Pending, feature_key: str) -> dict[str, Any]:
    return {
        "code": "not_found",
        "message": f"tenant {item.event.tenant_id} has no quota for feature {feature_key}",
        "field": "feature_key",
    }


def _answer(pending: list[_Pending], figures: dict[UUID, dict[str, Any]]) -> dict[str, Any]:
    names = {
        "accepted": "accepted",
        "duplicate": "duplicates",
        "refused": "refused",
        "failed": "failed",
    }
    counts = dict.fromkeys(names.values(), 0)
    shown = {qid: {k: v for k, v in f.items() if k != "feature_key"} for qid, f in figures.items()}
    results = []
    for item in pending:
        counts[names[item.status]] += 1
        results.append(_result(item, figures, shown))
    return {**counts, "results": results}


def _result(
    item: _Pending, figures: dict[UUID, dict[str, Any]], shown: dict[UUID, dict[str, Any]]
) -> dict[str, Any]:
    """One event's result: its status and its (first) quota's figures after the batch."""
    head = {"index": item.index, "idempotency_key": item.event.idempotency_key}
    if item.error is not None:
        return {**head, "status": item.status, "error": item.error}
    allowed = item.status != "refused"
    features = [qid for qid, _, _ in item.facts if qid in figures]
    if not features:
        return {**head, "status": item.status, "allowed": allowed, "reason": item.reason}
    result = {**head, "status": item.status, **shown[features[0]]}
    result["allowed"], result["reason"] = allowed, item.reason
    if len(features) > 1:
        result["features"] = [figures[qid] for qid in features]
    return result


def _figures(tally: UsageTally) -> dict[str, Any]:
    """The quota's figures after the batch (used, limit, remaining, overage, soft limit)."""
    quota = tally.quota
    state = quota.state
    outcome = quota.outcome(tally.now, allowed=True, grant_limit=tally.grant_limit)
    dumped = outcome.model_dump(mode="json", exclude={"allowed", "duplicate", "reason"})
    return {
        "feature_key": state.feature_key,
        **dumped,
        "quota_id": str(quota.id),
        "window": state.window.model_dump(mode="json") if state.window else None,
    }
