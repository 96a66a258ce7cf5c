"""The system under simulation: Tally on in-memory SQLite and a test clock, read models fed
only by the simulation, and what the scenario remembers about it.

Everything the simulation adds is deterministic: ids derive from the seed, payment
collection (dunning retries) answers by a hash of the seed, the invoice and the attempt, and
progressive billing's background thread is unhooked (billing runs make the same checks).
"""

from __future__ import annotations

import hashlib
import random
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from adapters.bootstrap import System, bootstrap
from adapters.settings import Settings
from adapters.simulation.delivery import SimulatedDelivery, attach_delivery
from adapters.simulation.trace import Labels, Trace
from commands.base import Command
from commands.billing.compose import BillingPorts
from commands.billing.ports import CollectionOutcome
from commands.bus import CommandBus, CommandResult
from commands.registry import build_handlers
from domain.clock import SettableClock
from domain.errors import DomainError
from domain.invoice import Invoice

APP = "sim"
START = datetime(2026, 1, 1, tzinfo=UTC)
SIM_NAMESPACE = UUID("5d1e0b7a-3c52-4e8f-9a61-0c7d2f4b8e19")
COLLECT_SUCCESS_BYTE = 102  # a retry succeeds when the digest's first byte is below: 40 %


class IsolatedSettings(Settings):
    """Settings from the arguments alone, never from TALLY_* variables: the simulation runs
    the same wherever it runs (no NATS, Redis, Stripe or other store from the environment)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


@dataclass(frozen=True)
class SeededCollector:
    """Dunning retries collected or declined by a hash of (seed, tenant, invoice number,
    attempt): asked again, it answers the same, as a payment provider must."""

    seed: int

    def collect(self, invoice: Invoice) -> CollectionOutcome:
        state = invoice.state
        attempt = state.payment_attempts + 1
        text = f"{self.seed}:{state.tenant_id}:{state.number}:{attempt}"
        if hashlib.sha256(text.encode()).digest()[0] < COLLECT_SUCCESS_BYTE:
            return CollectionOutcome(succeeded=True, reference=f"sim-pay-{state.number}-{attempt}")
        return CollectionOutcome(succeeded=False, reason="card declined (simulated)")


@dataclass(frozen=True)
class Outcome:
    """What one command gave: ok, duplicate, refused (a DomainError) or crash (anything else)."""

    kind: str
    result: dict[str, Any] = field(default_factory=dict)
    code: str = ""
    position: int | None = None

    @property
    def ok(self) -> bool:
        return self.kind in ("ok", "duplicate")

    def text(self) -> str:
        if self.kind in ("ok", "duplicate"):
            return f"{self.kind} @{self.position}"
        return f"{self.kind} {self.code}"


@dataclass
class World:
    """The system, the clock, the seeded random source and the scenario's memory."""

    seed: int
    rng: random.Random
    system: System
    clock: SettableClock
    delivery: SimulatedDelivery
    trace: Trace = field(default_factory=Trace)
    labels: Labels = field(default_factory=Labels)
    tenants: list[str] = field(default_factory=list)
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> terms sent
    coupons: list[str] = field(default_factory=list)
    subscriptions: dict[str, UUID] = field(default_factory=dict)  # tenant -> latest
    grants: dict[str, list[UUID]] = field(default_factory=dict)  # tenant -> credit grants
    usage_keys: list[tuple[tuple[str, str, str, int], datetime]] = field(default_factory=list)
    usage_tally: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    failures: dict[str, list[str]] = field(default_factory=dict)  # check -> what broke
    _serial: Counter[str] = field(default_factory=Counter)

    # --- ids, all from the seed -------------------------------------------------------------

    def new_id(self, kind: str) -> UUID:
        self._serial[kind] += 1
        return uuid5(SIM_NAMESPACE, f"{self.seed}/{kind}/{self._serial[kind]}")

    def new_key(self, kind: str) -> str:
        self._serial[kind] += 1
        return f"s{self.seed}-{kind}-{self._serial[kind]}"

    # --- commands ---------------------------------------------------------------------------

    def build(self, cls: type[Command], **fields: Any) -> Command:
        """The command with the app and, most of the time, a command_id (as clients retry)."""
        if self.rng.random() < 0.85:
            fields.setdefault("command_id", self.new_key("cmd"))
        return cls(app_id=APP, **fields)

    def send(self, command: Command, bus: CommandBus | None = None) -> Outcome:
        """Run one command (on the system's bus, or another over the same store); a refusal
        must record nothing, anything but a refusal is a crash."""
        head = self.head()
        try:
            done: CommandResult = (bus or self.system.bus).handle(command)
        except DomainError as error:
            self.expect("refusals_record_nothing", self.head() == head, command.NAME)
            return Outcome("refused", code=error.code)
        except Exception as error:
            return self.crashed(command.NAME, error)
        kind = "duplicate" if done.duplicate else "ok"
        return Outcome(kind, done.result, position=done.position)

    def act(self, label: str, cls: type[Command], detail: str = "", **fields: Any) -> Outcome:
        """Build, send and trace one command (`detail` is added to the trace's outcome)."""
        outcome = self.send(self.build(cls, **fields))
        self.log(label, outcome.text() + (f" {detail}" if detail else ""))
        return outcome

    def crashed(self, what: str, error: BaseException) -> Outcome:
        self.fail("no_unexpected_errors", f"{what}: {type(error).__name__}: {error}")
        self.failures.setdefault("tracebacks", []).append(traceback.format_exc())
        return Outcome("crash", code=type(error).__name__)

    # --- bookkeeping ------------------------------------------------------------------------

    def head(self) -> int:
        return int(self.system.ledger.recorder.max_notification_id() or 0)

    def log(self, command: str, outcome: str) -> None:
        self.trace.log(self.clock.now(), command, outcome)

    def expect(self, check: str, held: bool, detail: str) -> None:
        """Count one observation of a check; remember what broke."""
        self.counts[check] += 1
        if not held:
            self.fail(check, detail)

    def fail(self, check: str, detail: str) -> None:
        detail = self.labels.scrub(detail)
        self.failures.setdefault(check, []).append(f"step {self.trace.step}: {detail}")
        self.trace.note(f"VIOLATION {check}: {detail}")

    def pick(self, items: list[Any]) -> Any:
        return items[self.rng.randrange(len(items))] if items else None


def open_world(seed: int) -> World:
    """Tally on in-memory SQLite at START, wired for a deterministic run; snapshots and the
    aggregate cache sized by the seed (often small, so loads go through both)."""
    rng, clock = random.Random(seed), SettableClock(START)
    settings = IsolatedSettings(
        database_url="sqlite:///:memory:",
        snapshot_interval=rng.choice([4, 25, 100]),
        aggregate_cache_size=rng.choice([32, 10_000]),
    )
    system = bootstrap(settings, clock, deliver_in_process=False)
    # SQLite commits one writer at a time, so no position commits after a higher one: the
    # index's re-read overlap (for PostgreSQL) only costs time here (see the report)
    system.index.overlap = 0
    if system.progressive is not None:  # a background thread: billing runs check too
        system.usage.after_usage.remove(system.progressive.usage_committed)
    ports = BillingPorts(usage=system.usage_reader, payments=SeededCollector(seed))
    system.bus.handlers = build_handlers(ports, system.usage.keys, invoices=system.index)
    delivery = attach_delivery(system.ledger.recorder, system.views, system.runner)
    world = World(seed, rng, system, clock, delivery)
    world.trace.note(
        f"seed {seed}: snapshot every {settings.snapshot_interval} events, "
        f"aggregate cache {settings.aggregate_cache_size}"
    )
    return world
