"""Global positions of one aggregate's events, and which aggregates exist, straight from the
event store's table.

An aggregate's own stream does not carry the global position (the notification id), so
`invoice explain` asks the table: one indexed query per aggregate, on SQLite (the rowid) and
PostgreSQL (the notification_id column) alike.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from uuid import UUID

from psycopg.sql import SQL, Identifier


def positions_of(recorder: Any, aggregate_id: UUID) -> dict[int, int]:
    """{version: position} of every stored event of the aggregate."""
    table = recorder.events_table_name
    if hasattr(recorder.datastore, "schema"):  # PostgreSQL
        statement = SQL(
            "SELECT originator_version, notification_id FROM {}.{} WHERE originator_id = %s"
        ).format(Identifier(recorder.datastore.schema), Identifier(table))
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, (aggregate_id,))
            rows = cursor.fetchall()
        return {int(r["originator_version"]): int(r["notification_id"]) for r in rows}
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(
            f"SELECT originator_version, rowid FROM {table} WHERE originator_id = ?",
            (aggregate_id.hex,),
        )
        rows = cursor.fetchall()
    return {int(r[0]): int(r[1]) for r in rows}


def existing(recorder: Any, aggregate_ids: Collection[UUID]) -> set[UUID]:
    """Which of these aggregates have any stored event (one indexed query)."""
    ids = list(aggregate_ids)
    if not ids:
        return set()
    table = recorder.events_table_name
    if hasattr(recorder.datastore, "schema"):  # PostgreSQL
        statement = SQL(
            "SELECT DISTINCT originator_id FROM {}.{} WHERE originator_id = ANY(%s)"
        ).format(Identifier(recorder.datastore.schema), Identifier(table))
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, (ids,))
            return {UUID(str(row["originator_id"])) for row in cursor.fetchall()}
    marks = ", ".join("?" for _ in ids)
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(
            f"SELECT DISTINCT originator_id FROM {table} WHERE originator_id IN ({marks})",
            [i.hex for i in ids],
        )
        return {UUID(str(row[0])) for row in cursor.fetchall()}


def latest_versions(recorder: Any, aggregate_ids: Collection[UUID]) -> dict[UUID, int]:
    """The stored version of each of these aggregates (absent ones left out; one query)."""
    ids = list(aggregate_ids)
    if not ids:
        return {}
    table = recorder.events_table_name
    if hasattr(recorder.datastore, "schema"):  # PostgreSQL
        statement = SQL(
            "SELECT originator_id, MAX(originator_version) AS version FROM {}.{} "
            "WHERE originator_id = ANY(%s) GROUP BY originator_id"
        ).format(Identifier(recorder.datastore.schema), Identifier(table))
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, (ids,))
            return {UUID(str(r["originator_id"])): int(r["version"]) for r in cursor.fetchall()}
    marks = ", ".join("?" for _ in ids)
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(
            f"SELECT originator_id, MAX(originator_version) FROM {table} "
            f"WHERE originator_id IN ({marks}) GROUP BY originator_id",
            [i.hex for i in ids],
        )
        return {UUID(str(row[0])): int(row[1]) for row in cursor.fetchall()}
