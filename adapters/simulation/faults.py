"""The fault injector: optimistic conflicts, lost acknowledgements, crashes between commit and
publish, redeliveries and projector restarts or rebuilds, each one step of the scenario.

- conflict: command A runs on a bus over a store that, just before A's first save, lets a
  conflicting command B commit (another writer got there first); A's save then collides and
  the bus (or the ingest) must decide A again on B's result;
- lost acknowledgement: a command (or a usage batch) is sent again as it was, command_id and
  idempotency keys included: the answer must be a duplicate, the same result, nothing recorded;
- crash between commit and publish: the relay publishes a batch and dies before saving its
  position, and delivery stops for a few steps (then everything is delivered, some twice);
- redelivery: a consumer's batch is applied and its ack lost (delivered again), and an old
  batch is applied to a read model twice;
- projector restart (a fresh instance) and rebuild (replay from position 0, then switch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from adapters.eventstore.envelopes import read_envelopes
from adapters.simulation.billing import bill
from adapters.simulation.catalog import CURRENCIES, money
from adapters.simulation.delivery import DeliveryAudit
from adapters.simulation.invoicing import invoices_in, line, name
from adapters.simulation.usage import consume_status, event_to_send, record, tally
from adapters.simulation.world import APP, Outcome, World
from commands.base import Command
from commands.bus import CommandBus
from commands.credit_notes.issue_credit_note import IssueCreditNote
from commands.credits.grant_credit import GrantCredit
from commands.invoices.draft_invoice import DraftInvoice
from commands.invoices.finalize_invoice import FinalizeInvoice
from commands.invoices.pay_invoice import PayInvoice
from commands.invoices.void_invoice import VoidInvoice
from commands.quotas.consume_quota import ConsumeQuota
from commands.subscriptions.change_seats import ChangeSeats
from commands.usage.record_usage import UsageEventIn, UsageIngest
from domain.errors import DomainError
from domain.invoice import InvoiceStatus

Pair = tuple[Command, Command]


class InterleavingStore:
    """The event store, letting another writer commit just before this writer's first save."""

    def __init__(self, store: Any, other: Callable[[], None]) -> None:
        self.store, self.other = store, other
        self.saves = self.collisions = 0

    def get(self, aggregate_id: UUID, version: int | None = None) -> Any:
        return self.store.get(aggregate_id, version=version)

    def save(self, *aggregates: Any, **rows: Any) -> Any:
        self.saves += 1
        if self.saves == 1:
            self.other()
        try:
            return self.store.save(*aggregates, **rows)
        except IntegrityError:
            self.collisions += 1  # the conflict happened: the writer must decide again
            raise


@dataclass
class Race:
    """Two commands; `second` commits between `first`'s decision and its save."""

    world: World
    second: Command
    second_outcome: Outcome | None = None
    second_bus: CommandBus | None = None  # default: the system's bus

    def run_second(self) -> None:
        self.second_outcome = self.world.send(self.second, self.second_bus)

    def run_first(self, command: Command, store: InterleavingStore) -> Outcome:
        try:
            done = self.bus_over(store).handle(command)
        except DomainError as error:
            return Outcome("refused", code=error.code)
        except Exception as error:
            return self.world.crashed(f"conflict {command.NAME}", error)
        return Outcome("duplicate" if done.duplicate else "ok", done.result, position=done.position)

    def bus_over(self, store: Any) -> CommandBus:
        bus = self.world.system.bus
        return CommandBus(
            store=store,
            clock=bus.clock,
            handlers=bus.handlers,
            on_commit=bus.on_commit,
            max_attempts=bus.max_attempts,
            head_position=bus.head_position,
        )

    def finish(self, saves: int) -> Outcome:
        """The second's outcome (run alone when the first never reached its save)."""
        if saves == 0 or self.second_outcome is None:
            self.run_second()
        assert self.second_outcome is not None
        return self.second_outcome


