"""Invoice email through a real SMTP server (aiosmtpd, started here on a free loopback port):
the outbox projector writes one row per mail, the mailer sends it and records the outcome.

Crash safety: a mail is recorded as sent only after the server accepted it; a crash in
between sends it again with the same Message-ID.
"""

from __future__ import annotations

import asyncio
import io
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pypdf
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from adapters.eventstore.envelopes import iter_envelopes
from adapters.eventstore.seal_worker import SealerWorker
from adapters.readmodels.replay import replay
from adapters.settings import Settings
from adapters.smtp.sender import MailSender, backoff
from adapters.smtp.transport import SmtpTarget, SmtpTransport
from adapters.smtp.worker import MailerWorker, build_sender
from commands.credit_notes.issue_credit_note import IssueCreditNote
from commands.invoices.draft_invoice import DraftInvoice
from commands.invoices.fail_invoice_payment import FailInvoicePayment
from commands.invoices.finalize_invoice import FinalizeInvoice
from commands.profiles.set_billing_profile import SetBillingProfile
from domain.clock import SettableClock
from projections.outbox.projector import NO_PROFILE, OutboxProjector
from tests.factories import T0, embedded_system, free_port

APP = "acme"
UNICODE = "Überstunden — 東京 🚀"
FROM = "Acme Billing <billing@acme.test>"


class Inbox:
    """An aiosmtpd handler that keeps every accepted message; `answer` can refuse."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.answer = "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if not self.answer.startswith("250"):
            return self.answer
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return self.answer


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def system(clock: SettableClock) -> Iterator[Any]:
    system = embedded_system(clock)
    try:
        yield system
    finally:
        system.close()


def mailer(system: Any, port: int, url: str | None = None) -> MailSender:
    transport = SmtpTransport.from_url(url or f"smtp://127.0.0.1:{port}", timeout=10)
    return MailSender(system.views, system.ledger, transport, FROM, system.clock)


def profile(system: Any, tenant: str = "globex", email: str = "ap@globex.test") -> None:
    reply = system.handle(
        SetBillingProfile(
            app_id=APP,
            tenant_id=tenant,
            name="Globex Müller GmbH",
            email=email,
            country="DE",
            tax_status="taxable",
            timezone="Europe/Berlin",
            currency="EUR",
        )
    )
    assert reply.result


def finalized_invoice(system: Any, tenant: str = "globex", description: str = UNICODE) -> UUID:
    invoice_id = uuid4()
    system.handle(
        DraftInvoice(
            app_id=APP,
            tenant_id=tenant,
            currency="EUR",
            invoice_id=invoice_id,
            lines=[
                {
                    "kind": "base_fee",
                    "description": description,
                    "quantity": 1,
                    "unit_amount": {"amount": 4900, "currency": "EUR"},
                }
            ],
        )
    )
    system.handle(FinalizeInvoice(app_id=APP, invoice_id=invoice_id))
    system.sync()
    return invoice_id


def event_id(system: Any, aggregate: UUID, name: str) -> str:
    """The id of the aggregate's event of that name, read from the event log."""
    for batch in iter_envelopes(system.ledger.recorder, 0, 1000):
        for envelope in batch:
            if envelope.aggregate_id == aggregate and envelope.type == name:
                return str(envelope.id)
    raise AssertionError(f"no {name} for {aggregate}")


def pdf_text(message: EmailMessage) -> str:
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    body = attachment.get_content()
    reader = pypdf.PdfReader(io.BytesIO(body))
    return " ".join(page.extract_text() for page in reader.pages)


def body_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def outbox(system: Any, **filters: Any) -> list[dict[str, Any]]:
    return list(system.query("outbox", app_id=APP, **filters))


# --- sending ------------------------------------------------------------------------------


