"""`tally worker mailer`: sends the outbox's mails, one active at a time.

The outbox is a read model (built by its projector, in process or from JetStream); this
worker holds the instance lock (others wait to take over, as the relay's standbys do) and
sends what is due every `poll_seconds`.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import structlog

from adapters.nats.singleton import InstanceLock, sleep_unless, wait_for_lock
from adapters.smtp.compose import compose
from adapters.smtp.sender import MailSender
from adapters.smtp.transport import SmtpTransport

log = structlog.get_logger(__name__)

MAX_PAUSE_SECONDS = 300.0


class MailerWorker:
    """Runs the sender while it holds the lock, until `stop` is set."""

    def __init__(self, sender: MailSender, lock: InstanceLock, poll_seconds: float = 1.0) -> None:
        self.sender, self.lock, self.poll_seconds = sender, lock, poll_seconds
        self.pause = poll_seconds  # grows while the server cannot be used (login, down)

    def stop(self) -> None:
        """Nothing to interrupt: `run` ends when its stop event is set (after its send)."""

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not await wait_for_lock(self.lock, stop, self.poll_seconds):
                return
            await self._send_while_held(stop)
        await asyncio.to_thread(self.lock.release)

    async def _send_while_held(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and await asyncio.to_thread(self.lock.still_held):
            try:
                report = await asyncio.to_thread(self.sender.send_due)
                if report.total:
                    log.info("mails", sent=report.sent, retrying=report.retrying)
                self.pause = self._next_pause(report.unavailable)
                if report.sent == self.sender.batch:
                    continue  # more may be due at once
            except Exception as error:  # a database hiccup or a crash mid-run: again later
                log.warning("mailer_run_failed", error=str(error))
            await sleep_unless(stop, self.pause)

    def _next_pause(self, unavailable: bool) -> float:
        """Back off while the server cannot be used (a wrong password is not tried every
        second), doubling up to MAX_PAUSE; back to the poll interval once it can."""
        if not unavailable:
            return self.poll_seconds
        return min(MAX_PAUSE_SECONDS, max(self.poll_seconds, self.pause * 2))


def build_sender(system: Any, transport: SmtpTransport | None = None) -> MailSender:
    """The mailer of a System, from its settings (TALLY_SMTP_URL, TALLY_SMTP_FROM)."""
    settings = system.settings
    if transport is None:
        if not settings.smtp_url:
            raise ValueError("TALLY_SMTP_URL is not set: the mailer needs an SMTP server")
        transport = SmtpTransport.from_url(settings.smtp_url, settings.smtp_timeout_seconds)
    sender = MailSender(system.views, system.ledger, transport, settings.smtp_from, system.clock)
    if settings.invoice_formatter:  # a selected InvoiceFormatter's document is attached too
        sender.composer = partial(compose, formatter=system.plugins.strategies.invoices)
    sender.ensure_tables()
    return sender