def conflict(world: World) -> None:
    """Two conflicting commands; the first must be decided again after the second."""
    pair = world.rng.choice(PAIRS)(world)
    if pair is None:
        return
    first, second = pair
    race = Race(world, second)
    store = InterleavingStore(world.system.ledger, race.run_second)
    one = race.run_first(first, store)
    two = race.finish(store.saves)
    for command, outcome in ((first, one), (second, two)):
        tally_consume(world, command, outcome)
    world.expect("conflicts_resolved", "crash" not in (one.kind, two.kind), first.NAME)
    world.counts["conflicts_retried"] += store.collisions > 0
    world.log(
        f"conflict {first.NAME} vs {second.NAME} collisions={store.collisions}",
        f"{one.text()} / {two.text()}",
    )


def tally_consume(world: World, command: Command, outcome: Outcome) -> None:
    if isinstance(command, ConsumeQuota):
        status = (
            consume_status(outcome.result, outcome.kind == "duplicate") if outcome.ok else "failed"
        )
        tally(world, command.tenant_id, command.feature_key, status)


def two_consumes(world: World) -> Pair | None:
    tenant, feature, *_ = event_to_send(world)
    first, second = (
        world.build(
            ConsumeQuota,
            tenant_id=tenant,
            feature_key=feature,
            amount=world.rng.randint(1, 60),
            idempotency_key=world.new_key("use"),
        )
        for _ in range(2)
    )
    return first, second


def two_finalizes(world: World) -> Pair | None:
    """Two drafts finalized at once: both take a number from the app's numbering."""
    ids = [draft(world) for _ in range(2)]
    if None in ids:
        return None
    return tuple(world.build(FinalizeInvoice, invoice_id=i) for i in ids)  # type: ignore[return-value]


def draft(world: World) -> UUID | None:
    tenant, currency = world.pick(world.tenants), world.rng.choice(CURRENCIES)
    invoice_id = world.new_id("invoice")
    lines = [line(world, "base_fee", world.rng.randint(100, 5000), currency)]
    outcome = world.act(
        f"draft_invoice {tenant} {name(world, invoice_id)} {currency}",
        DraftInvoice,
        tenant_id=tenant,
        currency=currency,
        lines=lines,
        invoice_id=invoice_id,
    )
    return invoice_id if outcome.ok else None


def pay_and_void(world: World) -> Pair | None:
    found = invoices_in(world, InvoiceStatus.OPEN)
    if not found:
        return None
    invoice_id = found[0].id
    return (
        world.build(PayInvoice, invoice_id=invoice_id),
        world.build(VoidInvoice, invoice_id=invoice_id, reason="raced"),
    )


def two_credit_notes(world: World) -> Pair | None:
    found = invoices_in(world, InvoiceStatus.OPEN, InvoiceStatus.PAID)
    if not found:
        return None
    invoice = found[0]
    method = "refund" if invoice.status is InvoiceStatus.PAID else "reduce_amount_due"
    return tuple(  # type: ignore[return-value]
        world.build(
            IssueCreditNote,
            invoice_id=invoice.id,
            reason="raced",
            method=method,
            credit_note_id=world.new_id("credit_note"),
        )
        for _ in range(2)
    )


def two_grants(world: World) -> Pair | None:
    tenant, currency = world.pick(world.tenants), world.rng.choice(CURRENCIES)
    return tuple(  # type: ignore[return-value]
        world.build(GrantCredit, tenant_id=tenant, amount=money(1000, currency), reason="raced")
        for _ in range(2)
    )


PAIRS: list[Callable[[World], Pair | None]] = [
    two_consumes,
    two_consumes,
    two_finalizes,
    pay_and_void,
    two_credit_notes,
    two_grants,
]


