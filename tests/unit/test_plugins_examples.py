"""The three example plugins: the signed webhook emitter against a real local HTTP server
(signature, retries, delivery log), the audit exporter (JSON lines) and the business-metrics
collector (counters on /metrics), each fed by the hook runner from real commands."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from adapters.bootstrap import System, bootstrap
from adapters.eventstore.envelopes import read_envelopes
from adapters.plugins.examples.audit import AuditExporter
from adapters.plugins.examples.business_metrics import BusinessMetrics
from adapters.plugins.examples.webhooks import (
    SIGNATURE_HEADER,
    WebhookDeliveryFailed,
    WebhookEmitter,
    sign,
    verify,
)
from adapters.plugins.wiring import hook_runner
from adapters.settings import Settings
from domain.clock import SettableClock
from projections.envelope import EventEnvelope
from tests.factories import T0, ok

SECRET = "whsec_test"


class Receiver:
    """A local HTTP server that answers the first `failures` posts 500, then 200."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                failing = len(receiver.received) <= receiver.failures
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


@pytest.fixture
def make_system(tmp_path: Path) -> Iterator[Any]:
    built: list[System] = []

    def make(*plugins: object) -> System:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'events.db'}",
            plugins_discover=False,
            plugin_retry_seconds=0.01,
            plugin_max_attempts=2,
        )
        system = bootstrap(settings, SettableClock(T0), deliver_in_process=False, plugins=plugins)
        built.append(system)
        return system

    yield make
    for system in built:
        system.close()


def some_events(system: System) -> None:
    base = {"amount": 1000, "currency": "USD"}
    ok(
        system.dispatch(
            "define_plan", {"app_id": "acme", "plan_key": "pro", "name": "Pro", "base_price": base}
        )
    )
    ok(
        system.dispatch(
            "start_subscription", {"app_id": "acme", "tenant_id": "t1", "plan_key": "pro"}
        )
    )


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- signing ----------------------------------------------------------------------------


def test_the_signature_is_an_hmac_of_the_timestamp_and_body() -> None:
    header = sign(SECRET, 1_700_000_000, b'{"a":1}')
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify(SECRET, header, b'{"a":1}', now=1_700_000_100)
    assert not verify(SECRET, header, b'{"a":2}', now=1_700_000_100)  # body changed
    assert not verify("other", header, b'{"a":1}', now=1_700_000_100)  # wrong secret
    assert not verify(SECRET, header, b'{"a":1}', now=1_700_000_301 + 300)  # too old


# --- the webhook emitter ----------------------------------------------------------------


