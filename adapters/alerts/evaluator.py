"""The alert evaluator: follows the event log and records AlertTriggered on the alerts.

It reads, by position and after its own tracking position (`alert_evaluator` in the views
database's tracking table), the events it needs (a topic filter in the database):
- AlertCreated / AlertDeleted: the rules it evaluates (kept in `alert_eval_rules`, so a
  rule applies to the events after its creation, in log order; a deleted alert never fires);
- quota usage events, QuotaConsumed and UsageRecorded (matched by name): `used` against
  each usage alert of the feature that watches the tenant, and, per tenant with a spend
  alert, once per batch, the upcoming invoice's total (commands/billing/upcoming.py);
- QuotaReset: a new window (its thresholds re-arm);
- CreditBalanceOpened / CreditBalanceMoved: the balance against credit_balance alerts; a
  threshold re-arms when the balance rises above it;
- CreditGranted / CreditDrawn / CreditExpired / CreditVoided / CreditReinstated: the
  prepaid balance (what the tenant's active credit grants in the currency hold, the events'
  `balance`) against the same credit_balance alerts, watched as a balance of its own beside
  the CreditBalance (subject `<tenant>:grants:<threshold>`, docs/credits.md): each fires and
  re-arms apart.

Periods (what "once per period" counts in) and their `rank` (their order, see
domain/alert.py):
- usage: the quota window the event carries, opened at the position of the QuotaReset that
  opened it (or of the first event the evaluator saw in it); rank = that position;
- spend: the subscription's current billing period; rank = its start in microseconds;
- credit_balance: per threshold, from the event at which the balance last rose above it (or
  the first the evaluator saw at or below it); rank = that event's position.
Window openings and these rises are kept in `alert_eval_epochs`, only for tenants, features
and amounts some alert watches.

It never passes the usage read model (it reads up to the usage projection's position), so
the upcoming invoice it prices has counted every usage event it has read. It hands what it
saw to the alerts through `RecordAlertTriggers` on a bus of its own (not the public command
bus); an alert decides what fires, so a batch evaluated twice (a crash before the position
was saved, two processes) records nothing twice. The rules, epochs and position commit in one
transaction, only if no other evaluator moved the position meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

import orjson
import structlog

from adapters.eventstore.envelopes import read_envelopes
from adapters.readmodels.sql_store import SqlViewTx, ViewStore
from commands.alerts.record_alert_triggers import RecordAlertTriggers, record_alert_triggers
from commands.billing.compose import BillingPorts
from commands.billing.upcoming import upcoming_invoice
from commands.bus import CommandBus
from domain.alert import Alert, AlertCreated, AlertDeleted, AlertKind, Observation, Threshold
from domain.clock import Clock
from domain.errors import DomainError
from domain.subscription import Subscription, TenantSlot, tenant_slot_id
from projections.base import Projector
from projections.envelope import EventEnvelope
from projections.usage.projector import UsageProjector

log = structlog.get_logger(__name__)

EVALUATOR = "alert_evaluator"
RULES = "alert_eval_rules"
EPOCHS = "alert_eval_epochs"
ACTOR = "alert-evaluator"

USAGE_TOPICS = frozenset({"QuotaConsumed", "UsageRecorded"})
RESET_TOPIC = "QuotaReset"
BALANCE_OPENED, BALANCE_MOVED = "CreditBalanceOpened", "CreditBalanceMoved"
DEFINITION_TOPICS = frozenset({AlertCreated.NAME, AlertDeleted.NAME})
GRANT_TOPICS = frozenset(
    {"CreditGranted", "CreditDrawn", "CreditExpired", "CreditVoided", "CreditReinstated"}
)
TOPICS = (
    DEFINITION_TOPICS | USAGE_TOPICS | GRANT_TOPICS | {RESET_TOPIC, BALANCE_OPENED, BALANCE_MOVED}
)
_EPOCH_ZERO = datetime(1970, 1, 1, tzinfo=UTC)


class EvaluatorTables(Projector):
    """The evaluator's own state in the views database (not a read model: never replayed)."""

    NAME: ClassVar[str] = EVALUATOR
    TABLES: ClassVar[dict[str, tuple[Sequence[str], Sequence[str]]]] = {
        RULES: (
            [
                "app_id TEXT NOT NULL",
                "alert_id TEXT NOT NULL",
                "kind TEXT NOT NULL",
                "tenant_id TEXT NOT NULL",  # '' = every tenant
                "feature_key TEXT NOT NULL",  # '' = none
                "thresholds TEXT NOT NULL",
            ],
            ["app_id", "alert_id"],
        ),
        EPOCHS: (
            [
                "app_id TEXT NOT NULL",
                "tenant_id TEXT NOT NULL",
                "subject TEXT NOT NULL",  # usage:<feature> or credit:<currency>:<amount>
                "period TEXT NOT NULL",  # the window it was opened for ('' = none)
                "epoch BIGINT NOT NULL",  # the position that opened it
                "opened_at TEXT NOT NULL",
            ],
            ["app_id", "tenant_id", "subject"],
        ),
    }


