"""Audit: the caller's app's events, from the event store itself.

- Without `aggregate_id`: events in global position order after `after` (a position),
  optionally one tenant's. At most `limit` are returned; each request scans a bounded stretch
  of the log (SCAN_LIMIT events), so a page may hold fewer than `limit` events while
  `next_after` still moves on: keep asking with `after=next_after` until `next_after` equals
  `head`.
- With `aggregate_id`: that aggregate's history in version order, read from its own stream
  (fast, indexed); `after` is then a VERSION, `position` is null in each event (the
  aggregate's stream does not carry global positions) and `next_after` is the last version.
  An aggregate of another app, or none, answers 404.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Request

from adapters.eventstore.envelopes import aggregate_type_of, read_envelopes, redacted
from adapters.http.auth import Reader
from adapters.http.common import system_of
from adapters.http.errors import ERROR_RESPONSES, ApiError
from commands.base import ID_PATTERN
from projections.envelope import envelope_from_state

router = APIRouter(tags=["audit"], responses=ERROR_RESPONSES)

SCAN_LIMIT = 10_000
SCAN_BATCH = 1_000


@router.get("/v1/events", summary="The app's events (audit log)")
def events(
    request: Request,
    principal: Reader,
    aggregate_id: UUID | None = None,
    tenant_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    system = system_of(request)
    recorder = system.ledger.recorder
    if aggregate_id is not None:
        return _history(recorder, principal.app_id, aggregate_id, tenant_id, after, limit)
    head = recorder.max_notification_id() or 0
    found: list[dict[str, Any]] = []
    position, scanned = after, 0
    while position < head and scanned < SCAN_LIMIT and len(found) < limit:
        batch = read_envelopes(recorder, position, min(SCAN_BATCH, SCAN_LIMIT - scanned), head)
        if not batch:
            break
        for envelope in batch:
            position = envelope.position
            scanned += 1
            if envelope.app_id != principal.app_id:
                continue
            if tenant_id is not None and envelope.tenant_id != tenant_id:
                continue
            found.append(envelope.model_dump(mode="json"))
            if len(found) >= limit:
                break
    return {"events": found, "next_after": position, "head": head}


def _history(
    recorder: Any,
    app_id: str,
    aggregate_id: UUID,
    tenant_id: str | None,
    after: int,
    limit: int,
) -> dict[str, Any]:
    first = recorder.select_events(aggregate_id, limit=1)
    if not first or orjson.loads(first[0].state).get("app_id") != app_id:
        raise ApiError(
            404, "not_found", f"aggregate {aggregate_id} not found", [{"field": "aggregate_id"}]
        )
    stored = recorder.select_events(aggregate_id, gt=after, limit=limit)
    found = []
    for item in stored:
        envelope = envelope_from_state(
            topic=item.topic,
            aggregate_type=aggregate_type_of(item.topic),
            position=0,
            aggregate_id=aggregate_id,
            version=item.originator_version,
            state=redacted(item.topic, orjson.loads(item.state)),
        )
        if tenant_id is not None and envelope.tenant_id != tenant_id:
            continue
        found.append({**envelope.model_dump(mode="json"), "position": None})
    last = stored[-1].originator_version if stored else after
    return {"events": found, "next_after": last, "head": None}
