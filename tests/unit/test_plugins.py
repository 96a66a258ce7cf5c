"""Plugins: the registry (names, hooks, ports, entry points), the hook runner (typed envelopes,
tracked position, timeout, retries, dead letters, metrics, never failing a command), strategy
selection, `tally plugins list` and /metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adapters.bootstrap import System, bootstrap
from adapters.plugins.hooks import HookRunner, Interrupted
from adapters.plugins.registry import PluginError, PluginRegistry, snake
from adapters.plugins.wiring import hook_runner
from adapters.settings import Settings
from domain.clock import SettableClock
from projections.envelope import EventEnvelope
from tests.factories import T0, ok

APP = "acme"


class Recorder:
    """A hook plugin that keeps what it received."""

    name = "recorder"

    def __init__(self) -> None:
        self.started: list[EventEnvelope] = []
        self.everything: list[str] = []

    def on_subscription_started(self, event: EventEnvelope) -> None:
        self.started.append(event)

    def on_event(self, event: EventEnvelope) -> None:
        self.everything.append(event.type)


class Flaky:
    """Fails `failures` times on each plan defined, then succeeds."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def on_plan_defined(self, event: EventEnvelope) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"down (call {self.calls})")


class Slow:
    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_plan_defined(self, event: EventEnvelope) -> None:
        time.sleep(self.seconds)


def settings_in(tmp_path: Path, **options: Any) -> Settings:
    defaults: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'events.db'}",
        "plugins_discover": False,
        "plugin_retry_seconds": 0.01,
        "plugin_timeout_seconds": 0.3,
    }
    return Settings(**{**defaults, **options})


@pytest.fixture
def make_system(tmp_path: Path) -> Iterator[Any]:
    built: list[System] = []

    def make(*plugins: object, **options: Any) -> System:
        in_process = options.pop("deliver_in_process", False)
        system = bootstrap(
            settings_in(tmp_path, **options),
            SettableClock(T0),
            deliver_in_process=in_process,
            plugins=plugins,
        )
        built.append(system)
        return system

    yield make
    for system in built:
        system.close()


def define_plan(system: System, key: str = "pro") -> None:
    base = {"amount": 1000, "currency": "USD"}
    ok(
        system.dispatch(
            "define_plan", {"app_id": APP, "plan_key": key, "name": "Pro", "base_price": base}
        )
    )


def start(system: System, tenant: str = "t1") -> str:
    reply = system.dispatch(
        "start_subscription", {"app_id": APP, "tenant_id": tenant, "plan_key": "pro"}
    )
    return str(ok(reply)["subscription_id"])


def runner_of(system: System) -> HookRunner:
    return hook_runner(system)


# --- the registry -----------------------------------------------------------------------


def test_event_names_become_snake_case_hooks() -> None:
    assert snake("InvoicePaid") == "invoice_paid"
    assert snake("SubscriptionCancellationScheduled") == "subscription_cancellation_scheduled"


def test_register_lists_hooks_and_ports_and_refuses_a_duplicate_name() -> None:
    registry = PluginRegistry()
    info = registry.register(Recorder())
    assert info.kind == "hooks"
    assert info.hooks == {"SubscriptionStarted": "on_subscription_started", "*": "on_event"}
    with pytest.raises(PluginError, match="'recorder' is already registered"):
        registry.register(Recorder(), source="entry point x:y")
    assert [i.name for i in registry.plugins()] == ["recorder"]


def test_an_unknown_hook_or_a_missing_name_is_refused() -> None:
    class Typo:
        name = "typo"

        def on_invoice_payed(self, event: EventEnvelope) -> None: ...

    class Nameless:
        def on_invoice_paid(self, event: EventEnvelope) -> None: ...

    registry = PluginRegistry()
    with pytest.raises(PluginError, match="on_invoice_payed names no event type"):
        registry.register(Typo())
    with pytest.raises(PluginError, match="needs a `name`"):
        registry.register(Nameless())
    assert registry.plugins() == []


class FakeEntryPoint:
    def __init__(self, name: str, loaded: object) -> None:
        self.name, self.value, self._loaded = name, f"tests:{name}", loaded

    def load(self) -> object:
        return self._loaded


