"""Event-sourcing base: pydantic domain events with stable names, and a slim aggregate root.

Events are frozen pydantic models implementing the eventsourcing library's "can mutate"
protocol, so the library's repository, snapshots and recorders work with them unchanged.
Every event carries its audit context (actor, on_behalf_of, command_id, correlation_id) and
the clock's time at which it occurred (`timestamp`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Generic, Self, TypeVar
from uuid import UUID, uuid4, uuid5

from eventsourcing.domain import CanMutateAggregate
from pydantic import BaseModel, ConfigDict, Field

from domain.errors import InvalidValue
from domain.value import copy_state

TALLY_NAMESPACE = UUID("8a0c4f5e-58f4-4c55-9b1f-2f6b7c2d9a11")

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

EVENT_TYPES: dict[str, type[DomainEvent]] = {}
AGGREGATE_TYPES: dict[str, type[Aggregate[Any]]] = {}


def stable_id(*parts: str) -> UUID:
    """A deterministic aggregate id from natural keys (app, tenant, feature...)."""
    return uuid5(TALLY_NAMESPACE, "\x1f".join(parts))


class Cause(BaseModel):
    """Who and what caused a change, and when by the clock: stamped on every event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    occurred_at: datetime
    actor: str = "system"
    on_behalf_of: str | None = None  # whom the actor says it acted for; never replaces it
    command_id: str | None = None
    correlation_id: str | None = None


class DomainEvent(BaseModel, CanMutateAggregate[UUID]):
    """Something that happened to an aggregate; changes its state in `apply`.

    Subclasses set NAME (stable, independent of module paths) and SCHEMA_VERSION; when
    the schema changes, bump SCHEMA_VERSION and add an upcaster for the old version.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    NAME: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1
    UPCASTERS: ClassVar[dict[int, Upcaster]] = {}
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset()  # stored, never published

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    event_id: UUID = Field(default_factory=uuid4)
    app_id: str
    tenant_id: str | None = None
    actor: str = "system"
    on_behalf_of: str | None = None
    command_id: str | None = None
    correlation_id: str | None = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.NAME and "NAME" in cls.__dict__:
            if cls.NAME in EVENT_TYPES and EVENT_TYPES[cls.NAME] is not cls:
                raise TypeError(f"event name {cls.NAME!r} is already taken")
            EVENT_TYPES[cls.NAME] = cls

    @classmethod
    def upcast(cls, state: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Bring a stored event's state up to the current schema, one version at a time."""
        while from_version < cls.SCHEMA_VERSION:
            try:
                state = cls.UPCASTERS[from_version](state)
            except KeyError:
                raise TypeError(
                    f"{cls.NAME}: no upcaster from schema version {from_version}"
                ) from None
            from_version += 1
        return state

    @property
    def occurred_at(self) -> datetime:
        return self.timestamp

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        return self  # frozen: a copied aggregate's pending events are the same events

    @property
    def aggregate_type(self) -> str:
        return self.AGGREGATE_TYPE

    AGGREGATE_TYPE: ClassVar[str] = ""

    def apply(self, aggregate: Any) -> None:
        """Change the aggregate's state; override in each event."""

    def mutate(self, aggregate: Any) -> Any:
        return super().mutate(aggregate)


class CreatedEvent(DomainEvent):
    """First event of an aggregate: builds it from nothing."""

    def mutate(self, aggregate: Any) -> Any:
        if aggregate is not None:
            raise InvalidValue("a created event starts a new aggregate")
        cls = AGGREGATE_TYPES[self.AGGREGATE_TYPE]
        new = cls.__new__(cls)
        new._init_base(self.originator_id, self.originator_version, self.timestamp)
        self.apply(new)
        return new


