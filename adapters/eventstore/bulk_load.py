"""Many aggregates' stored events in two queries instead of one or two per aggregate.

The library loads an aggregate with a query for its last snapshot and one for the events
after it (or, for one in the cache, one query for the events after the cached version),
each in a transaction of its own. A billing run loads thousands at once; here the last
snapshot of every aggregate asked is read in one query (`DISTINCT ON`), and the events
after a given version of each in one more (a join on `unnest(ids, versions)`, which the
primary key (originator_id, originator_version) serves). PostgreSQL only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

_SNAPSHOTS = (
    "SELECT DISTINCT ON (originator_id) originator_id, originator_version, topic, state "
    "FROM {table} WHERE originator_id = ANY(%s) "
    "ORDER BY originator_id, originator_version DESC"
)
_EVENTS_AFTER = (
    "SELECT e.originator_id, e.originator_version, e.topic, e.state "
    "FROM unnest(%s::{id_type}[], %s::bigint[]) AS w(id, after) "
    "JOIN {table} AS e ON e.originator_id = w.id AND e.originator_version > w.after "
    "ORDER BY e.originator_id, e.originator_version"
)


def is_postgres(recorder: Any) -> bool:
    return hasattr(recorder.datastore, "schema")


def _table(recorder: Any) -> Any:
    return SQL("{}.{}").format(
        Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
    )


def _stored(row: Mapping[str, Any]) -> StoredEvent:
    return StoredEvent(
        originator_id=row["originator_id"],
        originator_version=int(row["originator_version"]),
        topic=row["topic"],
        state=bytes(row["state"]),
    )


def _ids(recorder: Any, ids: Sequence[UUID]) -> list[Any]:
    return [str(i) for i in ids] if recorder.datastore.originator_id_type == "text" else list(ids)


def latest_snapshots(recorder: Any, aggregate_ids: Sequence[UUID]) -> dict[UUID, StoredEvent]:
    """The last stored snapshot of each of these aggregates (those with none left out)."""
    if not aggregate_ids:
        return {}
    statement = SQL(_SNAPSHOTS).format(table=_table(recorder))
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(statement, (_ids(recorder, aggregate_ids),))
        rows = cursor.fetchall()
    return {UUID(str(row["originator_id"])): _stored(row) for row in rows}


def events_after(recorder: Any, after: Mapping[UUID, int]) -> dict[UUID, list[StoredEvent]]:
    """Each aggregate's stored events after the version given for it, in version order."""
    found: dict[UUID, list[StoredEvent]] = {}
    if not after:
        return found
    statement = SQL(_EVENTS_AFTER).format(
        table=_table(recorder), id_type=SQL(recorder.datastore.originator_id_type)
    )
    ids = list(after)
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(statement, (_ids(recorder, ids), [after[i] for i in ids]))
        rows = cursor.fetchall()
    for row in rows:
        found.setdefault(UUID(str(row["originator_id"])), []).append(_stored(row))
    return found
