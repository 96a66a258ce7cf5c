"""The command bus: validate, dedupe by command_id, run the handler, commit, retry conflicts."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from pydantic import ValidationError

from commands import edge
from commands.base import Command, EventStore
from commands.observe import CommandObserver, Unobserved
from commands.receipt import CommandReceipt, fingerprint, receipt_id
from commands.unit_of_work import UnitOfWork
from domain.base import Aggregate, Cause
from domain.clock import Clock
from domain.errors import Conflict, DomainError, NotFound

Handler = Callable[[Any, UnitOfWork], dict[str, Any]]


@dataclass(frozen=True)
class CommandResult:
    """What a command returned; `duplicate` when its command_id had already run."""

    result: dict[str, Any]
    duplicate: bool = False
    position: int | None = None
    """The log position of the command's last event (read your writes: `min_position`); for
    a duplicate, or a command that recorded nothing, the head of the log when it answered."""

    def as_reply(self) -> dict[str, Any]:
        reply: dict[str, Any] = {"ok": True, "result": self.result}
        if self.duplicate:
            reply["duplicate"] = True
        if self.position is not None:
            reply["position"] = self.position
        return reply

    def at(self, position: int | None) -> CommandResult:
        return self if position is None else replace(self, position=position)


class CommandIdReused(Conflict):
    code = "command_id_reused"


class UnknownCommand(NotFound):
    code = "unknown_command"


@dataclass
class CommandBus:
    """Runs commands against the event store; one handler per command type."""

    store: EventStore
    clock: Clock
    handlers: Mapping[type[Command], Handler]
    max_attempts: int = 20
    on_commit: list[Callable[[], None]] = field(default_factory=list)
    """Called after every commit (wakes in-process delivery or the relay)."""
    head_position: Callable[[], int] | None = None
    """The log's last position (a duplicate's reply carries it: any later one is as good)."""
    observer: CommandObserver = field(default_factory=Unobserved)
    """Sees each command run and its outcome (metrics, traces, log context)."""
    _by_name: dict[str, type[Command]] = field(init=False)
    _stripes: list[threading.Lock] = field(init=False)

    def __post_init__(self) -> None:
        self._by_name = {cls.NAME: cls for cls in self.handlers}
        self._stripes = [threading.Lock() for _ in range(256)]

    @property
    def command_names(self) -> list[str]:
        return sorted(self._by_name)

    def command_type(self, name: str) -> type[Command]:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownCommand(f"no command named {name!r}", field="command_name") from None

    def handle(self, command: Command, at: datetime | None = None) -> CommandResult:
        """Run one command; raises DomainError subclasses for refusals. `at` stamps its
        events with an instant other than the clock's now (the billing run's due times)."""
        handler = self._handler(command)
        digest = self._digest(command)
        with self.observer.watch((command,)) as watch:
            with self._stripes[self._stripe(command)]:
                outcome = self._attempt(command, handler, digest, at)
            watch.settled((outcome_name(outcome),))
            return outcome

    def _handler(self, command: Command) -> Handler:
        handler = self.handlers.get(type(command))
        if handler is None:
            raise UnknownCommand(f"no handler for {type(command).__name__}", field="command_name")
        return handler

    def _digest(self, command: Command) -> str:
        return fingerprint(command.model_dump(mode="json")) if command.command_id else ""

    def _stripe(self, command: Command) -> int:
        return hash(command.concurrency_key()) % len(self._stripes)

    def _attempt(
        self, command: Command, handler: Handler, digest: str, at: datetime | None = None
    ) -> CommandResult:
        # No receipt lookup before the first run: a duplicate's receipt (version 1 of an id
        # derived from the command_id) collides in the same transaction, so nothing of the
        # rerun is written, and the retry below finds the receipt and answers "duplicate".
        for attempt in range(self.max_attempts):
            earlier = self._earlier_result(command, digest) if attempt else None
            if earlier is not None:
                return earlier
            try:
                return self._run_once(command, handler, digest, at)
            except IntegrityError:
                # Another writer got there first: reload and decide again, with jitter.
                time.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.1)))
            except DomainError:
                # A concurrent run of the same command_id may have committed after the receipt
                # check, so the handler refused (e.g. already active): answer as a duplicate.
                earlier = self._earlier_result(command, digest)
                if earlier is not None:
                    return earlier
                raise
        earlier = self._earlier_result(command, digest)
        if earlier is not None:
            return earlier
        raise Conflict(
            f"{command.NAME} kept conflicting with concurrent writers; retry", field="command_id"
        )

    def dispatch(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The edge form (commands/edge.py): name + JSON fields in, reply dict out, never
        raises for bad input or refusals."""
        try:
            command = edge.command_named(self.command_type, name, payload)
            return self.handle(command).as_reply()
        except edge.Refused as bad:
            return bad.reply()
        except ValidationError as error:  # a rule a handler's own model checked (PlanTerms)
            return edge.refused(edge.validation_error(error, name))
        except DomainError as error:
            return edge.refused(error)

    def _run_once(
        self, command: Command, handler: Handler, digest: str, at: datetime | None = None
    ) -> CommandResult:
        uow = UnitOfWork(self.store, self._cause(command, at))
        result = self._execute(command, handler, digest, uow)
        recordings = uow.commit()
        self._committed()
        return result.at(last_position(recordings) or self._head())

    def _head(self) -> int | None:
        return self.head_position() if self.head_position is not None else None

    def _committed(self) -> None:
        for listener in self.on_commit:
            listener()

    def _cause(self, command: Command, at: datetime | None = None) -> Cause:
        return Cause(
            occurred_at=at or self.clock.now(),
            actor=command.actor,
            on_behalf_of=command.on_behalf_of,
            command_id=command.command_id,
            correlation_id=command.correlation_id or command.command_id,
        )

    def _execute(
        self, command: Command, handler: Handler, digest: str, uow: UnitOfWork
    ) -> CommandResult:
        """Run the handler and, for a command_id, add its receipt to the same unit of work."""
        result = handler(command, uow)
        if command.command_id:
            tenant = getattr(command, "tenant_id", None)
            receipt = CommandReceipt.record(
                command.app_id, tenant, command.NAME, digest, result, uow.cause
            )
            uow.add(receipt)
        return CommandResult(result=result)

    # --- group commit ---------------------------------------------------------------

    def handle_many(
        self,
        commands: Sequence[Command],
        at: Sequence[datetime] | None = None,
        touched: dict[UUID, Aggregate[Any]] | None = None,
        absent: set[UUID] | None = None,
        preloaded: dict[UUID, Aggregate[Any]] | None = None,
    ) -> list[CommandResult | DomainError]:
        """Group commit: run many commands, then save all their events in ONE transaction.

        Each command sees the changes of the commands before it and is isolated from them:
        a refusal discards only its own changes (its outcome is the DomainError). If the
        batch collides with another writer, every command is retried on its own. `at` gives
        each command its instant (default: the clock's now); `touched`, when given, receives
        the batch's aggregates as saved (the caller may read them instead of reloading);
        `absent`, ids the caller just saw do not exist (not looked up again; one created
        meanwhile that the batch creates too collides, and the batch reruns one by one);
        `preloaded`, aggregates the caller just loaded (used instead of loading them again;
        one that another writer changed since fails the save on its version, and the batch
        reruns one by one).
        """
        with self.observer.watch(commands) as watch:
            outcomes = self._group_commit(commands, at, touched, absent, preloaded)
            if outcomes is not None:
                watch.settled([outcome_name(o) for o in outcomes])
        if outcomes is None:  # each command again on its own (each watched by handle)
            if touched is not None:
                touched.clear()
            instants = list(at) if at is not None else [None] * len(commands)
            return [self._handle_or_error(c, i) for c, i in zip(commands, instants, strict=True)]
        return outcomes

    def _prefetched(
        self, commands: Sequence[Command]
    ) -> tuple[dict[UUID, Aggregate[Any]] | None, set[UUID] | None]:
        """The aggregates the batch's commands name (`aggregates_to_load`), loaded in one
        query when the store can (and the ids of those that do not exist)."""
        get_many = getattr(self.store, "get_many", None)
        wanted = list(dict.fromkeys(i for c in commands for i in c.aggregates_to_load()))
        if get_many is None or not wanted:
            return None, None
        found: dict[UUID, Aggregate[Any]] = get_many(wanted)
        return found, set(wanted) - set(found)

    def _group_commit(
        self,
        commands: Sequence[Command],
        at: Sequence[datetime] | None,
        touched: dict[UUID, Aggregate[Any]] | None,
        absent: set[UUID] | None,
        preloaded: dict[UUID, Aggregate[Any]] | None,
    ) -> list[CommandResult | DomainError] | None:
        """The batch's outcomes, or None when it collided with another writer."""
        instants = list(at) if at is not None else [None] * len(commands)
        stripes = sorted({self._stripe(c) for c in commands})
        for index in stripes:
            self._stripes[index].acquire()
        try:
            if preloaded is None and absent is None:  # under the locks: current as loaded
                preloaded, absent = self._prefetched(commands)
            outcomes = self._run_batch(
                commands, instants, touched, set(absent or ()), dict(preloaded or {})
            )
        except IntegrityError:
            outcomes = None
        finally:
            for index in reversed(stripes):
                self._stripes[index].release()
        return outcomes

    def _run_batch(
        self,
        commands: Sequence[Command],
        instants: Sequence[datetime | None],
        touched: dict[UUID, Aggregate[Any]] | None,
        absent: set[UUID],
        shared: dict[UUID, Aggregate[Any]],
    ) -> list[CommandResult | DomainError]:
        outcomes: list[CommandResult | DomainError] = []
        rows: dict[str, list[Any]] = {}
        batch: dict[str, Any] = {"commands": commands}  # handlers may ask once for the batch
        for command, instant in zip(commands, instants, strict=True):
            cause = self._cause(command, instant)
            uow = UnitOfWork(self.store, cause, shared, absent, rows, batch)
            try:
                handler = self._handler(command)
                digest = self._digest(command)
                earlier = self._earlier_in_batch(command, digest, shared)
                outcome = earlier or self._execute(command, handler, digest, uow)
            except DomainError as error:
                outcomes.append(self._refusal_or_duplicate(command, error))
                continue
            uow.merge_into_batch()
            outcomes.append(outcome)
        changed = [a for a in shared.values() if a.pending_events]
        position = None
        if changed:
            position = last_position(self.store.save(*changed, **rows))
            self._committed()
        if touched is not None:
            touched.update(shared)
        return self._positioned(outcomes, position)

    def _positioned(
        self, outcomes: list[CommandResult | DomainError], position: int | None
    ) -> list[CommandResult | DomainError]:
        """Each result of a group commit carries the batch's last position (or the head)."""
        if not any(isinstance(o, CommandResult) and o.position is None for o in outcomes):
            return outcomes
        mark = position or self._head()
        return [
            o.at(mark) if isinstance(o, CommandResult) and o.position is None else o
            for o in outcomes
        ]

    def _refusal_or_duplicate(
        self, command: Command, error: DomainError
    ) -> CommandResult | DomainError:
        """A refusal may just be a committed command_id run again (e.g. "already active")."""
        try:
            return self._earlier_result(command, self._digest(command)) or error
        except DomainError as reused:
            return reused

    def _handle_or_error(
        self, command: Command, at: datetime | None = None
    ) -> CommandResult | DomainError:
        try:
            return self.handle(command, at)
        except DomainError as error:
            return error

    def _earlier_in_batch(
        self, command: Command, digest: str, shared: dict[UUID, Aggregate[Any]]
    ) -> CommandResult | None:
        """A command_id already run earlier in this batch (the store is not asked: a
        duplicate of a committed command collides at the save and the batch is rerun one
        by one)."""
        if not command.command_id:
            return None
        receipt = shared.get(receipt_id(command.app_id, command.command_id))
        return self._as_duplicate(command, digest, receipt)

    def _earlier_result(self, command: Command, digest: str) -> CommandResult | None:
        if not command.command_id:
            return None
        receipt = self.store.get(receipt_id(command.app_id, command.command_id))
        return self._as_duplicate(command, digest, receipt)

    def _as_duplicate(self, command: Command, digest: str, receipt: Any) -> CommandResult | None:
        if not isinstance(receipt, CommandReceipt):
            return None
        if receipt.state.fingerprint != digest or receipt.state.command_name != command.NAME:
            raise CommandIdReused(
                f"command_id {command.command_id!r} was already used for a different command",
                field="command_id",
            )
        return CommandResult(result=receipt.state.result, duplicate=True, position=self._head())


def outcome_name(outcome: CommandResult | DomainError) -> str:
    """How a command ended, for the observer: ok, duplicate or the refusal's code."""
    if isinstance(outcome, DomainError):
        return outcome.code
    return "duplicate" if outcome.duplicate else "ok"


def last_position(recordings: Any) -> int | None:
    """The highest log position among a save's recordings (None when nothing was recorded,
    or the store does not report positions)."""
    ids = [r.notification.id for r in recordings or () if getattr(r, "notification", None)]
    return max(ids) if ids else None
