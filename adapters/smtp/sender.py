"""The mailer: sends the outbox's pending mails and records each outcome.

At least once, with a stable Message-ID: a mail is recorded as sent only after the SMTP
server accepted it (answered 250 to its DATA). A crash between the two sends it again on the
next run, with the same Message-ID, Date and content; receivers (or their mail systems)
dedupe on the Message-ID. Nothing is lost: a row stays due until it is recorded `sent`, or
`failed` when the server refused it for good (a 5xx answer: it would refuse again).
A server that cannot take the mail now (4xx, unreachable) is tried again after a backoff.

The record lives in `outbox_deliveries`, beside the outbox in the views database: a replayed
outbox rebuilds the same rows under the same Message-IDs and sends nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from adapters.readmodels.sql_store import SqlViewTx, ViewStore
from adapters.smtp.compose import compose
from adapters.smtp.transport import Refused, SmtpTransport, Unavailable
from domain.clock import Clock
from projections.outbox.projector import DELIVERIES, OUTBOX, DeliveryTables

log = structlog.get_logger(__name__)

FIRST_RETRY = timedelta(seconds=30)
LAST_RETRY = timedelta(hours=1)


@dataclass
class Report:
    """What one run did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    unavailable: bool = False  # the server could not be used at all (connect, TLS, login)

    @property
    def total(self) -> int:
        return self.sent + self.retrying + self.failed


@dataclass(frozen=True)
class Outcome:
    """How one send went: sent, retrying or failed."""

    status: str
    error: str | None = None
    sent_at: str | None = None
    connection_lost: bool = False


def backoff(attempts: int) -> timedelta:
    """30 s after the first failed attempt, doubling, at most an hour."""
    delay: timedelta = FIRST_RETRY * 2 ** max(attempts - 1, 0)
    return min(delay, LAST_RETRY)


class MailSender:
    """Sends due outbox rows through SMTP, oldest first, and records what happened."""

    def __init__(
        self,
        views: ViewStore,
        ledger: Any,
        transport: SmtpTransport,
        sender: str,
        clock: Clock,
        batch: int = 100,
        composer: Callable[[dict[str, Any], str, Any], Any] = compose,
    ) -> None:
        self.views, self.ledger, self.transport = views, ledger, transport
        self.sender, self.clock, self.batch, self.composer = sender, clock, batch, composer

    def ensure_tables(self) -> None:
        self.views.ensure(DeliveryTables())

    def due(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Pending rows never tried, and retrying rows whose backoff is over."""
        return self.views.query(
            f"SELECT o.*, COALESCE(d.attempts, 0) AS attempts FROM {{{OUTBOX}}} o "
            f"LEFT JOIN {{{DELIVERIES}}} d ON d.message_id = o.message_id "
            "WHERE o.status = 'pending' AND (d.message_id IS NULL OR "
            "(d.status = 'retrying' AND d.next_attempt_at <= :now)) "
            f"ORDER BY o.position LIMIT {int(limit or self.batch)}",
            {"now": self._now()},
        )

    def send_due(self) -> Report:
        """One run: every due row (up to the batch) over one SMTP session. An unreachable
        server ends the run (the rows stay due); each row's outcome is recorded after its
        own send."""
        report = Report()
        rows = self.due()
        if not rows:
            return report
        try:
            with self.transport.session() as session:
                for row in rows:
                    outcome = self._send(session, row)
                    self._record(row, outcome)
                    setattr(report, outcome.status, getattr(report, outcome.status) + 1)
                    if outcome.connection_lost:
                        break  # the rest waits for the next run
        except Unavailable as error:  # could not connect or log in: nothing was sent
            log.warning("smtp_unavailable", error=str(error), due=len(rows))
            report.unavailable = True
        return report

    def _send(self, session: Any, row: dict[str, Any]) -> Outcome:
        try:
            message = self.composer(row, self.sender, self.ledger)
        except Exception as error:  # the document cannot be rendered now: try again later
            # no traceback: its frames hold the customer's profile (name, email, tax id)
            kind = type(error).__name__
            log.warning("mail_compose_failed", message_id=row["message_id"], error=kind)
            return Outcome("retrying", f"compose: {kind}: {error}")
        try:
            session.send(message)
        except Refused as error:  # the log names the mail, not the address (personal data)
            log.warning("mail_refused", message_id=row["message_id"], code=error.code)
            return Outcome("failed", f"refused: {error}")
        except Unavailable as error:
            log.warning("mail_deferred", message_id=row["message_id"], code=error.code)
            lost = not session.alive()
            return Outcome("retrying", f"unavailable: {error}", connection_lost=lost)
        log.info("mail_sent", message_id=row["message_id"], kind=row["kind"])
        return Outcome("sent", sent_at=self._now())

    def _record(self, row: dict[str, Any], outcome: Outcome) -> None:
        """The outcome of a send (a crash before this sends the mail again, same id)."""
        status, attempts = outcome.status, int(row["attempts"]) + 1
        retry_at = None
        if status == "retrying":
            retry_at = (self.clock.now() + backoff(attempts)).astimezone(UTC).isoformat()
        with self.views.transaction() as conn:
            tx = SqlViewTx(self.views, conn)
            tx.upsert(
                DELIVERIES,
                {"message_id": row["message_id"]},
                {
                    "status": status,
                    "attempts": attempts,
                    "last_error": outcome.error,
                    "next_attempt_at": retry_at,
                    "sent_at": outcome.sent_at,
                },
            )
            tx.flush()

    def _now(self) -> str:
        now: datetime = self.clock.now()
        return now.astimezone(UTC).isoformat()