def test_discovery_instantiates_factories_and_skips_the_unconfigured() -> None:
    registry = PluginRegistry()
    found = registry.discover(
        lambda: [
            FakeEntryPoint("recorder", Recorder),  # a class: instantiated
            FakeEntryPoint("off", lambda: None),  # a factory saying "not configured"
        ]
    )
    assert [(i.name, i.source) for i in found] == [("recorder", "entry point tests:recorder")]
    with pytest.raises(PluginError, match="already registered"):
        registry.discover(lambda: [FakeEntryPoint("again", Recorder())])


def test_the_example_plugins_are_installed_in_the_entry_point_group() -> None:
    from adapters.plugins.registry import default_entry_points

    names = {entry.name for entry in default_entry_points()}
    assert {"webhooks", "audit-export", "business-metrics"} <= names


def test_the_installed_examples_are_found_when_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TALLY_AUDIT_EXPORT_PATH", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("TALLY_BUSINESS_METRICS", "true")
    monkeypatch.delenv("TALLY_WEBHOOK_URL", raising=False)
    registry = PluginRegistry()
    registry.discover()
    assert [i.name for i in registry.plugins()] == ["audit-export", "business-metrics"]


# --- the hook runner --------------------------------------------------------------------


def test_hooks_receive_typed_envelopes_once_in_position_order(make_system: Any) -> None:
    recorder = Recorder()
    system = make_system(recorder)
    define_plan(system)
    subscription_id = start(system)
    runner = runner_of(system)
    head = system.ledger.recorder.max_notification_id()
    assert runner.catch_up() == head == runner.position()
    [event] = recorder.started
    assert isinstance(event, EventEnvelope) and str(event.aggregate_id) == subscription_id
    assert event.type == "SubscriptionStarted" and event.app_id == APP
    assert recorder.everything[0] == "PlanDefined" and len(recorder.everything) == head
    runner.catch_up()  # nothing new: nothing delivered again
    assert len(recorder.started) == 1
    start(system, "t2")
    runner.catch_up()
    assert [e.tenant_id for e in recorder.started] == ["t1", "t2"]


def test_a_failing_hook_is_retried_with_backoff_and_counted(make_system: Any) -> None:
    flaky = Flaky(failures=2)
    system = make_system(flaky, plugin_max_attempts=3)
    define_plan(system)
    runner_of(system).catch_up()
    assert flaky.calls == 3
    metrics = system.plugins.metrics
    assert metrics.value("flaky", "on_plan_defined", "error") == 2
    assert metrics.value("flaky", "on_plan_defined", "ok") == 1
    assert runner_of(system).dead_letters() == []


def test_a_hook_failing_every_attempt_is_dead_lettered_and_the_position_moves_on(
    make_system: Any,
) -> None:
    flaky, recorder = Flaky(failures=100), Recorder()
    system = make_system(flaky, recorder, plugin_max_attempts=2)
    define_plan(system)
    start(system)
    runner = runner_of(system)
    assert runner.catch_up() == system.ledger.recorder.max_notification_id()
    assert flaky.calls == 2 and len(recorder.started) == 1  # later events still delivered
    [letter] = runner.dead_letters()
    assert (letter["plugin"], letter["hook"], letter["event_type"]) == (
        "flaky",
        "on_plan_defined",
        "PlanDefined",
    )
    assert letter["attempts"] == 2 and "down (call 2)" in letter["error"]
    assert system.plugins.metrics.dead_letters.labels("flaky", "on_plan_defined")._value.get() == 1


def test_each_call_has_a_timeout(make_system: Any) -> None:
    system = make_system(Slow(2.0), plugin_timeout_seconds=0.1, plugin_max_attempts=1)
    define_plan(system)
    began = time.monotonic()
    runner_of(system).catch_up()
    assert time.monotonic() - began < 1.5
    assert system.plugins.metrics.value("slow", "on_plan_defined", "timeout") == 1
    assert "no answer within 0.1 s" in runner_of(system).dead_letters()[0]["error"]


