"""Tamper evidence on SQLite and real PostgreSQL: the sealer chains every event of each app,
and verification finds a stored event edited, deleted, moved or slipped in with SQL, at its
position; events written by several threads at once are each sealed once, in order."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from adapters.bootstrap import System
from adapters.cli.main import app as cli
from adapters.eventstore.chain import EDITED, MISSING, REORDERED, UNSEALED
from adapters.eventstore.envelopes import iter_envelopes
from adapters.eventstore.seal import Sealer, SealStore, verify_all, verify_app
from adapters.eventstore.seal_worker import SealerWorker, sealer_lock
from tests.factories import ok


def define_plans(system: System, app_id: str, count: int, prefix: str = "plan") -> None:
    for i in range(count):
        ok(
            system.dispatch(
                "define_plan",
                {
                    "app_id": app_id,
                    "plan_key": f"{prefix}-{i}",
                    "name": f"Plan {i}",
                    "base_price": {"amount": 1000 + i, "currency": "USD"},
                },
            )
        )


def positions(system: System, app_id: str) -> list[int]:
    """The app's events' positions, from the log itself."""
    return [
        envelope.position
        for batch in iter_envelopes(system.ledger.recorder)
        for envelope in batch
        if envelope.app_id == app_id
    ]


def store_of(system: System) -> SealStore:
    return SealStore(system.ledger.recorder)


def sql(system: System, statement: str, params: list[Any]) -> None:
    """Run SQL on the event store as someone with database access would."""
    store = store_of(system)
    text = statement.format(**store.names)
    if store.postgres:
        text = text.replace("?", "%s")
    with store.datastore.transaction(commit=True) as cursor:
        cursor.execute(text, params)


def sealed(system: System, acme: int = 5, globex: int = 3) -> Sealer:
    define_plans(system, "acme", acme)
    define_plans(system, "globex", globex)
    sealer = Sealer(store_of(system))
    sealer.seal_pending()
    return sealer


def test_an_intact_chain_verifies_for_each_app(system: System) -> None:
    assert sealed(system).sealed == 8
    store = store_of(system)
    for app_id, count in (("acme", 5), ("globex", 3)):
        result = verify_app(store, app_id)
        assert result.intact, result
        assert (result.checked, result.not_yet_sealed) == (count, 0)
        assert result.sealed_through == max(positions(system, "acme") + positions(system, "globex"))
    assert [(r.app_id, r.checked) for r in verify_all(store)] == [("acme", 5), ("globex", 3)]
    assert Sealer(store).seal_pending() == 0  # sealed once: nothing is sealed again


def test_editing_one_stored_events_state_is_found_at_that_position(system: System) -> None:
    sealed(system)
    target = positions(system, "acme")[2]
    state = store_of(system).events_at([target])[target].state
    assert b'"Plan 2"' in state
    sql(
        system,
        "UPDATE {events} SET state = ? WHERE {pos} = ?",
        [state.replace(b'"Plan 2"', b'"Plan 9"'), target],
    )
    result = verify_app(store_of(system), "acme")
    assert result.broken is not None, result
    assert (result.broken.position, result.broken.reason) == (target, EDITED)
    assert result.checked == 2  # the entries before it still hold
    assert verify_app(store_of(system), "globex").intact  # another app's chain is its own


def test_deleting_one_stored_event_is_found(system: System) -> None:
    sealed(system)
    target = positions(system, "globex")[1]
    sql(system, "DELETE FROM {events} WHERE {pos} = ?", [target])
    result = verify_app(store_of(system), "globex")
    assert result.broken is not None, result
    assert (result.broken.position, result.broken.reason, result.checked) == (target, MISSING, 1)


def test_deleting_the_last_event_is_found(system: System) -> None:
    sealed(system)
    target = positions(system, "acme")[-1]
    sql(system, "DELETE FROM {events} WHERE {pos} = ?", [target])
    broken = verify_app(store_of(system), "acme").broken
    assert broken is not None and (broken.position, broken.reason) == (target, MISSING)


def test_moving_an_event_to_another_position_is_found(system: System) -> None:
    sealed(system)
    target = positions(system, "acme")[1]
    sql(system, "UPDATE {events} SET {pos} = ? WHERE {pos} = ?", [10_000, target])
    broken = verify_app(store_of(system), "acme").broken
    assert broken is not None and (broken.position, broken.reason) == (target, REORDERED)
    assert "10000" in broken.detail


def test_editing_a_seal_is_found(system: System) -> None:
    sealed(system)
    target = positions(system, "acme")[3]
    sql(system, "UPDATE {seals} SET hash = ? WHERE position = ?", ["ab" * 32, target])
    broken = verify_app(store_of(system), "acme").broken
    assert broken is not None and (broken.position, broken.reason) == (target, EDITED)


def test_newer_events_are_not_covered_yet_then_sealed(system: System) -> None:
    sealer = sealed(system)
    define_plans(system, "acme", 2, prefix="later")
    result = verify_app(store_of(system), "acme")
    assert result.intact and (result.checked, result.not_yet_sealed) == (5, 2)
    assert sealer.seal_pending() == 2
    result = verify_app(store_of(system), "acme")
    assert result.intact and (result.checked, result.not_yet_sealed) == (7, 0)


def _take_out(system: System, position: int) -> list[Any]:
    """Delete an event, keeping its columns to put it back later (a late commit)."""
    event = store_of(system).events_at([position])[position]
    sql(system, "DELETE FROM {events} WHERE {pos} = ?", [position])
    originator = event.originator_id if store_of(system).postgres else event.originator_id.hex
    return [originator, event.version, event.topic, event.state, position]


def _put_back(system: System, columns: list[Any]) -> None:
    sql(
        system,
        "INSERT INTO {events} (originator_id, originator_version, topic, state, {pos}) "
        "VALUES (?, ?, ?, ?, ?)",
        columns,
    )


def test_a_late_commit_below_the_head_is_still_sealed(system: System) -> None:
    define_plans(system, "acme", 4)
    late = positions(system, "acme")[1]
    columns = _take_out(system, late)  # not committed yet when the sealer passes
    sealer = Sealer(store_of(system))
    assert sealer.seal_pending() == 3
    _put_back(system, columns)  # commits now, below the sealed head
    assert verify_app(store_of(system), "acme").not_yet_sealed == 1
    assert sealer.seal_pending() == 1
    result = verify_app(store_of(system), "acme")
    assert result.intact and result.checked == 4, result


def test_an_event_slipped_in_far_below_the_head_is_found(system: System) -> None:
    define_plans(system, "acme", 4)
    slipped = positions(system, "acme")[1]
    columns = _take_out(system, slipped)
    assert Sealer(store_of(system), overlap=0).seal_pending() == 3
    _put_back(system, columns)
    broken = verify_app(store_of(system), "acme", overlap=0).broken
    assert broken is not None and (broken.position, broken.reason) == (slipped, UNSEALED)


def test_events_written_by_many_threads_are_sealed_once_in_order(system: System) -> None:
    writing = threading.Event()
    writing.set()
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            define_plans(system, ("acme", "globex")[n % 2], 15, prefix=f"w{n}")
        except BaseException as error:
            failures.append(error)

    def sealer_loop() -> None:
        sealer = Sealer(store_of(system), batch=7)  # small batches: many passes, many races
        try:
            while writing.is_set():
                sealer.seal_pending()
        except BaseException as error:
            failures.append(error)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    sealers = [threading.Thread(target=sealer_loop) for _ in range(2)]
    for thread in sealers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    writing.clear()
    for thread in sealers:
        thread.join()
    Sealer(store_of(system)).seal_pending()
    assert not failures, failures
    _assert_sealed_once_in_order(system)


def _assert_sealed_once_in_order(system: System) -> None:
    store = store_of(system)
    for app_id in ("acme", "globex"):
        seals = store.seals_of(app_id, 0, 1000)
        assert [s.seq for s in seals] == list(range(1, 31))
        assert [s.position for s in seals] == positions(system, app_id)  # position order
        result = verify_app(store, app_id)
        assert result.intact and result.checked == 30, result


def test_the_sealer_worker_seals_as_events_commit(system: System) -> None:
    worker = SealerWorker(Sealer(store_of(system)), sealer_lock(system), poll_seconds=0.02)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.to_thread(define_plans, system, "acme", 3)
        deadline = time.monotonic() + 10
        while worker.sealer.sealed < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert worker.sealer.sealed == 3
    assert verify_app(store_of(system), "acme").checked == 3
    assert sealer_lock(system).try_acquire()  # released at stop


def _keys(system: System, app_id: str) -> dict[str, str]:
    return {
        scope: ok(system.dispatch("create_api_key", {"app_id": app_id, "scope": scope}))["api_key"]
        for scope in ("read", "admin")
    }


def test_the_audit_route_verifies_the_callers_app_only(system: System) -> None:
    from adapters.http.app import create_app

    client = TestClient(create_app(system), raise_server_exceptions=False)
    acme, globex = _keys(system, "acme"), _keys(system, "globex")
    sealed(system, acme=4, globex=2)  # + 2 key events each

    def verify(keys: dict[str, str], scope: str = "admin") -> Any:
        return client.get("/v1/audit/verify", headers={"Authorization": f"Bearer {keys[scope]}"})

    assert verify(acme, "read").status_code == 403
    body = verify(acme).json()
    assert (body["app_id"], body["intact"], body["checked"], body["first_break"]) == (
        "acme",
        True,
        6,
        None,
    )
    target = positions(system, "acme")[3]
    sql(system, "DELETE FROM {events} WHERE {pos} = ?", [target])
    body = verify(acme).json()
    assert body["intact"] is False
    assert (body["first_break"]["position"], body["first_break"]["reason"]) == (target, MISSING)
    other = verify(globex).json()
    assert (other["app_id"], other["intact"], other["checked"]) == ("globex", True, 4)


def test_tally_verify_exits_1_naming_the_break(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapters.bootstrap import bootstrap
    from adapters.settings import Settings

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("TALLY_DATABASE_URL", url)
    for name in ("TALLY_VIEWS_URL", "TALLY_NATS_URL", "TALLY_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    system = bootstrap(Settings(database_url=url), deliver_in_process=False)
    try:
        define_plans(system, "acme", 3)
        runner = CliRunner()
        sealing = runner.invoke(cli, ["seal"])
        assert sealing.exit_code == 0 and "sealed 3 events" in sealing.output, sealing.output
        intact = runner.invoke(cli, ["verify", "--app", "acme"])
        assert intact.exit_code == 0, intact.output
        assert "chain intact (3 events)" in intact.output
        target = positions(system, "acme")[1]
        sql(system, "UPDATE {events} SET state = ? WHERE {pos} = ?", [b'{"app_id":"acme"}', target])
    finally:
        system.close()
    broken = CliRunner().invoke(cli, ["verify"])
    assert broken.exit_code == 1, broken.output
    assert f"acme: chain broken at position {target}" in broken.output
    assert "edited" in broken.output


def test_serve_runs_one_sealer_unless_the_workers_run_apart(tmp_path: Path) -> None:
    from adapters.bootstrap import bootstrap
    from adapters.http.serve import _workers
    from adapters.settings import Settings

    for serve_workers, expected in ((True, 1), (False, 0)):
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / f'{serve_workers}.db'}",
            serve_workers=serve_workers,
        )
        system = bootstrap(settings, deliver_in_process=False)
        try:
            found = [w for w in _workers(system) if isinstance(w, SealerWorker)]
            assert len(found) == expected
        finally:
            system.close()