def ingest_conflict(world: World) -> None:
    """A usage batch whose save meets a consume of the same quota: the ingest decides again."""
    tenant, feature, *_ = event_to_send(world)
    other = world.build(
        ConsumeQuota,
        tenant_id=tenant,
        feature_key=feature,
        amount=5,
        idempotency_key=world.new_key("use"),
    )
    race = Race(world, other)
    store = InterleavingStore(world.system.ledger, race.run_second)
    event = UsageEventIn(
        idempotency_key=world.new_key("use"),
        tenant_id=tenant,
        feature_key=feature,
        quantity=world.rng.randint(1, 30),
    )
    status = ingest_through(world, store, event)
    two = race.finish(store.saves)
    tally(world, tenant, feature, status)
    tally_consume(world, other, two)
    world.expect("conflicts_resolved", "crash" not in (status, two.kind), "ingest")
    world.counts["conflicts_retried"] += store.collisions > 0
    world.log(
        f"conflict usage {tenant}/{feature} vs consume collisions={store.collisions}",
        f"{status} / {two.text()}",
    )


def ingest_through(world: World, store: InterleavingStore, event: UsageEventIn) -> str:
    """One event through an ingest over `store`; its status."""
    usage = world.system.usage
    ingest = UsageIngest(store=store, keys=usage.keys, meters=usage.meters, now=usage.now)
    try:
        return str(ingest.record(APP, [event])["results"][0]["status"])
    except DomainError:
        return "failed"
    except Exception as error:
        world.crashed("ingest_conflict", error)
        return "crash"


def billing_conflict(world: World) -> None:
    """A billing run whose (group) commit meets another writer: it decides again (a batch
    reruns one command at a time)."""
    other = world.rng.choice(CONCURRENT)(world)
    if other is None:
        return
    race = Race(world, other)
    race.second_bus = race.bus_over(world.system.ledger)  # the run holds the bus's locks
    bus = world.system.bus
    plain, store = bus.store, InterleavingStore(bus.store, race.run_second)
    bus.store = store
    try:
        bill(world, world.clock.now() + timedelta(hours=world.rng.randint(1, 72)))
    finally:
        bus.store = plain
    two = race.finish(store.saves)
    tally_consume(world, other, two)
    world.counts["conflicts_retried"] += store.collisions > 0
    world.expect("conflicts_resolved", two.kind != "crash", "billing run")
    world.log(f"conflict billing run vs {other.NAME} collisions={store.collisions}", two.text())


def concurrent_consume(world: World) -> Command | None:
    tenant = world.pick(sorted(world.subscriptions))
    if tenant is None:
        return None
    return world.build(
        ConsumeQuota,
        tenant_id=tenant,
        feature_key="api",
        amount=3,
        idempotency_key=world.new_key("use"),
    )


def concurrent_pay(world: World) -> Command | None:
    found = invoices_in(world, InvoiceStatus.OPEN)
    return world.build(PayInvoice, invoice_id=found[0].id) if found else None


def concurrent_seats(world: World) -> Command | None:
    tenant = world.pick(sorted(world.subscriptions))
    if tenant is None:
        return None
    return world.build(
        ChangeSeats, subscription_id=world.subscriptions[tenant], quantity=world.rng.randint(1, 9)
    )


CONCURRENT: list[Callable[[World], Command | None]] = [
    concurrent_consume,
    concurrent_pay,
    concurrent_seats,
]


# --- lost acknowledgements ------------------------------------------------------------------


def lost_ack(world: World) -> None:
    """Send a command, lose the answer, send it again: a duplicate with the same result."""
    command = world.rng.choice(RESENDABLE)(world)
    if command is None:
        return
    first = world.send(command)
    head = world.head()
    again = world.send(command)
    same = again.result == first.result if first.ok else again.code == first.code
    held = same and world.head() == head and (again.kind == "duplicate" or not first.ok)
    world.expect("duplicates_answered_as_duplicates", held, f"{command.NAME}: {again.text()}")
    world.log(f"lost_ack {command.NAME}", f"{first.text()} / resent {again.text()}")
    tally_consume(world, command, first)
    tally_consume(world, command, again)


def resend_consume(world: World) -> Command | None:
    tenant, feature, key, amount = event_to_send(world)
    return ConsumeQuota(
        app_id=APP,
        command_id=world.new_key("cmd"),
        tenant_id=tenant,
        feature_key=feature,
        amount=amount,
        idempotency_key=key,
    )


