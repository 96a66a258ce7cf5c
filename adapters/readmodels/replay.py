"""Replay: rebuild a read model from position 0 aside, then switch over in one transaction.

Readers never see a half-built model: the rebuild writes shadow tables; the switch locks the
projection's tracking row (so the live projector waits), applies the events committed since
the rebuild started, renames the shadow tables into place and records the position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.eventstore.envelopes import iter_envelopes, read_envelopes
from adapters.readmodels.sql_store import SqlViewTx, ViewStore
from projections.base import Projector
from projections.envelope import EventEnvelope

SHADOW = "__rebuild"
RETIRED = "__retired"

Progress = Callable[[int, int], None]


def replay(
    views: ViewStore,
    recorder: Any,
    projector: Projector,
    progress: Progress | None = None,
    batch: int = 5000,
) -> int:
    """Rebuild one projector's tables from scratch; returns the position it reached."""
    _drop(views, projector, SHADOW)
    views.ensure(projector, SHADOW)
    head = recorder.max_notification_id() or 0
    position = 0
    for envelopes in iter_envelopes(recorder, 0, batch, stop=head, topics=projector.HANDLES):
        with views.transaction() as conn:
            _apply(SqlViewTx(views, conn, SHADOW), projector, envelopes)
        position = envelopes[-1].position
        if progress:
            progress(position, head)
    position = _switch(views, recorder, projector, max(position, head))
    projector.after_rebuild()
    if progress:
        progress(position, position)
    return position


def _apply(tx: SqlViewTx, projector: Projector, envelopes: list[EventEnvelope]) -> None:
    projector.prefetch(envelopes, tx)
    for event in envelopes:
        if event.type in projector.HANDLES:
            projector.apply(event, tx)
    tx.flush()


def _switch(views: ViewStore, recorder: Any, projector: Projector, position: int) -> int:
    with views.transaction() as conn:
        views.position(projector.NAME, conn, lock=True)  # the live projector waits here
        while True:  # catch up with what was committed during the rebuild
            envelopes = read_envelopes(recorder, position, 5000, topics=projector.HANDLES)
            if not envelopes:
                break
            _apply(SqlViewTx(views, conn, SHADOW), projector, envelopes)
            position = envelopes[-1].position
        for logical in projector.TABLES:
            live = views.physical(logical)
            views.execute(conn, f"ALTER TABLE {live} RENAME TO {_bare(live + RETIRED)}")
            shadow = views.physical(logical, SHADOW)
            views.execute(conn, f"ALTER TABLE {shadow} RENAME TO {_bare(live)}")
            views.execute(conn, f"DROP TABLE {live + RETIRED}")
        views.set_position(conn, projector.NAME, position)
    return position


def _drop(views: ViewStore, projector: Projector, suffix: str) -> None:
    with views.transaction() as conn:
        for logical in projector.TABLES:
            views.execute(conn, f"DROP TABLE IF EXISTS {views.physical(logical, suffix)}")


def _bare(name: str) -> str:
    """RENAME TO takes an unqualified name (the table stays in its schema)."""
    return name.rsplit(".", 1)[-1]
