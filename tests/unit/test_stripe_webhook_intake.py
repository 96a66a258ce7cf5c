"""The Stripe webhook intake on SQLite, over HTTP: verified before anything is stored, stored
once, processed once, failures retried by `drain` with backoff, events naming no app kept as
unrouted, and 503 while Stripe is not configured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from eventsourcing.persistence import OperationalError
from fastapi.testclient import TestClient

from adapters.bootstrap import System, bootstrap
from adapters.http.app import create_app
from adapters.settings import Settings
from adapters.stripe.inbox import StripeInbox
from adapters.stripe.inbox_worker import InboxWorker
from adapters.stripe.intake import WebhookIntake, app_of, retry_delay
from domain.clock import SettableClock
from tests.factories import T0
from tests.stripe_signing import SECRET, RecordingProcessor, headers, sign, stripe_event
from tests.unit.http.support import assert_error

ROUTE = "/v1/webhooks/stripe"


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def system(tmp_path: Path, clock: SettableClock) -> Iterator[System]:
    built = bootstrap(Settings(database_url=f"sqlite:///{tmp_path / 'events.db'}"), clock)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def processor() -> RecordingProcessor:
    return RecordingProcessor()


def make_intake(system: System, processor: Any, clock: SettableClock) -> WebhookIntake:
    inbox = StripeInbox(system.ledger.recorder)
    inbox.ensure_table()
    return WebhookIntake(inbox, processor, SECRET, tolerance_seconds=300, now=clock.now)


@pytest.fixture
def intake(system: System, processor: RecordingProcessor, clock: SettableClock) -> WebhookIntake:
    built = make_intake(system, processor, clock)
    system.stripe = SimpleNamespace(intake=built)
    return built


@pytest.fixture
def client(system: System, intake: WebhookIntake) -> TestClient:
    return TestClient(create_app(system), raise_server_exceptions=False)


def deliver(client: TestClient, payload: bytes, **signing: Any) -> Any:
    return client.post(ROUTE, content=payload, headers=headers(payload, **signing))


def test_a_valid_event_is_stored_and_processed_once(
    client: TestClient, intake: WebhookIntake, processor: RecordingProcessor
) -> None:
    payload = stripe_event("evt_once", "invoice.paid")
    response = deliver(client, payload)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "duplicate": False, "status": "processed"}
    assert processor.calls == [("acme", _loads(payload))]
    [row] = intake.rows()
    assert row["event_id"] == "evt_once" and row["app_id"] == "acme"
    assert (row["status"], row["attempts"], row["outcome"]) == (
        "processed",
        1,
        "recorded invoice.paid",
    )
    assert row["received_at"] == T0 and row["processed_at"] == T0


def test_a_redelivery_is_acknowledged_as_a_duplicate_and_not_processed_again(
    client: TestClient, intake: WebhookIntake, processor: RecordingProcessor
) -> None:
    payload = stripe_event("evt_again")
    assert deliver(client, payload).status_code == 200
    again = deliver(client, payload)  # a new signature, the same event
    assert again.status_code == 200
    assert again.json() == {"received": True, "duplicate": True}
    assert processor.event_ids() == ["evt_again"]
    assert len(intake.rows()) == 1


def test_each_delivery_is_counted_by_its_outcome_on_metrics(
    client: TestClient, system: System, intake: WebhookIntake
) -> None:
    payload = stripe_event("evt_counted", "invoice.paid")
    deliver(client, payload)
    deliver(client, payload)
    client.post(ROUTE, content=stripe_event(), headers={"Stripe-Signature": "not a signature"})

    def counted(outcome: str) -> float:
        labels = {"provider": "stripe", "outcome": outcome}
        return system.metrics.value("tally_incoming_webhooks_total", labels)

    assert (counted("processed"), counted("duplicate"), counted("signature_invalid")) == (1, 1, 1)
    assert "tally_incoming_webhooks_total" in client.get("/metrics").text


@pytest.mark.parametrize(
    ("signature", "code"),
    [
        (None, "signature_missing"),
        ("", "signature_missing"),
        ("not a signature", "signature_invalid"),
        ("t=12345", "signature_invalid"),
    ],
)
def test_a_missing_or_malformed_signature_is_400_and_nothing_is_stored(
    client: TestClient, intake: WebhookIntake, signature: str | None, code: str
) -> None:
    sent = {} if signature is None else {"Stripe-Signature": signature}
    response = client.post(ROUTE, content=stripe_event(), headers=sent)
    assert_error(response, 400, code, field="Stripe-Signature")
    assert intake.rows() == []


def test_a_signature_with_another_secret_is_400(
    client: TestClient, intake: WebhookIntake, processor: RecordingProcessor
) -> None:
    response = deliver(client, stripe_event(), secret="whsec_someone_else")
    assert_error(response, 400, "signature_invalid", field="Stripe-Signature")
    assert "Stripe-Signature" in response.json()["error"]["message"]
    assert intake.rows() == [] and processor.calls == []


def test_a_body_altered_after_signing_is_400(client: TestClient, intake: WebhookIntake) -> None:
    signed = stripe_event("evt_altered", app_id="acme")
    altered = signed.replace(b"acme", b"evil")
    response = client.post(ROUTE, content=altered, headers=headers(signed))
    assert_error(response, 400, "signature_invalid", field="Stripe-Signature")
    assert intake.rows() == []


def test_a_timestamp_older_than_the_tolerance_is_400_stale(
    client: TestClient, intake: WebhookIntake
) -> None:
    payload = stripe_event("evt_old")
    response = deliver(client, payload, timestamp=int(time.time()) - 301)
    assert_error(response, 400, "signature_stale", field="Stripe-Signature")
    assert intake.rows() == []
    recent = deliver(client, payload, timestamp=int(time.time()) - 200)
    assert recent.status_code == 200, recent.text


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[1, 2]", b'{"type": "invoice.paid"}', b'{"id": "evt_x", "type": ""}'],
    ids=["not-json", "not-an-object", "no-id", "empty-type"],
)
def test_a_signed_body_that_is_no_event_is_400_naming_body(
    client: TestClient, intake: WebhookIntake, payload: bytes
) -> None:
    response = deliver(client, payload)
    assert_error(response, 400, "invalid_body", field="body")
    assert intake.rows() == []


def test_an_unknown_type_is_handed_to_the_processor(
    client: TestClient, processor: RecordingProcessor
) -> None:
    response = deliver(client, stripe_event("evt_new", "radar.early_fraud_warning.created"))
    assert response.status_code == 200
    assert processor.event_ids() == ["evt_new"]


def test_an_event_naming_no_app_is_kept_unrouted_and_never_processed(
    client: TestClient, intake: WebhookIntake, processor: RecordingProcessor, clock: SettableClock
) -> None:
    response = deliver(client, stripe_event("evt_stray", app_id=None))
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False, "status": "unrouted"}
    [row] = intake.rows(status="unrouted")
    assert row["event_id"] == "evt_stray" and row["app_id"] is None
    clock.advance(timedelta(hours=2))
    assert intake.drain() == 0
    assert processor.calls == [] and intake.rows(status="processed") == []


def test_a_processor_error_leaves_the_row_failed_and_drain_processes_it_later(
    system: System, clock: SettableClock
) -> None:
    processor = RecordingProcessor(failures=1)
    intake = make_intake(system, processor, clock)
    system.stripe = SimpleNamespace(intake=intake)
    client = TestClient(create_app(system), raise_server_exceptions=False)
    response = deliver(client, stripe_event("evt_flaky"))
    assert response.status_code == 200  # stored: Stripe need not deliver it again
    assert response.json()["status"] == "failed"
    [row] = intake.rows(status="failed")
    assert row["attempts"] == 1 and row["next_attempt_at"] == T0 + timedelta(seconds=5)
    assert row["last_error"] == "ConnectionError"  # not the message quoting customer data
    clock.advance(timedelta(seconds=4))
    assert intake.drain() == 0  # not due yet
    clock.advance(timedelta(seconds=1))
    assert intake.drain() == 1
    [done] = intake.rows()
    assert (done["status"], done["attempts"], done["last_error"]) == ("processed", 2, None)
    assert processor.event_ids() == ["evt_flaky", "evt_flaky"]
    assert intake.drain() == 0


def test_each_failed_attempt_doubles_the_wait(system: System, clock: SettableClock) -> None:
    intake = make_intake(system, RecordingProcessor(failures=3), clock)
    payload = stripe_event("evt_down")
    intake.receive(payload, sign(payload))
    waits = []
    for _ in range(3):
        [row] = intake.rows()
        waits.append(row["next_attempt_at"] - clock.now())
        clock.set(row["next_attempt_at"])
        intake.drain()
    assert waits == [timedelta(seconds=5), timedelta(seconds=10), timedelta(seconds=20)]
    assert intake.rows()[0]["status"] == "processed"


def test_the_backoff_stops_growing_at_an_hour() -> None:
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 10)] == [5, 10, 20, 2560]
    assert retry_delay(11) == retry_delay(500) == timedelta(hours=1)


def test_a_row_left_pending_by_a_crash_is_processed_by_drain(
    system: System, clock: SettableClock
) -> None:
    processor = RecordingProcessor()
    intake = make_intake(system, processor, clock)
    payload = stripe_event("evt_crashed")
    # stored, then the process died before processing it
    intake.inbox.insert(_loads(payload), "acme", payload.decode(), clock.now())
    clock.advance(timedelta(seconds=29))
    assert intake.drain() == 0  # maybe still being processed by its receiver
    clock.advance(timedelta(seconds=2))
    assert intake.drain() == 1
    assert processor.event_ids() == ["evt_crashed"]
    assert intake.rows()[0]["status"] == "processed"


def test_the_worker_drains_in_the_background(system: System, clock: SettableClock) -> None:
    processor = RecordingProcessor(failures=1)
    intake = make_intake(system, processor, clock)
    payload = stripe_event("evt_worker")
    intake.receive(payload, sign(payload))
    clock.advance(timedelta(seconds=5))
    worker = InboxWorker(intake, poll_seconds=0.01)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while intake.rows()[0]["status"] != "processed" and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        worker.stop()
    assert intake.rows()[0]["status"] == "processed"
    assert processor.event_ids() == ["evt_worker", "evt_worker"]


def test_the_worker_runs_as_a_task_beside_the_others(system: System, clock: SettableClock) -> None:
    processor = RecordingProcessor(failures=1)
    intake = make_intake(system, processor, clock)
    payload = stripe_event("evt_task")
    intake.receive(payload, sign(payload))
    clock.advance(timedelta(seconds=5))
    worker = InboxWorker(intake, poll_seconds=0.01)

    async def until_processed() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        for _ in range(1000):
            if processor.event_ids() == ["evt_task", "evt_task"]:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(until_processed())
    assert intake.rows()[0]["status"] == "processed"


def test_the_app_is_read_from_the_objects_metadata() -> None:
    customer = {"id": "cus_1", "object": "customer", "metadata": {"tally_app_id": "acme"}}
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "metadata": {},
        "parent": {"subscription_details": {"metadata": {"tally_app_id": "globex"}}},
    }
    assert app_of(_loads(stripe_event(obj=customer))) == "acme"
    assert app_of(_loads(stripe_event(obj=invoice))) == "globex"
    assert app_of(_loads(stripe_event(obj={"id": "ch_1", "metadata": None}))) is None
    assert app_of({"id": "evt", "type": "x", "data": "odd"}) is None


def test_503_not_configured_without_stripe(system: System) -> None:
    client = TestClient(create_app(system), raise_server_exceptions=False)
    payload = stripe_event()
    for stripe in (None, SimpleNamespace(intake=None)):
        system.stripe = stripe
        response = client.post(ROUTE, content=payload, headers=headers(payload))
        assert_error(response, 503, "not_configured")
        assert "TALLY_STRIPE_WEBHOOK_SECRET" in response.json()["error"]["message"]


class DownInbox(StripeInbox):
    def insert(self, *args: Any, **kwargs: Any) -> bool:
        raise OperationalError("database is locked")


def test_503_when_the_inbox_cannot_store_the_event(
    system: System, processor: RecordingProcessor, clock: SettableClock
) -> None:
    inbox = DownInbox(system.ledger.recorder)
    system.stripe = SimpleNamespace(intake=WebhookIntake(inbox, processor, SECRET, now=clock.now))
    response = deliver(
        TestClient(create_app(system), raise_server_exceptions=False), stripe_event()
    )
    assert_error(response, 503, "unavailable")
    assert response.headers["Retry-After"]
    assert processor.calls == []


def test_a_body_too_large_is_refused_unstored(client: TestClient, intake: WebhookIntake) -> None:
    huge = b"{" + b" " * (3 * 1024 * 1024) + b"}"
    response = client.post(ROUTE, content=huge, headers=headers(huge))
    assert_error(response, 413, "payload_too_large")
    assert intake.rows() == []


def test_the_route_is_not_in_the_api_clients_schema(system: System) -> None:
    assert ROUTE not in create_app(system).openapi()["paths"]


def _loads(payload: bytes) -> dict[str, Any]:
    return dict(orjson.loads(payload))