def test_every_event_is_posted_signed_and_logged(
    make_system: Any, receivers: list[Receiver], tmp_path: Path
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    log_path = tmp_path / "deliveries.jsonl"
    system = make_system(WebhookEmitter(receiver.url, SECRET, log_path))
    some_events(system)
    hook_runner(system).catch_up()
    head = system.ledger.recorder.max_notification_id()
    assert len(receiver.received) == head
    headers, body = receiver.received[0]
    assert verify(SECRET, headers[SIGNATURE_HEADER], body)
    assert headers["Content-Type"] == "application/json"
    event = EventEnvelope.model_validate_json(body)
    assert (event.type, event.position) == ("PlanDefined", 1)
    logged = log_lines(log_path)
    assert [(e["position"], e["attempt"], e["status"]) for e in logged] == [
        (p, 1, 200) for p in range(1, head + 1)
    ]


def test_a_failed_post_is_retried_with_backoff(receivers: list[Receiver], tmp_path: Path) -> None:
    receiver = Receiver(failures=2)
    receivers.append(receiver)
    log_path = tmp_path / "deliveries.jsonl"
    emitter = WebhookEmitter(receiver.url, SECRET, log_path, attempts=3, backoff_seconds=0.01)
    emitter.on_event(envelope())
    assert len(receiver.received) == 3
    assert [(e["attempt"], e["status"], e["result"]) for e in log_lines(log_path)] == [
        (1, 500, "HTTP 500"),
        (2, 500, "HTTP 500"),
        (3, 200, "ok"),
    ]


def test_an_unreachable_receiver_fails_the_hook_which_is_then_dead_lettered(
    make_system: Any, tmp_path: Path
) -> None:
    from tests.factories import free_port

    url = f"http://127.0.0.1:{free_port()}/hooks"
    emitter = WebhookEmitter(url, SECRET, tmp_path / "d.jsonl", attempts=2, backoff_seconds=0.01)
    with pytest.raises(WebhookDeliveryFailed):
        emitter.on_event(envelope())
    system = make_system(emitter)
    some_events(system)
    runner = hook_runner(system)
    assert runner.catch_up() == system.ledger.recorder.max_notification_id()
    letters = runner.dead_letters()
    assert {letter["plugin"] for letter in letters} == {"webhooks"}
    assert all("WebhookDeliveryFailed" in letter["error"] for letter in letters)
    statuses = {entry["status"] for entry in log_lines(tmp_path / "d.jsonl")}
    assert statuses == {None}  # every attempt logged, none answered


def envelope() -> EventEnvelope:
    from uuid import uuid4

    return EventEnvelope(
        id=uuid4(),
        type="PlanDefined",
        position=7,
        aggregate_id=uuid4(),
        aggregate_type="plan",
        version=1,
        app_id="acme",
        tenant_id=None,
        occurred_at=T0.isoformat(),
        recorded_at=None,
        schema_version=1,
        data={"plan_key": "pro"},
    )


# --- the audit exporter -----------------------------------------------------------------


def test_the_audit_exporter_writes_one_json_line_per_event(
    make_system: Any, tmp_path: Path
) -> None:
    path = tmp_path / "audit" / "events.jsonl"
    system = make_system(AuditExporter(path))
    some_events(system)
    hook_runner(system).catch_up()
    exported = [EventEnvelope.model_validate(line) for line in log_lines(path)]
    assert exported == read_envelopes(system.ledger.recorder, 0, 100)  # the log, as published
    assert "SubscriptionStarted" in [e.type for e in exported]


# --- business metrics -------------------------------------------------------------------


def test_business_metrics_count_from_events_and_show_on_metrics(make_system: Any) -> None:
    from fastapi.testclient import TestClient

    from adapters.http.app import create_app

    collector = BusinessMetrics()
    system = make_system(collector)
    some_events(system)
    subscription = system.dispatch(
        "start_subscription", {"app_id": "acme", "tenant_id": "t2", "plan_key": "pro"}
    )
    ok(
        system.dispatch(
            "cancel_subscription",
            {"app_id": "acme", "subscription_id": ok(subscription)["subscription_id"]},
        )
    )
    hook_runner(system).catch_up()
    with TestClient(create_app(system)) as client:
        text = client.get("/metrics").text
    started = 'tally_business_subscriptions_total{app="acme",change="started",plan="pro"} 2.0'
    canceled = 'tally_business_subscriptions_total{app="acme",change="canceled",plan="pro"} 1.0'
    assert started in text and canceled in text
    hook_calls = 'hook="on_subscription_started",outcome="ok",plugin="business-metrics"'
    assert f"tally_plugin_calls_total{{{hook_calls}}} 2.0" in text


def test_business_metrics_count_paid_invoices_by_currency() -> None:
    collector = BusinessMetrics()
    paid = envelope().model_copy(
        update={"type": "InvoicePaid", "data": {"amount": {"amount": 1250, "currency": "EUR"}}}
    )
    collector.on_invoice_paid(paid)
    collector.on_invoice_paid(paid)
    registry = collector.collector_registry
    assert (
        registry.get_sample_value(
            "tally_business_paid_minor_units_total", {"app": "acme", "currency": "EUR"}
        )
        == 2500
    )
    assert (
        registry.get_sample_value(
            "tally_business_invoices_total", {"app": "acme", "outcome": "paid"}
        )
        == 2
    )