@dataclass(frozen=True)
class Rule:
    """One alert as the evaluator applies it."""

    alert_id: UUID
    app_id: str
    kind: AlertKind
    tenant_id: str | None
    feature_key: str | None
    thresholds: tuple[Threshold, ...]

    def watches(self, tenant_id: str) -> bool:
        return self.tenant_id is None or self.tenant_id == tenant_id

    def crossing(
        self, value: int, *, limit: int | None = None, currency: str | None = None
    ) -> set[str]:
        """The keys of the thresholds the value is at or past."""
        return {
            t.key
            for t in self.thresholds
            if t.crossed(self.kind, value, limit=limit, currency=currency)
        }

    def row(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "tenant_id": self.tenant_id or "",
            "feature_key": self.feature_key or "",
            "thresholds": _dump([t.model_dump(mode="json") for t in self.thresholds]),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Rule:
        return cls(
            alert_id=UUID(str(row["alert_id"])),
            app_id=row["app_id"],
            kind=AlertKind(row["kind"]),
            tenant_id=row["tenant_id"] or None,
            feature_key=row["feature_key"] or None,
            thresholds=tuple(Threshold.model_validate(t) for t in orjson.loads(row["thresholds"])),
        )

    @classmethod
    def created(cls, event: EventEnvelope) -> Rule:
        data = event.data
        return cls(
            alert_id=event.aggregate_id,
            app_id=event.app_id,
            kind=AlertKind(data["kind"]),
            tenant_id=event.tenant_id,
            feature_key=data.get("feature_key"),
            thresholds=tuple(Threshold.model_validate(t) for t in data["thresholds"]),
        )


@dataclass(frozen=True)
class Epoch:
    period: str
    epoch: int
    opened_at: str


EpochKey = tuple[str, str, str]  # app, tenant, subject


@dataclass
class Batch:
    """What one batch of events changes and observes, before it is recorded."""

    rules: dict[str, dict[UUID, Rule]]
    load_epoch: Callable[[EpochKey], Epoch | None]
    rule_writes: dict[tuple[str, UUID], Rule | None] = field(default_factory=dict)
    epochs: dict[EpochKey, Epoch | None] = field(default_factory=dict)
    epoch_writes: set[EpochKey] = field(default_factory=set)
    observations: dict[UUID, list[Observation]] = field(default_factory=dict)
    covered: dict[tuple[UUID, str, str], set[str]] = field(default_factory=dict)
    spend_due: dict[tuple[str, str], tuple[EventEnvelope, list[Rule]]] = field(default_factory=dict)

    def feed(self, event: EventEnvelope) -> None:
        if event.type == AlertCreated.NAME:
            self._define(event.app_id, event.aggregate_id, Rule.created(event))
        elif event.type == AlertDeleted.NAME:
            self._define(event.app_id, event.aggregate_id, None)
        elif not event.tenant_id:
            return
        elif event.type in USAGE_TOPICS:
            self._usage(event, event.tenant_id)
        elif event.type == RESET_TOPIC:
            self._reset(event, event.tenant_id)
        elif event.type in (BALANCE_OPENED, BALANCE_MOVED):
            self._balance(event, event.tenant_id)
        elif event.type in GRANT_TOPICS:
            self._balance(event, event.tenant_id, source="grants:")

    def watching(self, app_id: str, tenant_id: str, kind: AlertKind) -> list[Rule]:
        rules = self.rules.get(app_id, {}).values()
        return [r for r in rules if r.kind is kind and r.watches(tenant_id)]

    def observe(self, rule: Rule, observation: Observation, crossing: set[str]) -> None:
        """Keep the observation for the rule's alert when it crosses a threshold no earlier
        observation of this batch (same subject and period) crossed."""
        covered = self.covered.setdefault(
            (rule.alert_id, observation.subject, observation.period_key), set()
        )
        if crossing - covered:
            covered |= crossing
            self.observations.setdefault(rule.alert_id, []).append(observation)

    # --- the events -----------------------------------------------------------------

    def _define(self, app_id: str, alert: UUID, rule: Rule | None) -> None:
        rules = self.rules.setdefault(app_id, {})
        if rule is None:
            rules.pop(alert, None)
        else:
            rules[alert] = rule
        self.rule_writes[(app_id, alert)] = rule

    def _usage(self, event: EventEnvelope, tenant: str) -> None:
        spend = self.watching(event.app_id, tenant, AlertKind.SPEND)
        if spend:
            self.spend_due[(event.app_id, tenant)] = (event, spend)
        feature = event.data.get("feature_key")
        rules = [
            r
            for r in self.watching(event.app_id, tenant, AlertKind.USAGE)
            if r.feature_key == feature
        ]
        used, limit = int(event.data["used"]), event.data.get("limit")
        crossings = [(r, r.crossing(used, limit=limit)) for r in rules]
        crossings = [(r, keys) for r, keys in crossings if keys]
        if not crossings:
            return
        window = event.data.get("window") or {}
        period = _period_text(window)
        epoch = self._epoch((event.app_id, tenant, f"usage:{feature}"), period, event)
        observation = _observation(
            event,
            tenant,
            subject=tenant,
            period_key=f"{period or 'absolute'}@{epoch.epoch}",
            rank=epoch.epoch,
            start=window.get("start"),
            end=window.get("end"),
            value=used,
            limit=limit,
        )
        for rule, keys in crossings:
            self.observe(rule, observation, keys)

    def _reset(self, event: EventEnvelope, tenant: str) -> None:
        feature = event.data.get("feature_key")
        if any(
            r.feature_key == feature for r in self.watching(event.app_id, tenant, AlertKind.USAGE)
        ):
            period = _period_text(event.data.get("window") or {})
            self._open((event.app_id, tenant, f"usage:{feature}"), period, event)

    def _balance(self, event: EventEnvelope, tenant: str, source: str = "") -> None:
        """Per threshold of the currency: its period opens when the balance rises above it
        (a credit), and the balance at or below it is observed in that period. `source`
        names a balance other than the CreditBalance ("grants:", the prepaid grants')."""
        balance, moved = event.data["balance"], event.data["amount"]
        currency, value = str(balance["currency"]), int(balance["amount"])
        before = value - int(moved["amount"])  # a balance opens from nothing
        for rule in self.watching(event.app_id, tenant, AlertKind.CREDIT_BALANCE):
            for threshold in rule.thresholds:
                if threshold.amount is None or threshold.amount.currency != currency:
                    continue
                level = threshold.amount.amount
                key = (event.app_id, tenant, f"credit:{source}{currency}:{level}")
                if before <= level < value:
                    self._open(key, "", event)
                if value > level:
                    continue
                epoch = self._epoch(key, "", event)
                observation = _observation(
                    event,
                    tenant,
                    subject=f"{tenant}:{source}{threshold.key}",
                    period_key=f"credit:{source}@{epoch.epoch}"
                    if source
                    else f"credit@{epoch.epoch}",
                    rank=epoch.epoch,
                    start=epoch.opened_at,
                    end=None,
                    value=value,
                    currency=currency,
                    threshold_key=threshold.key,
                )
                self.observe(rule, observation, {threshold.key})

    def _epoch(self, key: EpochKey, period: str, event: EventEnvelope) -> Epoch:
        """The epoch of the period the event is in; one opened now if the evaluator has
        not seen this period open."""
        if key not in self.epochs:
            self.epochs[key] = self.load_epoch(key)
        known = self.epochs[key]
        if known is not None and known.period == period:
            return known
        return self._open(key, period, event)

    def _open(self, key: EpochKey, period: str, event: EventEnvelope) -> Epoch:
        opened = Epoch(period=period, epoch=event.position, opened_at=event.occurred_at)
        self.epochs[key] = opened
        self.epoch_writes.add(key)
        return opened


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()


def _period_text(window: dict[str, Any]) -> str:
    if not window:
        return ""
    return f"{window.get('start')}/{window.get('end')}"


def _observation(
    event: EventEnvelope,
    tenant: str,
    *,
    subject: str,
    period_key: str,
    rank: int,
    start: Any,
    end: Any,
    value: int,
    limit: int | None = None,
    currency: str | None = None,
    threshold_key: str | None = None,
) -> Observation:
    return Observation(
        tenant_id=tenant,
        subject=subject,
        period_key=period_key,
        rank=rank,
        period_start=start,
        period_end=end,
        value=value,
        currency=currency,
        limit=limit,
        source_position=event.position,
        source_event_id=event.id,
        observed_at=datetime.fromisoformat(event.occurred_at),
        threshold_key=threshold_key,
    )


class AlertEvaluator:
    """Follows the event log (up to the usage read model) and fires the alerts' thresholds."""

    def __init__(
        self,
        ledger: Any,
        views: ViewStore,
        clock: Clock,
        ports: BillingPorts,
        on_commit: list[Callable[[], None]] | None = None,
        batch: int = 1000,
    ) -> None:
        self.ledger, self.views, self.clock, self.ports = ledger, views, clock, ports
        self.batch = batch
        self.bus = CommandBus(
            store=ledger,
            clock=clock,
            handlers={RecordAlertTriggers: record_alert_triggers},
            on_commit=on_commit if on_commit is not None else [],
        )
        self._lock = threading.Lock()

    def ensure_tables(self) -> None:
        self.views.ensure(EvaluatorTables())

    def position(self) -> int:
        return self.views.position(EVALUATOR)

    def evaluate(self) -> int:
        """Evaluate everything the usage read model has applied; returns how many
        thresholds fired."""
        fired = 0
        with self._lock:
            while True:
                start = self.views.position(EVALUATOR)
                stop = min(
                    self.ledger.recorder.max_notification_id() or 0,
                    self.views.position(UsageProjector.NAME),
                )
                if stop <= start:
                    return fired
                fired += self._step(start, stop)

    def _step(self, start: int, stop: int) -> int:
        """One batch after `start`: evaluate it, record what fired, then save the rules,
        epochs and the position reached."""
        rules = self._rules()
        topics = TOPICS if rules else DEFINITION_TOPICS
        events = read_envelopes(self.ledger.recorder, start, self.batch, stop, topics)
        end = events[-1].position if len(events) == self.batch else stop
        if not rules:  # nothing to evaluate until the first alert: read only definitions
            first = next((i for i, e in enumerate(events) if e.type == AlertCreated.NAME), None)
            if first is not None:
                events, end = events[: first + 1], events[first].position
        batch = Batch(rules=rules, load_epoch=self._load_epoch)
        for event in events:
            batch.feed(event)
        self._price_spend(batch)
        fired = self._record(batch)
        self._save(batch, start, end)
        return fired

    # --- spend ------------------------------------------------------------------------

    def _price_spend(self, batch: Batch) -> None:
        """Once per tenant of the batch with a spend alert: the upcoming invoice's total."""
        for (app_id, tenant), (event, rules) in batch.spend_due.items():
            observation = self._spend(app_id, tenant, event)
            if observation is None:
                continue
            for rule in rules:
                keys = rule.crossing(observation.value, currency=observation.currency)
                if keys:
                    batch.observe(rule, observation, keys)

    def _spend(self, app_id: str, tenant: str, event: EventEnvelope) -> Observation | None:
        slot = self.ledger.get(tenant_slot_id(app_id, tenant))
        if not isinstance(slot, TenantSlot):
            return None
        subscription = self.ledger.get(slot.state.subscription_id)
        if not isinstance(subscription, Subscription):
            return None
        try:
            upcoming = upcoming_invoice(
                self.ledger, self.clock.now(), self.ports, app_id, subscription.id
            )
        except DomainError as error:  # nothing will be billed (e.g. canceled)
            log.debug("alert_spend_skipped", tenant=tenant, reason=error.code)
            return None
        total = upcoming["total"]
        period = subscription.state.current_period
        return _observation(
            event,
            tenant,
            subject=tenant,
            period_key=f"{subscription.id}:{period.start.isoformat()}/{period.end.isoformat()}",
            rank=(period.start - _EPOCH_ZERO) // timedelta(microseconds=1),
            start=period.start,
            end=period.end,
            value=int(total["amount"]),
            currency=str(total["currency"]),
        )

    # --- recording --------------------------------------------------------------------

    def _record(self, batch: Batch) -> int:
        """One command per alert with something new to fire."""
        fired = 0
        for alert_id, observations in batch.observations.items():
            alert = self.ledger.get(alert_id)
            if not isinstance(alert, Alert):
                continue
            due = [o for o in observations if alert.due(o)]
            if not due:
                continue
            command = RecordAlertTriggers(
                app_id=alert.state.app_id, alert_id=alert_id, observations=due, actor=ACTOR
            )
            fired += int(self.bus.handle(command).result["fired"])
        return fired

    def _save(self, batch: Batch, start: int, end: int) -> None:
        with self.views.transaction() as conn:
            if self.views.position(EVALUATOR, conn, lock=True) != start:
                return  # another evaluator got there first (what it recorded is the same)
            tx = SqlViewTx(self.views, conn)
            for (app_id, alert), rule in batch.rule_writes.items():
                key = {"app_id": app_id, "alert_id": str(alert)}
                if rule is None:
                    tx.delete(RULES, key)
                else:
                    tx.upsert(RULES, key, rule.row())
            for app_id, tenant, subject in batch.epoch_writes:
                epoch = batch.epochs[(app_id, tenant, subject)]
                assert epoch is not None
                tx.upsert(
                    EPOCHS,
                    {"app_id": app_id, "tenant_id": tenant, "subject": subject},
                    {"period": epoch.period, "epoch": epoch.epoch, "opened_at": epoch.opened_at},
                )
            tx.flush()
            self.views.set_position(conn, EVALUATOR, end)

    # --- state ------------------------------------------------------------------------

    def _rules(self) -> dict[str, dict[UUID, Rule]]:
        rules: dict[str, dict[UUID, Rule]] = {}
        for row in self.views.query(f"SELECT * FROM {{{RULES}}}"):
            rule = Rule.from_row(row)
            rules.setdefault(rule.app_id, {})[rule.alert_id] = rule
        return rules

    def _load_epoch(self, key: EpochKey) -> Epoch | None:
        app_id, tenant, subject = key
        rows = self.views.query(
            f"SELECT period, epoch, opened_at FROM {{{EPOCHS}}} "
            "WHERE app_id = :app_id AND tenant_id = :tenant_id AND subject = :subject",
            {"app_id": app_id, "tenant_id": tenant, "subject": subject},
        )
        if not rows:
            return None
        row = rows[0]
        return Epoch(period=row["period"], epoch=int(row["epoch"]), opened_at=row["opened_at"])
