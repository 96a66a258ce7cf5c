"""Observability on the embedded system, in process: JSON and console logs (each line parses,
carries the request id), one access line per request, the correlation id from X-Request-Id
or the command_id into every log line and the recorded events, spans exported (to memory and
to a real OTLP/HTTP receiver), and each /metrics figure moving after the action that should
move it. The NATS side (headers, the projector continuing the trace) is in
tests/integration/test_observability_nats.py."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adapters.bootstrap import System, bootstrap
from adapters.eventstore.envelopes import iter_envelopes
from adapters.http.app import create_app
from adapters.observability import tracing
from adapters.observability.logs import configure_logging
from adapters.plugins.examples.webhooks import WebhookDeliveryFailed, WebhookEmitter
from adapters.settings import Settings
from domain.clock import SettableClock
from projections.envelope import EventEnvelope
from tests.factories import T0, free_port
from tests.tracing_support import named, spans_fixture  # noqa: F401  (fixture)
from tests.unit.http.support import Api

PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 9900, "currency": "USD"},
    "features": [{"key": "api-calls", "kind": "metered", "limit": 3, "enforcement": "hard"}],
}


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """structlog (and the root logger) writing JSON lines into a buffer; restored after."""
    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("json", "debug", stream)
    try:
        yield stream
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


def lines(stream: io.StringIO, since: int = 0) -> list[dict[str, Any]]:
    """Every line written (from character `since` on), each parsed; the test client's own
    lines (httpx, asyncio: the caller's side) left out."""
    parsed = [json.loads(line) for line in stream.getvalue()[since:].splitlines()]
    return [line for line in parsed if line.get("logger") not in ("httpx", "asyncio")]


def make_system(tmp_path: Path, **options: Any) -> System:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'events.db'}", plugins_discover=False)
    return bootstrap(settings, SettableClock(T0), **options)


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    built = make_system(tmp_path)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def acme(system: System) -> Api:
    return Api(TestClient(create_app(system), raise_server_exceptions=False), system, "acme")


def events_of(system: System, event_type: str) -> list[EventEnvelope]:
    found = [e for batch in iter_envelopes(system.ledger.recorder) for e in batch]
    return [e for e in found if e.type == event_type]


# --- logs ---------------------------------------------------------------------------------


def test_json_lines_parse_and_carry_the_request_and_command_context(
    logs: io.StringIO, acme: Api
) -> None:
    headers = {"X-Request-Id": "req-42", "Idempotency-Key": "define-pro"}
    since = len(logs.getvalue())
    response = acme.call("POST", "/v1/plans", json=PLAN, headers=headers)
    assert response.status_code == 201 and response.headers["X-Request-Id"] == "req-42"
    written = lines(logs, since)
    done = [line for line in written if line["event"] == "command_done"]
    assert done and done[0]["command"] == "define_plan"
    assert done[0]["command_id"] == "define-pro" and done[0]["correlation_id"] == "req-42"
    assert done[0]["request_id"] == "req-42" and done[0]["outcome"] == "ok"
    assert {line["event"] for line in written} == {"command_done", "http_request"}
    assert all(line["request_id"] == "req-42" for line in written)
    assert all({"timestamp", "level"} <= set(line) for line in written)


def test_one_access_line_per_request_with_route_status_and_time(
    logs: io.StringIO, acme: Api
) -> None:
    acme.call("POST", "/v1/plans", json=PLAN)
    acme.call("GET", "/v1/plans/pro", scope="read")
    acme.call("GET", "/v1/plans/nope", scope="read", headers={"X-Request-Id": "bad id!"})
    acme.client.get("/live")
    access = [line for line in lines(logs) if line["event"] == "http_request"]
    assert [(a["method"], a["route"], a["status"]) for a in access] == [
        ("POST", "/v1/plans", 201),
        ("GET", "/v1/plans/{plan_key}", 200),
        ("GET", "/v1/plans/{plan_key}", 404),
        ("GET", "/live", 200),
    ]
    assert access[2]["path"] == "/v1/plans/nope" and access[2]["request_id"] != "bad id!"
    assert len({a["request_id"] for a in access}) == 4  # a fresh id for each request
    assert all(isinstance(a["ms"], float) and a["level"] == "info" for a in access)


def test_the_access_log_can_be_turned_off(logs: io.StringIO, tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'e.db'}", access_log=False)
    system = bootstrap(settings, SettableClock(T0))
    try:
        TestClient(create_app(system)).get("/live")
    finally:
        system.close()
    assert not [line for line in lines(logs) if line["event"] == "http_request"]