def test_a_finalized_invoice_is_mailed_to_the_profile_email_with_its_pdf(
    system: Any, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox
    profile(system)
    invoice_id = finalized_invoice(system)
    (row,) = outbox(system)
    assert row["status"] == "pending" and row["recipient"] == "ap@globex.test"

    report = mailer(system, port).send_due()

    assert report.sent == 1
    (message,) = handler.messages
    assert handler.envelopes == [("billing@acme.test", ["ap@globex.test"])]
    assert message["To"] == "ap@globex.test"
    assert message["From"] == FROM
    assert message["Subject"] == "Invoice INV-000001"
    finalized = event_id(system, invoice_id, "InvoiceFinalized")
    assert message["Message-ID"] == f"<{finalized}@tally>"
    assert "INV-000001" in body_of(message)
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "INV-000001.pdf"
    text = squeeze(pdf_text(message))
    for word in ("Überstunden", "—", "東京", "🚀", "Globex Müller GmbH", "INV-000001"):
        assert word in text
    (sent,) = outbox(system)
    assert sent["status"] == "sent" and sent["attempts"] == 1 and sent["sent_at"]
    assert mailer(system, port).send_due().total == 0  # sent once
    assert len(handler.messages) == 1


def test_a_payment_failure_is_mailed_with_the_invoice_attached(
    system: Any, inbox: tuple[Inbox, int], clock: SettableClock
) -> None:
    handler, port = inbox
    profile(system)
    invoice_id = finalized_invoice(system)
    retry_at = clock.now() + timedelta(days=3)
    system.handle(
        FailInvoicePayment(
            app_id=APP, invoice_id=invoice_id, reason="card_declined", next_retry_at=retry_at
        )
    )
    system.sync()

    assert mailer(system, port).send_due().sent == 2

    subjects = [m["Subject"] for m in handler.messages]
    assert subjects == ["Invoice INV-000001", "Payment failed for invoice INV-000001"]
    failed = handler.messages[1]
    text = body_of(failed)
    assert "card_declined" in text and "Attempt: 1" in text
    assert failed["Message-ID"] == f"<{event_id(system, invoice_id, 'InvoicePaymentFailed')}@tally>"
    assert "INV-000001" in pdf_text(failed)
    assert len({m["Message-ID"] for m in handler.messages}) == 2


def test_a_tenant_without_a_billing_profile_is_skipped_with_the_reason(
    system: Any, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox
    finalized_invoice(system, tenant="initech")

    assert mailer(system, port).send_due().total == 0

    (row,) = outbox(system)
    assert row["status"] == "skipped" and row["reason"] == NO_PROFILE
    assert row["recipient"] is None
    assert handler.messages == []
    assert outbox(system, status="skipped") == [row]
    assert outbox(system, status="pending") == []


def test_the_mail_goes_to_the_address_the_profile_had_at_the_event(
    system: Any, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox
    profile(system, email="old@globex.test")
    finalized_invoice(system)
    profile(system, email="new@globex.test")
    finalized_invoice(system)

    mailer(system, port).send_due()

    assert [m["To"] for m in handler.messages] == ["old@globex.test", "new@globex.test"]


def test_a_credit_note_is_mailed_with_its_pdf(system: Any, inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    profile(system)
    invoice_id = finalized_invoice(system)
    note_id = uuid4()
    reply = system.handle(
        IssueCreditNote(
            app_id=APP,
            invoice_id=invoice_id,
            reason="Kulanz für 東京 🚀",
            method="reduce_amount_due",
            credit_note_id=note_id,
        )
    )
    assert reply.result["number_text"] == "CN-000001"
    system.sync()

    assert mailer(system, port).send_due().sent == 2

    note = handler.messages[1]
    assert note["Subject"] == "Credit note CN-000001 for invoice INV-000001"
    assert note["Message-ID"] == f"<{event_id(system, note_id, 'CreditNoteIssued')}@tally>"
    assert "Kulanz für 東京 🚀" in body_of(note)
    (attachment,) = list(note.iter_attachments())
    assert attachment.get_filename() == "CN-000001.pdf"
    text = squeeze(pdf_text(note))
    assert "CN-000001" in text and "東京" in text and "Überstunden" in text


# --- crash safety and retries -------------------------------------------------------------


def test_a_crash_after_the_server_accepted_resends_with_the_same_message_id(
    system: Any, inbox: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, port = inbox
    profile(system)
    finalized_invoice(system)
    crashing = mailer(system, port)

    def crash(*_: Any) -> None:
        raise RuntimeError("power cut between the server's 250 and the record")

    monkeypatch.setattr(crashing, "_record", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        crashing.send_due()
    assert len(handler.messages) == 1  # the server has it
    assert outbox(system)[0]["status"] == "pending"  # not recorded: still due

    restarted = mailer(system, port)
    assert restarted.send_due().sent == 1

    first, again = handler.messages
    assert first["Message-ID"] == again["Message-ID"]  # receivers dedupe on it
    assert first["Date"] == again["Date"] and first["Subject"] == again["Subject"]
    assert body_of(first) == body_of(again)
    assert outbox(system)[0]["status"] == "sent"
    assert restarted.send_due().total == 0
    assert len(handler.messages) == 2


def test_a_temporary_refusal_is_retried_after_a_backoff_and_a_permanent_one_is_failed(
    system: Any, inbox: tuple[Inbox, int], clock: SettableClock
) -> None:
    handler, port = inbox
    profile(system)
    finalized_invoice(system)
    sender = mailer(system, port)

    handler.answer = "451 4.3.0 try again later"
    assert sender.send_due().retrying == 1
    (row,) = outbox(system)
    assert row["status"] == "retrying" and "451" in row["reason"]
    assert row["next_attempt_at"] == (clock.now() + backoff(1)).isoformat()
    assert sender.send_due().total == 0  # not due before its backoff ends

    handler.answer = "250 OK"
    clock.advance(backoff(1))
    assert sender.send_due().sent == 1
    assert outbox(system)[0]["attempts"] == 2

    finalized_invoice(system)
    handler.answer = "554 5.7.1 rejected"
    assert sender.send_due().failed == 1
    clock.advance(timedelta(days=1))
    assert sender.send_due().total == 0  # refused for good: never retried
    assert [r["status"] for r in outbox(system)] == ["sent", "failed"]
    assert "554" in outbox(system, status="failed")[0]["reason"]
    assert backoff(1) == timedelta(seconds=30) and backoff(30) == timedelta(hours=1)


def test_an_unreachable_server_sends_nothing_and_loses_nothing(
    system: Any, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox
    profile(system)
    finalized_invoice(system)

    report = mailer(system, port, url=f"smtp://127.0.0.1:{free_port()}").send_due()

    assert report.total == 0
    assert outbox(system)[0]["status"] == "pending"
    assert mailer(system, port).send_due().sent == 1
    assert len(handler.messages) == 1


def test_a_rebuilt_outbox_sends_nothing_twice(system: Any, inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    profile(system)
    finalized_invoice(system)
    finalized_invoice(system, tenant="initech")  # skipped
    mailer(system, port).send_due()
    before = outbox(system)

    replay(system.views, system.ledger.recorder, OutboxProjector())

    assert outbox(system) == before  # the same rows under the same Message-IDs
    assert mailer(system, port).send_due().total == 0
    assert len(handler.messages) == 1


# --- SMTP settings ------------------------------------------------------------------------


class Accounts:
    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"mailer",
            b"s3cret/pw",
        )
        return AuthResult(success=ok, handled=not ok)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_login_with_the_user_and_password_of_the_url(system: Any) -> None:
    handler, port = Inbox(), free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=Accounts(),
        auth_require_tls=False,
        auth_required=True,
    )
    controller.start()
    try:
        profile(system)
        finalized_invoice(system)
        wrong = mailer(system, port, url=f"smtp://mailer:nope@127.0.0.1:{port}")
        assert wrong.send_due().total == 0  # login refused: nothing sent, still due
        right = mailer(system, port, url=f"smtp://mailer:s3cret%2Fpw@127.0.0.1:{port}")
        assert right.send_due().sent == 1
        assert len(handler.messages) == 1
    finally:
        controller.stop()


def test_the_smtp_url_names_host_port_login_and_tls() -> None:
    plain = SmtpTarget.from_url("smtp://127.0.0.1:8025")
    assert (plain.host, plain.port, plain.username, plain.tls) == ("127.0.0.1", 8025, None, "none")
    login = SmtpTarget.from_url("smtp://user%40x:p%3Ass@mail.test?starttls=true")
    assert (login.username, login.password, login.port, login.tls) == (
        "user@x",
        "p:ss",
        587,
        "starttls",
    )
    assert "p:ss" not in repr(login)
    implicit = SmtpTarget.from_url("smtps://mail.test")
    assert (implicit.port, implicit.tls) == (465, "implicit")
    assert SmtpTarget.from_url("smtp://mail.test").port == 25
    for bad in ("http://mail.test", "smtp://", "mail.test:25"):
        with pytest.raises(ValueError, match="TALLY_SMTP_URL"):
            SmtpTarget.from_url(bad)


def test_serve_runs_the_mailer_when_smtp_is_configured(clock: SettableClock) -> None:
    from adapters.bootstrap import bootstrap
    from adapters.http.serve import _workers

    settings = Settings(database_url="sqlite:///:memory:", smtp_url="smtp://127.0.0.1:1")
    system = bootstrap(settings, clock, deliver_in_process=False)
    try:
        (worker,) = [w for w in _workers(system) if not isinstance(w, SealerWorker)]
        assert isinstance(worker, MailerWorker)
        assert worker.sender.sender == settings.smtp_from
    finally:
        system.close()
    quiet = bootstrap(Settings(database_url="sqlite:///:memory:"), clock, deliver_in_process=False)
    try:
        assert [type(w) for w in _workers(quiet)] == [SealerWorker]  # no mailer
        with pytest.raises(ValueError, match="TALLY_SMTP_URL"):
            build_sender(quiet)
    finally:
        quiet.close()


@pytest.mark.postgres
def test_the_mailer_worker_sends_the_outbox_on_postgresql(
    pg_url: str, pg_schema: str, clock: SettableClock, inbox: tuple[Inbox, int]
) -> None:
    from adapters.bootstrap import bootstrap
    from adapters.nats.workers import build_mailer_worker

    handler, port = inbox
    settings = Settings(
        database_url=pg_url, smtp_url=f"smtp://127.0.0.1:{port}", mailer_poll_seconds=0.05
    )
    system = bootstrap(settings, clock, schema=pg_schema, deliver_in_process=False)
    try:
        profile(system)
        finalized_invoice(system)
        finalized_invoice(system, tenant="initech")  # skipped: no profile
        first, standby = build_mailer_worker(system), build_mailer_worker(system)

        async def scenario() -> None:
            stop = asyncio.Event()
            tasks = [asyncio.create_task(w.run(stop)) for w in (first, standby)]
            deadline = time.monotonic() + 15
            while not handler.messages:
                assert time.monotonic() < deadline, "the mailer sent nothing"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # time for a second send, which must not happen
            stop.set()
            await asyncio.gather(*tasks)

        asyncio.run(scenario())
        assert len(handler.messages) == 1
        assert [r["status"] for r in outbox(system)] == ["sent", "skipped"]
    finally:
        system.close()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, as on every machine of the project)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_starttls_upgrades_the_connection_before_the_mail(
    system: Any, certificate: tuple[Path, Path], clock: SettableClock
) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    handler, port = Inbox(), free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True
    )
    controller.start()
    try:
        profile(system)
        finalized_invoice(system)
        plain = mailer(system, port)
        assert plain.send_due().retrying == 1  # 530 STARTTLS first: retried, not failed
        (row,) = outbox(system)
        assert row["status"] == "retrying" and "530" in row["reason"]
        clock.advance(backoff(1))
        trusted = ssl.create_default_context(cafile=str(cert))
        url = f"smtp://127.0.0.1:{port}?starttls=true"
        transport = SmtpTransport.from_url(url, timeout=10, context=trusted)
        sender = MailSender(system.views, system.ledger, transport, FROM, system.clock)
        assert sender.send_due().sent == 1
        assert len(handler.messages) == 1
    finally:
        controller.stop()


class RefusingSender(Inbox):
    """Refuses the envelope's sender (MAIL FROM) while `refuse_from` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse_from = True

    async def handle_MAIL(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse_from:
            return "553 5.7.1 sender not allowed"
        envelope.mail_from = address
        return "250 OK"


def test_a_refused_sender_is_configuration_the_mail_waits_and_goes_once_fixed(
    system: Any, clock: SettableClock
) -> None:
    """Found in review: a 553 at MAIL FROM marked every mail failed for good."""
    from aiosmtpd.controller import Controller

    handler = RefusingSender()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        profile(system)
        finalized_invoice(system)
        sender = mailer(system, controller.port)
        assert sender.send_due().retrying == 1  # not failed: the From is the setting to fix
        handler.refuse_from = False
        clock.advance(timedelta(days=1))
        assert sender.send_due().sent == 1
        assert [to for _, to in handler.envelopes] == [["ap@globex.test"]]
    finally:
        controller.stop()


def test_the_worker_backs_off_while_the_server_cannot_be_used() -> None:
    from adapters.smtp.worker import MAX_PAUSE_SECONDS, MailerWorker

    worker = MailerWorker(sender=Any, lock=Any, poll_seconds=1.0)  # type: ignore[arg-type]
    pauses = []
    for _ in range(12):
        worker.pause = worker._next_pause(unavailable=True)
        pauses.append(worker.pause)
    assert pauses[:4] == [2.0, 4.0, 8.0, 16.0] and pauses[-1] == MAX_PAUSE_SECONDS
    assert worker._next_pause(unavailable=False) == 1.0