def test_stopping_during_a_retry_keeps_the_event_for_the_next_run(make_system: Any) -> None:
    flaky = Flaky(failures=1)
    system = make_system(flaky, plugin_max_attempts=3, plugin_retry_seconds=30)
    define_plan(system)
    runner = runner_of(system)
    threading.Timer(0.2, runner.caller.stopping.set).start()
    with pytest.raises(Interrupted):
        runner.catch_up()
    assert runner.position() == 0  # at least once: PlanDefined is delivered again
    runner.caller.stopping.clear()
    runner.catch_up()
    assert flaky.calls == 2 and runner.position() > 0


def test_the_position_survives_a_restart(make_system: Any) -> None:
    first = Recorder()
    system = make_system(first)
    define_plan(system)
    start(system)
    runner_of(system).catch_up()
    system.close()
    again = Recorder()
    restarted = make_system(again)
    start(restarted, "t2")
    runner_of(restarted).catch_up()
    assert [e.tenant_id for e in again.started] == ["t2"]


def test_in_process_hooks_run_off_the_command_path_and_never_fail_a_command(
    make_system: Any,
) -> None:
    gate = threading.Event()

    class Blocking:
        name = "blocking"

        def __init__(self) -> None:
            self.seen: list[str] = []

        def on_subscription_started(self, event: EventEnvelope) -> None:
            gate.wait(5)
            self.seen.append(event.type)
            raise RuntimeError("a plugin bug")

    plugin = Blocking()
    system = make_system(deliver_in_process=True, plugin_max_attempts=1)
    system.plugins.register(plugin)  # registered after start: delivery starts with it
    define_plan(system)
    began = time.monotonic()
    start(system)  # answers while the hook is blocked
    assert time.monotonic() - began < 2
    gate.set()
    deadline = time.monotonic() + 10
    while not runner_of(system).dead_letters() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert plugin.seen == ["SubscriptionStarted"]
    assert runner_of(system).dead_letters()[0]["plugin"] == "blocking"


def test_async_hooks_are_awaited(make_system: Any) -> None:
    class Async:
        name = "async"

        def __init__(self) -> None:
            self.seen: list[int] = []

        async def on_plan_defined(self, event: EventEnvelope) -> None:
            self.seen.append(event.position)

    plugin = Async()
    system = make_system(plugin)
    define_plan(system)
    runner_of(system).catch_up()
    assert plugin.seen == [1]


# --- /metrics and the CLI ---------------------------------------------------------------


def test_metrics_shows_plugin_calls(make_system: Any) -> None:
    from fastapi.testclient import TestClient

    from adapters.http.app import create_app

    system = make_system(Flaky(failures=1))
    define_plan(system)
    runner_of(system).catch_up()
    with TestClient(create_app(system)) as client:
        text = client.get("/metrics").text
    assert (
        'tally_plugin_calls_total{hook="on_plan_defined",outcome="error",plugin="flaky"} 1.0'
        in text
    )
    assert (
        'tally_plugin_calls_total{hook="on_plan_defined",outcome="ok",plugin="flaky"} 1.0' in text
    )


def test_tally_plugins_list(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from adapters.cli.main import app

    monkeypatch.setenv("TALLY_DATABASE_URL", f"sqlite:///{tmp_path / 'e.db'}")
    monkeypatch.setenv("TALLY_BUSINESS_METRICS", "1")
    monkeypatch.delenv("TALLY_AUDIT_EXPORT_PATH", raising=False)
    monkeypatch.delenv("TALLY_WEBHOOK_URL", raising=False)
    result = CliRunner().invoke(app, ["plugins", "list"])
    assert result.exit_code == 0, result.output
    output = result.output.splitlines()  # (log lines of the registry come first)
    at = next(i for i, line in enumerate(output) if line.split()[:2] == ["name", "kind"])
    [row] = [line for line in output[at + 1 :] if line.strip()]
    assert row.startswith("business-metrics") and "hooks" in row and "on_invoice_paid" in row
    assert "entry point adapters.plugins.examples.business_metrics:plugin" in row
