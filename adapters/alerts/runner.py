"""In-process delivery with alerts: the projectors, then the alert evaluator, then the
projectors again for the AlertTriggered events it recorded.

`bootstrap` builds the System's runner as this class, so in-process delivery
(LocalDelivery, after every commit) and `system.sync()` drive the evaluator too. With NATS,
`system.sync()` still does; a `tally worker` entry for the evaluator does not exist yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.alerts.evaluator import AlertEvaluator
from adapters.readmodels.runner import ProjectionRunner
from adapters.readmodels.sql_store import ViewStore
from projections.base import Projector


class EvaluatingRunner(ProjectionRunner):
    """A ProjectionRunner that also evaluates alerts after each catch-up."""

    def __init__(
        self,
        recorder: Any,
        views: ViewStore,
        projectors: Sequence[Projector],
        alerts: AlertEvaluator | None = None,
    ) -> None:
        super().__init__(recorder, views, projectors)
        self.alerts = alerts

    def ensure_tables(self) -> None:
        super().ensure_tables()
        if self.alerts is not None:
            self.alerts.ensure_tables()

    def catch_up(self, batch: int = 1000) -> int:
        """Projectors, alerts, then projectors again when the log grew meanwhile (what the
        evaluator recorded, here or in another thread); returns the lowest projection
        position reached (as ProjectionRunner.catch_up)."""
        position = super().catch_up(batch)
        if self.alerts is None:
            return position
        self.alerts.evaluate()
        if (self.recorder.max_notification_id() or 0) > position:
            position = super().catch_up(batch)
        return position
