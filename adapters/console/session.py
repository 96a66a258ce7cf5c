"""The console's session cookie and CSRF tokens, signed with HMAC-SHA256.

The cookie holds a random nonce, the signed-in key's id (none before sign-in) and an expiry,
as base64url JSON followed by its signature. It never holds the key's secret: each request
re-verifies the key id with the KeyVerifier, so a revoked key stops working. The CSRF token
of a session is the HMAC of its nonce, so it changes whenever the nonce does (at sign-in).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson

COOKIE = "tally_console"
CSRF_FIELD = "csrf_token"
MIN_SECRET_LENGTH = 16


@dataclass(frozen=True)
class Session:
    """One browser's session: its nonce (CSRF), the key it signed in with, when it ends."""

    nonce: str
    key_id: str | None
    expires: float

    @property
    def signed_in(self) -> bool:
        return self.key_id is not None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison that also takes non-ASCII input (never equal then)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens with one secret."""

    def __init__(self, secret: str | None, lifetime_seconds: float) -> None:
        if secret is not None and len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"TALLY_CONSOLE_SECRET needs {MIN_SECRET_LENGTH} characters or more")
        if lifetime_seconds <= 0:
            raise ValueError("TALLY_CONSOLE_SESSION_HOURS must be above 0")
        self._secret = secret.encode("utf-8") if secret else secrets.token_bytes(32)
        self.lifetime = lifetime_seconds

    def new(self, key_id: str | None = None) -> Session:
        """A fresh session (a new nonce, so a new CSRF token)."""
        return Session(secrets.token_urlsafe(18), key_id, time.time() + self.lifetime)

    def dump(self, session: Session) -> str:
        body = _b64(orjson.dumps({"n": session.nonce, "k": session.key_id, "e": session.expires}))
        return f"{body}.{self._sign(b'session|' + body.encode('ascii'))}"

    def load(self, cookie: str | None) -> Session | None:
        """The session a cookie holds, or None when it is missing, forged or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        if not _same(signature, self._sign(b"session|" + body.encode("utf-8"))):
            return None
        try:
            data = orjson.loads(_unb64(body))
            session = Session(str(data["n"]), data["k"], float(data["e"]))
        except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return session if session.expires > time.time() else None

    def csrf_token(self, session: Session) -> str:
        return self._sign(b"csrf|" + session.nonce.encode("ascii"))

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and _same(str(token), self.csrf_token(session))

    def _sign(self, message: bytes) -> str:
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest())