class Snapshot(BaseModel):
    """The whole state of an aggregate at a version, so loads skip its early history."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    NAME: ClassVar[str] = "Snapshot"
    SCHEMA_VERSION: ClassVar[int] = 1

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    topic: str
    state: dict[str, Any]

    @classmethod
    def take(cls, aggregate: Aggregate[Any]) -> Snapshot:
        return cls(
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=aggregate.modified_on,
            topic=aggregate.TYPE,
            state={
                "created_on": aggregate.created_on.isoformat(),
                "modified_on": aggregate.modified_on.isoformat(),
                "state": aggregate.state.model_dump(mode="json"),
            },
        )

    def mutate(self, _: None) -> Aggregate[Any]:
        cls = AGGREGATE_TYPES[self.topic]
        aggregate = cls.__new__(cls)
        aggregate._init_base(
            self.originator_id,
            self.originator_version,
            datetime.fromisoformat(self.state["created_on"]),
        )
        aggregate.modified_on = datetime.fromisoformat(self.state["modified_on"])
        aggregate.state = cls.State.model_validate(self.state["state"])
        return aggregate


class AggregateState(BaseModel):
    """Base of every aggregate's state: which app (and tenant) it belongs to."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    app_id: str
    tenant_id: str | None = None


S = TypeVar("S", bound=AggregateState)
E = TypeVar("E", bound=DomainEvent)


class Aggregate(Generic[S]):
    """Root of a consistency boundary: decides in methods, changes only by its events."""

    TYPE: ClassVar[str] = ""
    State: ClassVar[type[AggregateState]]
    Snapshot = Snapshot

    state: S

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.TYPE:
            AGGREGATE_TYPES[cls.TYPE] = cls

    def _init_base(self, aggregate_id: UUID, version: int, created_on: datetime) -> None:
        self._id = aggregate_id
        self._version = version
        self._created_on = created_on
        self._modified_on = created_on
        self._pending_events: list[DomainEvent] = []

    @property
    def id(self) -> UUID:
        return self._id

    @property
    def version(self) -> int:
        return self._version

    @version.setter
    def version(self, value: int) -> None:
        self._version = value

    @property
    def created_on(self) -> datetime:
        return self._created_on

    @property
    def modified_on(self) -> datetime:
        return self._modified_on

    @modified_on.setter
    def modified_on(self, value: datetime) -> None:
        self._modified_on = value

    @property
    def pending_events(self) -> list[DomainEvent]:
        return self._pending_events

    def private_copy(self) -> Self:
        """A copy whose changes leave this one untouched: its own state, and a new list of
        the same (immutable) pending events; much cheaper than a deep copy of both."""
        clone = copy.copy(self)
        clone.state = copy_state(self.state)
        clone._pending_events = list(self._pending_events)
        return clone

    def collect_events(self) -> list[DomainEvent]:
        collected, self._pending_events = self._pending_events, []
        return collected

    @classmethod
    def _create(
        cls, event_class: type[CreatedEvent], aggregate_id: UUID, cause: Cause, **data: Any
    ) -> Self:
        event = event_class(
            originator_id=aggregate_id,
            originator_version=1,
            timestamp=cause.occurred_at,
            actor=cause.actor,
            on_behalf_of=cause.on_behalf_of,
            command_id=cause.command_id,
            correlation_id=cause.correlation_id,
            **data,
        )
        aggregate: Self = event.mutate(None)
        aggregate._pending_events.append(event)
        return aggregate

    def _trigger(self, event_class: type[E], cause: Cause, **data: Any) -> E:
        event = event_class(
            originator_id=self.id,
            originator_version=self.version + 1,
            timestamp=cause.occurred_at,
            app_id=self.state.app_id,
            tenant_id=data.pop("tenant_id", self.state.tenant_id),
            actor=cause.actor,
            on_behalf_of=cause.on_behalf_of,
            command_id=cause.command_id,
            correlation_id=cause.correlation_id,
            **data,
        )
        event.mutate(self)
        self._pending_events.append(event)
        return event

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id}, version={self.version}, state={self.state!r})"
