"""The Stripe webhook inbox on real PostgreSQL: concurrent deliveries of one event process it
once, refused requests store nothing, failures and crashed rows are drained, and two drains
never take the same row."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from adapters.bootstrap import System, bootstrap
from adapters.http.app import create_app
from adapters.settings import Settings
from adapters.stripe.inbox import TABLE, StripeInbox
from adapters.stripe.intake import WebhookIntake
from domain.clock import SettableClock
from tests.factories import T0
from tests.stripe_signing import SECRET, RecordingProcessor, headers, stripe_event

pytestmark = pytest.mark.postgres

ROUTE = "/v1/webhooks/stripe"


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def system(pg_url: str, pg_schema: str, clock: SettableClock) -> Iterator[System]:
    built = bootstrap(Settings(database_url=pg_url), clock, schema=pg_schema)
    try:
        yield built
    finally:
        built.close()


def make_intake(system: System, processor: Any, clock: SettableClock) -> WebhookIntake:
    inbox = StripeInbox(system.ledger.recorder)
    inbox.ensure_table()
    intake = WebhookIntake(inbox, processor, SECRET, tolerance_seconds=300, now=clock.now)
    system.stripe = SimpleNamespace(intake=intake)
    return intake


def client_of(system: System) -> TestClient:
    return TestClient(create_app(system), raise_server_exceptions=False)


def deliver(client: TestClient, payload: bytes, **signing: Any) -> Any:
    return client.post(ROUTE, content=payload, headers=headers(payload, **signing))


def in_threads(count: int, work: Callable[[], Any]) -> list[Any]:
    """Run `work` in `count` threads released together; their results (or errors)."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_a_valid_event_is_processed_once(system: System, clock: SettableClock) -> None:
    processor = RecordingProcessor()
    intake = make_intake(system, processor, clock)
    response = deliver(client_of(system), stripe_event("evt_pg_once"))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "processed"
    assert processor.event_ids() == ["evt_pg_once"]
    row = intake.inbox.row("evt_pg_once")
    assert row is not None and row["status"] == "processed" and row["received_at"] == T0
    assert row["payload"]["id"] == "evt_pg_once"


def test_three_concurrent_deliveries_of_one_event_process_it_once(
    system: System, clock: SettableClock
) -> None:
    processor = RecordingProcessor(delay=0.3)  # the others arrive while it is processed
    intake = make_intake(system, processor, clock)
    client = client_of(system)
    payload = stripe_event("evt_pg_thrice")
    responses = in_threads(3, lambda: deliver(client, payload))
    assert [r.status_code for r in responses] == [200, 200, 200], responses
    assert sorted(r.json()["duplicate"] for r in responses) == [False, True, True]
    assert processor.event_ids() == ["evt_pg_thrice"]
    assert [row["status"] for row in intake.rows()] == ["processed"]


@pytest.mark.parametrize(
    ("signing", "code"),
    [
        ({"secret": "whsec_someone_else"}, "signature_invalid"),
        ({"timestamp": int(time.time()) - 3600}, "signature_stale"),
    ],
    ids=["bad-signature", "stale"],
)
def test_a_refused_signature_stores_nothing(
    system: System, clock: SettableClock, signing: dict[str, Any], code: str
) -> None:
    intake = make_intake(system, RecordingProcessor(), clock)
    response = deliver(client_of(system), stripe_event("evt_pg_refused"), **signing)
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert intake.rows() == []


def test_an_altered_body_or_no_header_stores_nothing(system: System, clock: SettableClock) -> None:
    intake = make_intake(system, RecordingProcessor(), clock)
    client = client_of(system)
    signed = stripe_event("evt_pg_altered")
    altered = client.post(ROUTE, content=signed + b" ", headers=headers(signed))
    assert altered.json()["error"]["code"] == "signature_invalid"
    missing = client.post(ROUTE, content=signed)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "signature_missing"
    assert intake.rows() == []


def test_an_event_naming_no_app_is_an_unrouted_row(system: System, clock: SettableClock) -> None:
    processor = RecordingProcessor()
    intake = make_intake(system, processor, clock)
    response = deliver(client_of(system), stripe_event("evt_pg_stray", app_id=None))
    assert response.status_code == 200 and response.json()["status"] == "unrouted"
    assert [row["event_id"] for row in intake.rows(status="unrouted")] == ["evt_pg_stray"]
    assert processor.calls == []


def test_a_failure_is_retried_by_drain(system: System, clock: SettableClock) -> None:
    processor = RecordingProcessor(failures=1)
    intake = make_intake(system, processor, clock)
    assert deliver(client_of(system), stripe_event("evt_pg_flaky")).json()["status"] == "failed"
    assert intake.drain() == 0
    clock.advance(timedelta(seconds=5))
    assert intake.drain() == 1
    [row] = intake.rows()
    assert (row["status"], row["attempts"]) == ("processed", 2)


def test_a_row_a_crash_left_pending_is_drained(
    system: System, clock: SettableClock, pg_url: str, pg_schema: str
) -> None:
    processor = RecordingProcessor()
    intake = make_intake(system, processor, clock)
    payload = stripe_event("evt_pg_crashed")
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as a receiver that then died
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (event_id, app_id, type, payload, received_at, status) "
                "VALUES (%s, 'acme', 'invoice.paid', %s, %s, 'pending')"
            ).format(sql.Identifier(pg_schema, TABLE)),
            ("evt_pg_crashed", payload.decode(), T0 - timedelta(minutes=1)),
        )
    assert intake.drain() == 1
    assert processor.calls == [("acme", orjson.loads(payload))]
    assert intake.rows()[0]["status"] == "processed"


def test_two_drains_at_once_never_take_the_same_row(system: System, clock: SettableClock) -> None:
    processor = RecordingProcessor(delay=0.02)
    intake = make_intake(system, processor, clock)
    for n in range(30):
        payload = stripe_event(f"evt_pg_{n:02}")
        intake.inbox.insert(orjson.loads(payload), "acme", payload.decode(), clock.now())
    clock.advance(timedelta(minutes=1))
    drained = in_threads(3, lambda: intake.drain(limit=10))
    assert sum(drained) == 30, drained
    assert sorted(processor.event_ids()) == [f"evt_pg_{n:02}" for n in range(30)]
    assert {row["status"] for row in intake.rows()} == {"processed"}


def test_the_table_is_created_safely_by_processes_starting_together(system: System) -> None:
    inboxes = [StripeInbox(system.ledger.recorder) for _ in range(4)]
    results = in_threads(4, lambda: inboxes.pop().ensure_table())
    assert results == [None] * 4, results
    StripeInbox(system.ledger.recorder).ensure_table()  # and again, once it exists
