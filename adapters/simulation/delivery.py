"""Event delivery in step with the simulation: a relay that publishes committed events to a
stream, one consumer per projector that applies them with `ViewStore.apply`, and the faults
a real deployment meets (JetStream and the relay, modelled in process):

- a relay crash between publish and saving its position publishes the same events again;
- a crash between commit and publish leaves events unpublished for a while (delivery held);
- a lost acknowledgement delivers a batch that was applied once more;
- a projector restart starts a fresh projector instance from its acknowledged position;
- a rebuild replays one read model from position 0 (`adapters/readmodels/replay.py`).

`DeliveryAudit` is one more projector that counts every delivery of every event, so "no event
lost or doubled downstream" is checked on what the projectors were actually given.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from adapters.eventstore.envelopes import read_envelopes
from adapters.readmodels.replay import replay
from adapters.readmodels.runner import ProjectionRunner
from adapters.readmodels.sql_store import ViewStore
from projections.base import Projector, ViewTx
from projections.envelope import EventEnvelope
from projections.registry import build_projectors

RELAY_BATCH = 200
AUDIT_TABLE = "sim_delivered"


class SimulatedCrash(RuntimeError):
    """A projector dying in the middle of a batch."""


class _Every(frozenset[str]):
    """Every event type (the audit handles them all)."""

    def __contains__(self, item: object) -> bool:
        return True


class DeliveryAudit(Projector):
    """How many times each event was applied: exactly once each, or one was lost or doubled."""

    NAME = "sim_delivery_audit"
    TABLES = {
        AUDIT_TABLE: (
            ["position BIGINT", "event_id TEXT", "times BIGINT"],
            ["position", "event_id"],
        )
    }
    HANDLES = _Every()

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        tx.increment(
            AUDIT_TABLE, {"position": event.position, "event_id": str(event.id)}, {"times": 1}
        )


@dataclass
class Consumer:
    """A durable consumer: its projector and the stream index of the next message to deliver."""

    projector: Projector
    acked: int = 0


class SimulatedDelivery:
    """The relay and the consumers; `pump` delivers everything committed so far."""

    def __init__(self, recorder: Any, views: ViewStore, runner: ProjectionRunner) -> None:
        self.recorder, self.views, self.runner = recorder, views, runner
        self.stream: list[EventEnvelope] = []
        self.relayed = 0  # the relay's saved position
        self.held = 0  # steps left before an interrupted delivery resumes
        self.doomed: dict[str, int] = {}  # projector -> dies after this many events, next time
        self.crashes = 0
        self.consumers = {p.NAME: Consumer(p) for p in runner.projectors}

    def publish(self, crash: bool = False) -> int:
        """One relay batch; a crash before the relay saves its position publishes it again."""
        envelopes = read_envelopes(self.recorder, self.relayed, RELAY_BATCH)
        self.stream.extend(envelopes)
        if envelopes and not crash:
            self.relayed = envelopes[-1].position
        return len(envelopes)

    def deliver(self, name: str, size: int, lose_ack: bool = False) -> int:
        """Apply the consumer's next `size` messages; a lost ack delivers them again later."""
        consumer = self.consumers[name]
        batch = self.stream[consumer.acked : consumer.acked + size]
        if batch:
            self.views.apply(consumer.projector, batch)
        if not lose_ack:
            consumer.acked += len(batch)
        return len(batch)

    def deliver_crashing(self, name: str, size: int, after: int) -> bool:
        """A batch whose projector dies after `after` events: the transaction rolls back,
        nothing is acknowledged, the batch comes again. True when it did die."""
        consumer = self.consumers[name]
        batch = self.stream[consumer.acked : consumer.acked + size]
        projector, applied = consumer.projector, [0]
        original = projector.apply

        def dying(event: EventEnvelope, tx: ViewTx) -> None:
            applied[0] += 1
            if applied[0] > after:
                raise SimulatedCrash(f"{name} died after {after} events")
            original(event, tx)

        setattr(projector, "apply", dying)  # noqa: B010 - this instance only, undone below
        try:
            self.views.apply(projector, batch)
        except SimulatedCrash:
            return True
        finally:
            delattr(projector, "apply")
        consumer.acked += len(batch)
        return False

    def pump(self, rng: random.Random) -> bool:
        """Publish all that was committed, then let every consumer drain the stream in batches
        of random size; nothing while delivery is held (False then)."""
        if self.held > 0:
            self.held -= 1
            return False
        while self.publish():
            pass
        for name in sorted(self.consumers):
            if name in self.doomed and self.stream[self.consumers[name].acked :]:
                self.crashes += self.deliver_crashing(
                    name, rng.randint(2, 60), self.doomed.pop(name)
                )
            while self.deliver(name, rng.randint(1, 60)):
                pass
        self._trim()
        return True

    def restart(self, name: str) -> None:
        """A fresh instance of the projector (nothing kept in memory), from its ack floor."""
        fresh = next(p for p in [*build_projectors(), DeliveryAudit()] if p.NAME == name)
        consumer = self.consumers[name]
        index = next(i for i, p in enumerate(self.runner.projectors) if p.NAME == name)
        self.runner.projectors[index] = consumer.projector = fresh

    def rebuild(self, name: str) -> int:
        """Replay one read model from position 0 aside and switch over; returns its position."""
        return replay(self.views, self.recorder, self.consumers[name].projector)

    def _trim(self) -> None:
        done = min(c.acked for c in self.consumers.values())
        if done:
            del self.stream[:done]
            for consumer in self.consumers.values():
                consumer.acked -= done


def attach_delivery(recorder: Any, views: ViewStore, runner: ProjectionRunner) -> SimulatedDelivery:
    """Add the audit projector to the runner and return the simulated delivery over it."""
    audit = DeliveryAudit()
    views.ensure(audit)
    runner.projectors.append(audit)
    return SimulatedDelivery(recorder, views, runner)
