"""`tally worker plugins`: the hook runner fed from JetStream (durable consumer `plugins`),
reusing the projector worker's in-order delivery, acks and redelivery; the runner's tracking
position skips what was delivered before."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from adapters.nats.projector_worker import ProjectorWorker
from adapters.plugins.hooks import HookRunner, PluginTables
from projections.envelope import EventEnvelope

log = structlog.get_logger(__name__)

CONSUMER = "plugins"


class PluginsWorker(ProjectorWorker):
    """A projector worker whose "apply" runs the hooks (outside any transaction)."""

    def __init__(self, *, runner: HookRunner, **options: Any) -> None:
        super().__init__(projector=PluginTables(), **options)
        self.runner = runner
        self.durable = CONSUMER

    def _not_handled(self, message: Any) -> int | None:
        """Every event goes to the hook runner (it decides which hooks an event reaches)."""
        return None

    async def _apply_envelopes(self, envelopes: Sequence[EventEnvelope], through: int = 0) -> int:
        try:
            reached = await asyncio.to_thread(self.runner.deliver, envelopes)
        except Exception as error:  # the store is down: nak'd, delivered again later
            log.error("plugin_delivery_failed_will_retry", error=repr(error))
            return 0
        return sum(1 for envelope in envelopes if envelope.position <= reached)
