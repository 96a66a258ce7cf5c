"""The hash chain over the event log, without I/O: what a seal hashes and how a chain is checked.

Each app's events form one chain, in the order the sealer sealed them (position order): entry
`seq` holds `hash = sha256(prev_hash || digest(event))`, where the digest covers the stored
event's bytes as they sit in the store (position, topic, originator id, version, state), so
editing, deleting or moving any sealed event changes what verification recomputes.
ADR 0016 says what is covered and what is not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from uuid import UUID

import orjson

GENESIS = "0" * 64  # the prev_hash of each app's first entry
DIGEST_FORMAT = b"tally-seal/1"  # changes if the digest's layout ever does

EDITED, MISSING, REORDERED, UNSEALED = "edited", "missing", "reordered", "unsealed"


@dataclass(frozen=True)
class LoggedEvent:
    """One stored event as the store holds it (its bytes, untouched)."""

    position: int
    originator_id: UUID
    version: int
    topic: str
    state: bytes

    def identity(self) -> tuple[str, str]:
        """(app_id, event_id) from the state; empty strings when the state is not our JSON."""
        try:
            state = orjson.loads(self.state)
        except orjson.JSONDecodeError:
            return "", ""
        if not isinstance(state, dict):
            return "", ""
        return str(state.get("app_id") or ""), str(state.get("event_id") or "")


@dataclass(frozen=True)
class Seal:
    """One entry of an app's chain: which event it seals, and the hashes that link it."""

    app_id: str
    seq: int
    position: int
    event_id: str
    originator_id: UUID
    version: int
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Break:
    """The first place a chain does not verify, and why."""

    position: int
    event_id: str | None
    reason: str  # edited | missing | reordered | unsealed
    detail: str


@dataclass(frozen=True)
class Verification:
    """One app's chain, recomputed: how far it holds and where it first breaks."""

    app_id: str
    checked: int  # sealed events whose seal was recomputed and held
    head_hash: str  # the hash of the last entry that held (GENESIS when none)
    sealed_through: int  # the sealer's position: every event at or below it was sealed
    not_yet_sealed: int  # the app's events the sealer has not reached yet (not covered)
    broken: Break | None = None

    @property
    def intact(self) -> bool:
        return self.broken is None

    def as_json(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "intact": self.intact,
            "checked": self.checked,
            "head_hash": self.head_hash,
            "sealed_through": self.sealed_through,
            "not_yet_sealed": self.not_yet_sealed,
            "first_break": asdict(self.broken) if self.broken else None,
        }


def event_digest(event: LoggedEvent) -> bytes:
    """SHA-256 of the event's stored fields, each length-prefixed (no field can run into the
    next)."""
    digest = hashlib.sha256(DIGEST_FORMAT)
    for part in (
        str(event.position).encode(),
        event.topic.encode(),
        str(event.originator_id).encode(),
        str(event.version).encode(),
        bytes(event.state),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def link(prev_hash: str, event: LoggedEvent) -> str:
    """The hash of the entry that seals `event` after the entry whose hash is `prev_hash`."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + event_digest(event)).hexdigest()


def seal_of(app_id: str, event_id: str, seq: int, prev_hash: str, event: LoggedEvent) -> Seal:
    return Seal(
        app_id=app_id,
        seq=seq,
        position=event.position,
        event_id=event_id,
        originator_id=event.originator_id,
        version=event.version,
        prev_hash=prev_hash,
        hash=link(prev_hash, event),
    )


Locate = Callable[[UUID, int], int | None]  # (aggregate, version) -> its position now, if any


class ChainCheck:
    """Walks one app's seals in seq order, recomputing each entry from the stored event."""

    def __init__(self) -> None:
        self.next_seq = 1
        self.head = GENESIS
        self.checked = 0

    def check(self, seal: Seal, found: LoggedEvent | None, locate: Locate) -> Break | None:
        """None when this entry holds (then it becomes the head), else the break."""
        broken = self._seal_break(seal) or self._event_break(seal, found, locate)
        if broken is None:
            self.head, self.next_seq, self.checked = seal.hash, seal.seq + 1, self.checked + 1
        return broken

    def _seal_break(self, seal: Seal) -> Break | None:
        """The seal rows themselves: none left out, each linked to the one before."""
        if seal.seq != self.next_seq:
            return _break(seal, MISSING, f"entry {self.next_seq} of the chain is gone")
        if seal.prev_hash != self.head:
            return _break(seal, EDITED, f"entry {seal.seq} does not follow entry {seal.seq - 1}")
        return None

    def _event_break(self, seal: Seal, found: LoggedEvent | None, locate: Locate) -> Break | None:
        """The sealed event: still there, still the same event, still the same bytes."""
        if found is None or not _same_event(seal, found):
            now_at = locate(seal.originator_id, seal.version)
            if now_at is not None:
                return _break(seal, REORDERED, f"the event sealed here is now at {now_at}")
            if found is None:
                return _break(seal, MISSING, "the event sealed here was deleted")
            return _break(seal, REORDERED, "another event took the sealed event's position")
        if link(self.head, found) != seal.hash:
            return _break(seal, EDITED, "the stored event differs from the one sealed")
        return None


def _same_event(seal: Seal, event: LoggedEvent) -> bool:
    return (event.originator_id, event.version) == (seal.originator_id, seal.version)


def _break(seal: Seal, reason: str, detail: str) -> Break:
    return Break(position=seal.position, event_id=seal.event_id, reason=reason, detail=detail)
