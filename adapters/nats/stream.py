"""The TALLY_EVENTS stream's configuration, created or brought up to date idempotently."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import structlog
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import APIError, NotFoundError

from adapters.settings import Settings

log = structlog.get_logger(__name__)

DAY = 86_400


@dataclass(frozen=True)
class StreamSettings:
    """Where events are published: stream name, subject prefix and retention."""

    name: str = "TALLY_EVENTS"
    prefix: str = "tally.events"
    dedup_window_seconds: float = 120
    max_age_days: float = 30
    replicas: int = 1  # copies of the stream on a JetStream cluster, set when it is created

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamSettings:
        return cls(
            name=settings.nats_stream,
            prefix=settings.nats_subject_prefix,
            dedup_window_seconds=settings.nats_dedup_window_seconds,
            max_age_days=settings.nats_max_age_days,
            replicas=settings.nats_stream_replicas,
        )

    @property
    def subjects(self) -> list[str]:
        return [f"{self.prefix}.>"]

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            description="Tally's committed events (see docs/asyncapi.yaml)",
            subjects=self.subjects,
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            duplicate_window=float(self.dedup_window_seconds),
            max_age=float(self.max_age_days * DAY),
            num_replicas=self.replicas,
        )


# The fields this module owns; anything else an operator set on the stream is left alone.
_OWNED = ("subjects", "retention", "discard", "duplicate_window", "max_age")


def _differs(current: StreamConfig, desired: StreamConfig) -> list[str]:
    changed = []
    for name in _OWNED:
        have: Any = getattr(current, name)
        want: Any = getattr(desired, name)
        if isinstance(want, float):
            # the server stores nanoseconds; compare at that resolution
            if have is None or round(float(have) * 1e9) != round(want * 1e9):
                changed.append(name)
        elif (sorted(have or []) if name == "subjects" else have) != (
            sorted(want or []) if name == "subjects" else want
        ):
            changed.append(name)
    return changed


async def ensure_stream(js: JetStreamContext, settings: StreamSettings) -> StreamInfo:
    """Create the stream, or update it when its subjects, retention, duplicate window or
    max age differ from the settings. Idempotent; safe to race with another process."""
    desired = settings.config()
    for attempt in range(3):
        try:
            info = await js.stream_info(settings.name)
        except NotFoundError:
            try:
                info = await js.add_stream(desired)
            except APIError:  # another process created it first: look again
                if attempt == 2:
                    raise
                continue
            log.info("stream_created", stream=settings.name, subjects=desired.subjects)
            return info
        current = info.config
        changed = _differs(current, desired)
        if current.storage != desired.storage:
            # JetStream cannot change a stream's storage in place; say so, keep the rest going
            log.error(
                "stream_storage_differs",
                stream=settings.name,
                have=str(current.storage),
                want=str(desired.storage),
            )
        if not changed:
            return info
        updated = replace(current, **{name: getattr(desired, name) for name in _OWNED})
        info = await js.update_stream(updated)
        log.info("stream_updated", stream=settings.name, changed=changed)
        return info
    raise RuntimeError(f"could not create or read stream {settings.name}")  # pragma: no cover