def resend_pay(world: World) -> Command | None:
    found = invoices_in(world, InvoiceStatus.OPEN)
    if not found:
        return None
    return PayInvoice(app_id=APP, command_id=world.new_key("cmd"), invoice_id=found[0].id)


def resend_grant(world: World) -> Command | None:
    tenant = world.pick(world.tenants)
    return GrantCredit(
        app_id=APP,
        command_id=world.new_key("cmd"),
        tenant_id=tenant,
        amount=money(700, "USD"),
        reason="resent",
    )


RESENDABLE: list[Callable[[World], Command | None]] = [
    resend_consume,
    resend_consume,
    resend_pay,
    resend_grant,
]


def lost_usage_ack(world: World) -> None:
    """A usage batch sent again: every event accepted the first time is a duplicate now."""
    sends = [event_to_send(world) for _ in range(world.rng.randint(1, 10))]
    events = [
        UsageEventIn(idempotency_key=k, tenant_id=t, feature_key=f, quantity=a)
        for t, f, k, a in sends
    ]
    first = record(world, events)
    head = world.head()
    again = record(world, events)
    wanted = ["duplicate" if s == "accepted" else s for s in first]
    world.expect(
        "duplicates_answered_as_duplicates",
        again == wanted and world.head() == head,
        f"usage resent: {again} after {first}",
    )
    for (tenant, feature, _key, _amount), one, two in zip(sends, first, again, strict=True):
        tally(world, tenant, feature, one)
        tally(world, tenant, feature, two)
    world.log(
        f"lost_ack usage_batch {len(events)}", f"{' '.join(first)} / resent {' '.join(again)}"
    )


# --- delivery faults ------------------------------------------------------------------------


def crash_before_publish(world: World) -> None:
    delivery = world.delivery
    published = delivery.publish(crash=True)
    delivery.held = world.rng.randint(1, 8)
    world.counts["crashes_before_publish"] += 1
    world.log(
        "crash relay before saving its position", f"republish {published}, held {delivery.held}"
    )


def redeliver(world: World) -> None:
    """A batch applied and its ack lost, and an old batch applied twice to one read model."""
    delivery, rng = world.delivery, world.rng
    consumer = rng.choice(sorted(delivery.consumers))
    lost = delivery.deliver(consumer, rng.randint(1, 40), lose_ack=True)
    head = world.head()
    after = rng.randint(0, max(head - 1, 0))
    old = read_envelopes(world.system.ledger.recorder, after, rng.randint(1, 50))
    target = delivery.consumers[rng.choice(sorted(delivery.consumers))].projector
    for _ in range(2):
        if old:
            world.system.views.apply(target, old)
    world.counts["redeliveries"] += 1
    world.log(
        f"redeliver {consumer} lost_ack={lost}", f"{target.NAME} twice after {after}: {len(old)}"
    )


def crash_mid_batch(world: World) -> None:
    """A projector will die in the middle of its next batch; the batch comes again."""
    consumer = world.rng.choice(sorted(world.delivery.consumers))
    world.delivery.doomed[consumer] = after = world.rng.randint(0, 20)
    world.log(f"crash projector {consumer} mid-batch", f"dies after {after} events next time")


def restart_projector(world: World) -> None:
    projector = world.rng.choice(sorted(world.delivery.consumers))
    world.delivery.restart(projector)
    world.counts["projector_restarts"] += 1
    world.log(f"restart projector {projector}", "fresh instance")


def rebuild_projector(world: World) -> None:
    names = sorted(n for n in world.delivery.consumers if n != DeliveryAudit.NAME)
    projector = world.rng.choice(names)
    try:
        position = world.delivery.rebuild(projector)
    except Exception as error:
        world.crashed(f"rebuild {projector}", error)
        return
    world.counts["projector_rebuilds"] += 1
    world.log(f"rebuild projector {projector}", f"@{position}")
