"""SMTP from a URL: `smtp://[user:password@]host[:port][?starttls=true]` or `smtps://` (TLS
from the first byte). Port defaults: 25 (587 with starttls), 465 for smtps.

A session sends mails over one connection; what the server answers is sorted into
`Refused` (a 5xx answer for this mail: sending it again will not help) and `Unavailable`
(a 4xx answer, a dropped connection, a timeout, or a 5xx about the session such as 530
"STARTTLS first" or 535 "bad credentials": try again later).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

TRUE = frozenset({"1", "true", "yes", "on"})


class SmtpError(Exception):
    """An SMTP failure, with the server's reply code when there was one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class Unavailable(SmtpError):
    """The server cannot take this mail now (4xx, connection lost, timeout)."""


class Refused(SmtpError):
    """The server refused this mail for good (a 5xx answer)."""


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect, parsed from TALLY_SMTP_URL."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    implicit_tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(
                "TALLY_SMTP_URL must look like smtp://[user:password@]host[:port][?starttls=true]"
                " or smtps://…"
            )
        query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
        implicit = parts.scheme == "smtps"
        starttls = not implicit and query.get("starttls", "false") in TRUE
        default_port = 465 if implicit else 587 if starttls else 25
        return cls(
            host=parts.hostname,
            port=parts.port or default_port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            starttls=starttls,
            implicit_tls=implicit,
        )

    def __repr__(self) -> str:  # never print the password
        return f"SmtpTarget({self.host}:{self.port}, user={self.username!r}, tls={self.tls})"

    @property
    def tls(self) -> str:
        return "implicit" if self.implicit_tls else "starttls" if self.starttls else "none"


class SmtpSession:
    """One connection: `send` hands a mail to the server, or raises Refused/Unavailable."""

    def __init__(self, client: smtplib.SMTP) -> None:
        self.client = client

    def alive(self) -> bool:
        """Whether the connection still answers (after a failed send)."""
        try:
            return self.client.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False

    def send(self, message: EmailMessage) -> None:
        try:  # one envelope recipient: the To header is never parsed into several
            refused = self.client.send_message(message, to_addrs=[str(message["To"])])
        except smtplib.SMTPSenderRefused as error:  # the From is not allowed: configuration
            raise Unavailable(f"{error.smtp_code} sender refused", error.smtp_code) from error
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            raise _by_code(min(codes, default=550), str(error.recipients)) from error
        except smtplib.SMTPResponseException as error:
            raise _by_code(error.smtp_code, _reply(error.smtp_error)) from error
        except (smtplib.SMTPException, OSError) as error:
            raise Unavailable(f"{type(error).__name__}: {error}") from error
        if refused:  # some recipients refused, others accepted: there is one per mail
            raise Refused(f"recipients refused: {refused}")


class SmtpTransport:
    """Opens sessions to the configured server."""

    def __init__(
        self, target: SmtpTarget, timeout: float = 30.0, context: ssl.SSLContext | None = None
    ) -> None:
        self.target, self.timeout = target, timeout
        self.context = context or ssl.create_default_context()

    @classmethod
    def from_url(
        cls, url: str, timeout: float = 30.0, context: ssl.SSLContext | None = None
    ) -> SmtpTransport:
        return cls(SmtpTarget.from_url(url), timeout, context)

    @contextmanager
    def session(self) -> Iterator[SmtpSession]:
        """Connect, say hello, upgrade to TLS and log in as configured (Unavailable if any
        step fails), then yield the session; QUIT at the end."""
        client = self._connect()
        try:
            yield SmtpSession(client)
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()

    def _connect(self) -> smtplib.SMTP:
        target = self.target
        client: smtplib.SMTP | None = None
        try:
            if target.implicit_tls:
                client = smtplib.SMTP_SSL(
                    target.host, target.port, timeout=self.timeout, context=self.context
                )
            else:
                client = smtplib.SMTP(target.host, target.port, timeout=self.timeout)
            client.ehlo()
            if target.starttls:
                client.starttls(context=self.context)
                client.ehlo()
            if target.username is not None:
                client.login(target.username, target.password or "")
        except (smtplib.SMTPException, OSError) as error:
            if client is not None:
                client.close()
            raise Unavailable(f"cannot use {target!r}: {type(error).__name__}: {error}") from error
        return client


# 5xx answers about the session, not the mail (TLS or login required, bad credentials): the
# configuration is wrong, and the mail goes out once it is right
SESSION_CODES = frozenset({530, 534, 535, 538})


def _by_code(code: int, text: str) -> Exception:
    if code >= 500 and code not in SESSION_CODES:
        return Refused(f"{code} {text}", code)
    return Unavailable(f"{code} {text}", code)


def _reply(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