def test_console_format_and_the_info_level_hide_debug_lines() -> None:
    saved = structlog.get_config()
    stream = io.StringIO()
    try:
        configure_logging("console", "info", stream)
        structlog.get_logger("t").debug("relay_published", count=3)
        structlog.get_logger("t").info("relay_active", lock="x")
    finally:
        structlog.configure(**saved)
    text = stream.getvalue()
    assert "relay_active" in text and "lock=x" in text and "relay_published" not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_libraries_that_log_every_request_keep_to_warnings_unless_debug() -> None:
    saved = structlog.get_config()
    stream = io.StringIO()
    try:
        configure_logging("console", "info", stream)
        logging.getLogger("stripe").info("Request to Stripe api")
        logging.getLogger("stripe").warning("Stripe is slow")
        quiet = stream.getvalue()
        configure_logging("console", "debug", stream)
        logging.getLogger("httpx").info("HTTP Request: GET /")
        loud = stream.getvalue()
    finally:
        structlog.configure(**saved)
        configure_logging("console", "info", io.StringIO())
    assert "Stripe is slow" in quiet and "Request to Stripe api" not in quiet
    assert "HTTP Request: GET /" in loud


def test_cli_logs_go_to_stderr_so_stdout_stays_the_commands_own(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {
        "TALLY_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "TALLY_LOG_FORMAT": "json",
        "TALLY_LOG_LEVEL": "debug",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapters.cli.main",
            "keys",
            "create",
            "--app",
            "acme",
            "--scope",
            "read",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert len(out) == 2 and out[-1].startswith("tk_")  # stdout: the command's lines only
    logged = [json.loads(line) for line in done.stderr.splitlines()]  # each one JSON
    assert "command_done" in {line["event"] for line in logged}


# --- the correlation id -------------------------------------------------------------------


def test_the_correlation_id_is_the_request_id_sent_else_the_command_id(acme: Api) -> None:
    sent = acme.call("POST", "/v1/plans", json=PLAN, headers={"X-Request-Id": "corr-1"})
    assert sent.status_code == 201
    keyed = acme.call(
        "POST", "/v1/plans", json=PLAN | {"plan_key": "team"}, headers={"Idempotency-Key": "k-9"}
    )
    neither = acme.call("POST", "/v1/plans", json=PLAN | {"plan_key": "solo"})
    by_key = {e.data["terms"]["plan_key"]: e for e in events_of(acme_system(acme), "PlanDefined")}
    assert by_key["pro"].correlation_id == "corr-1"
    assert (by_key["team"].correlation_id, by_key["team"].command_id) == ("k-9", "k-9")
    assert by_key["solo"].correlation_id == neither.headers["X-Request-Id"]
    assert keyed.status_code == 201


def acme_system(api: Api) -> System:
    return api.client.app.state.system  # type: ignore[attr-defined, no-any-return]


# --- tracing ------------------------------------------------------------------------------


def test_spans_from_the_request_through_the_command_and_store_to_the_projector(
    acme: Api, spans: InMemorySpanExporter
) -> None:
    # acme first: its keys' events are written before tracing starts, so the projector's
    # batch takes its parent from the plan's event, the first one with a trace context
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = acme.call("POST", "/v1/plans", json=PLAN, headers={"traceparent": caller})
    assert response.status_code == 201
    acme_system(acme).sync()
    (http,) = named(spans, "POST /v1/plans")
    (command,) = named(spans, "command define_plan")
    saves = named(spans, "eventstore.save")
    trace_id = int("0af7651916cd43dd8448eb211c80319c", 16)
    assert http.context.trace_id == trace_id  # continues the caller's trace
    assert http.attributes is not None and http.attributes["http.response.status_code"] == 201
    assert command.parent is not None and command.parent.span_id == http.context.span_id
    save = next(s for s in saves if s.parent and s.parent.span_id == command.context.span_id)
    (event,) = events_of(acme_system(acme), "PlanDefined")
    assert event.trace_parent == f"00-{trace_id:032x}-{save.context.span_id:016x}-01"
    batches = [s for s in named(spans, "projector.batch") if s.context.trace_id == trace_id]
    assert batches and batches[0].parent is not None
    assert batches[0].parent.span_id == save.context.span_id


def test_a_refused_command_is_a_span_with_an_error(spans: InMemorySpanExporter, acme: Api) -> None:
    acme.call("POST", "/v1/plans", json=PLAN)
    assert acme.call("POST", "/v1/plans", json=PLAN).status_code == 409
    refused = named(spans, "command define_plan")[-1]
    assert refused.status.status_code.name == "ERROR"


def test_without_tracing_events_carry_no_trace_context(acme: Api) -> None:
    assert not tracing.enabled()
    acme.call("POST", "/v1/plans", json=PLAN)
    (event,) = events_of(acme_system(acme), "PlanDefined")
    assert event.trace_parent is None and "traceparent" not in event.headers()
    assert "trace_parent" not in event.data and "trace_parent" not in event.model_dump()


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"] or 0))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return None


def test_spans_are_exported_by_otlp_http_when_the_endpoint_is_set(
    monkeypatch: pytest.MonkeyPatch, acme: Api
) -> None:
    server = HTTPServer(("127.0.0.1", free_port()), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    _Receiver.received = []
    try:
        assert tracing.install_from_environment()
        acme.call("POST", "/v1/plans", json=PLAN)
        tracing.flush()
    finally:
        provider = tracing._state["provider"]
        tracing.install(None)
        provider.shutdown()
        server.shutdown()
    paths = {path for path, _ in _Receiver.received}
    assert paths == {"/v1/traces"}
    exported = b"".join(body for _, body in _Receiver.received)
    assert b"command define_plan" in exported and b"POST /v1/plans" in exported
    assert b"eventstore.save" in exported


# --- /metrics -----------------------------------------------------------------------------


def sample(api: Api, name: str, **labels: str) -> float:
    """A sample's value as /metrics shows it (0 when absent)."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}")
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith(wanted if labels else name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_commands_by_name_and_outcome_and_their_latency(acme: Api) -> None:
    assert sample(acme, "tally_commands_total", command="define_plan", outcome="ok") == 0
    acme.call("POST", "/v1/plans", json=PLAN, headers={"Idempotency-Key": "p1"})
    acme.call("POST", "/v1/plans", json=PLAN, headers={"Idempotency-Key": "p1"})
    acme.call("POST", "/v1/plans", json=PLAN)
    acme.call("POST", "/v1/commands/define_plan", json={"plan_key": 7})
    counts = {
        outcome: sample(acme, "tally_commands_total", command="define_plan", outcome=outcome)
        for outcome in ("ok", "duplicate", "already_exists", "validation_error")
    }
    assert counts == {"ok": 1, "duplicate": 1, "already_exists": 1, "validation_error": 1}
    timed = sample(acme, "tally_command_duration_seconds_count", command="define_plan")
    assert timed == 3  # the validation error never reached the bus


def test_usage_events_by_outcome_give_the_ingest_rate(acme: Api) -> None:
    acme.call("POST", "/v1/plans", json=PLAN)
    acme.call("POST", "/v1/subscriptions", json={"tenant_id": "t1", "plan_key": "pro"})
    event = {"tenant_id": "t1", "feature_key": "api-calls", "quantity": 1}
    batch = [event | {"idempotency_key": f"u{i}"} for i in range(4)]  # the 4th is over 3
    assert acme.call("POST", "/v1/usage", scope="write", json={"events": batch}).status_code == 200
    acme.call("POST", "/v1/usage", scope="write", json={"events": batch[:1]})
    assert sample(acme, "tally_usage_events_total", outcome="accepted") == 3
    assert sample(acme, "tally_usage_events_total", outcome="refused") == 1
    assert sample(acme, "tally_usage_events_total", outcome="duplicates") == 1


def test_entitlement_checks_allowed_and_denied(acme: Api) -> None:
    acme.call("POST", "/v1/plans", json=PLAN)
    acme.call("POST", "/v1/subscriptions", json={"tenant_id": "t1", "plan_key": "pro"})
    acme_system(acme).sync()
    acme.call("GET", "/v1/tenants/t1/entitlements/api-calls", scope="read")
    acme.call("GET", "/v1/tenants/t2/entitlements/api-calls", scope="read")
    body = {"tenant_id": "t1", "feature_keys": ["api-calls", "sso"]}
    acme.call("POST", "/v1/entitlements/check", scope="read", json=body)
    assert sample(acme, "tally_entitlement_checks_total", result="allowed") == 2
    assert sample(acme, "tally_entitlement_checks_total", result="denied") == 2


def test_projection_lag_per_projector_falls_to_zero_once_applied(tmp_path: Path) -> None:
    system = make_system(tmp_path, deliver_in_process=False)
    try:
        api = Api(TestClient(create_app(system)), system, "acme")  # 3 keys: 3 events
        api.call("POST", "/v1/plans", json=PLAN)
        head = system.ledger.recorder.max_notification_id()
        assert head == 4
        assert sample(api, "tally_event_store_head_position") == head
        assert sample(api, "tally_projection_lag_events", projector="entitlements") == head
        system.sync()
        lags = [
            sample(api, "tally_projection_lag_events", projector=p.NAME)
            for p in system.runner.projectors
        ]
        assert lags == [0] * len(system.runner.projectors)
        assert "tally_relay_lag_events" not in api.client.get("/metrics").text  # no NATS
    finally:
        system.close()


class _Hooks(BaseHTTPRequestHandler):
    statuses: list[int] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"] or 0))
        self.send_response(self.statuses.pop(0) if self.statuses else 200)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return None


def test_outgoing_webhook_outcomes_on_metrics(tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", free_port()), _Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hooks.statuses = [500, 200, 500, 500]  # one retried then delivered, one failed
    url = f"http://127.0.0.1:{server.server_port}/hooks"
    emitter = WebhookEmitter(url, "s" * 32, tmp_path / "log.jsonl", attempts=2, backoff_seconds=0)
    envelope = EventEnvelope(
        id="00000000-0000-0000-0000-000000000001",  # type: ignore[arg-type]
        type="PlanDefined",
        position=1,
        aggregate_id="00000000-0000-0000-0000-000000000002",  # type: ignore[arg-type]
        aggregate_type="plan",
        version=1,
        app_id="acme",
        tenant_id=None,
        occurred_at=T0.isoformat(),
        recorded_at=None,
        schema_version=1,
        data={},
    )
    system = make_system(tmp_path, plugins=[emitter], deliver_in_process=False)
    try:
        emitter.on_event(envelope)
        with pytest.raises(WebhookDeliveryFailed):
            emitter.on_event(envelope)
        api = Api(TestClient(create_app(system)), system, "acme")
        assert sample(api, "tally_webhook_deliveries_total", outcome="delivered") == 1
        assert sample(api, "tally_webhook_deliveries_total", outcome="retried") == 2
        assert sample(api, "tally_webhook_deliveries_total", outcome="failed") == 1
    finally:
        system.close()
        server.shutdown()


def test_a_billing_runs_commands_are_counted_once_each(acme: Api) -> None:
    acme.call("POST", "/v1/plans", json=PLAN)
    acme.call("POST", "/v1/subscriptions", json={"tenant_id": "t1", "plan_key": "pro"})
    until = (T0 + timedelta(days=59)).isoformat()
    report = acme.call("POST", "/v1/billing-runs", json={"until": until}).json()
    assert report["renewed"] == 2
    renewed = sample(acme, "tally_commands_total", command="renew_subscription", outcome="ok")
    assert renewed == 2  # counted by the bus's group commit, not again by the route


def test_metrics_answer_without_the_lag_gauges_while_the_store_is_down(
    acme: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> int:
        raise OSError("the event store is unreachable")

    monkeypatch.setattr(acme_system(acme).ledger.recorder, "max_notification_id", down)
    response = acme.client.get("/metrics")
    assert response.status_code == 200
    assert "tally_http_requests_total" in response.text
    assert "tally_projection_lag_events" not in response.text


def test_tracing_off_imports_no_opentelemetry_sdk(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from adapters.bootstrap import bootstrap\n"
        "from adapters.http.serve import build\n"
        "from adapters.settings import Settings\n"
        f"system = bootstrap(Settings(database_url='sqlite:///{tmp_path / 'c.db'}'))\n"
        "build(system)\n"
        "system.close()\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "TALLY_PLUGINS_DISCOVER": "false"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_worker_serves_metrics_on_tally_metrics_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from adapters.entrypoints import worker_system

    port = free_port()
    monkeypatch.setenv("TALLY_DATABASE_URL", f"sqlite:///{tmp_path / 'w.db'}")
    monkeypatch.setenv("TALLY_METRICS_PORT", str(port))
    monkeypatch.setenv("TALLY_PLUGINS_DISCOVER", "false")
    with worker_system() as system:
        system.dispatch("create_api_key", {"app_id": "acme", "scope": "read"})
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'tally_commands_total{command="create_api_key",outcome="ok"} 1.0' in text
        assert 'tally_projection_lag_events{projector="entitlements"} 1.0' in text
        assert "tally_plugin_calls_total" in text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)  # stopped with the worker
