"""Typed errors: every refusal from Tally (HTTP or NATS) as an exception with its code."""

from __future__ import annotations

from typing import Any


class TallyError(Exception):
    """An error answer: `code` (e.g. `not_found`), `message`, `details` (each may name a
    `field` and a `rule`), `field` (the first detail's), and the HTTP `status` when known."""

    def __init__(
        self,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message
        self.details: list[dict[str, Any]] = list(details or [])
        self.status, self.retry_after = status, retry_after

    @property
    def field(self) -> str | None:
        """The field the first detail names, if any."""
        for detail in self.details:
            if isinstance(detail.get("field"), str):
                return str(detail["field"])
        return None

    @property
    def rule(self) -> str | None:
        """The rule the first detail names (e.g. `missing`, `extra_forbidden`), if any."""
        for detail in self.details:
            if isinstance(detail.get("rule"), str):
                return str(detail["rule"])
        return None


class BadRequest(TallyError):
    """400: the body could not be read (not JSON, nested too deeply, ...)."""


class Unauthorized(TallyError):
    """401: no API key, or an unknown or revoked one."""


class Forbidden(TallyError):
    """403: the key lacks the scope the route needs."""


class NotFound(TallyError):
    """404: unknown id, command or query (another app's ids too)."""


class Conflict(TallyError):
    """409: an invalid transition, something that already exists, a reused command_id."""


class InvalidInput(TallyError):
    """422: the input breaks a rule; `field` and `rule` say which."""


class RateLimited(TallyError):
    """429: the key's rate limit is spent; `retry_after` says for how long."""


class Unavailable(TallyError):
    """503: the event store, a read model or a dependency did not answer in time."""


class ServerError(TallyError):
    """500 and other 5xx answers."""


class TransportError(TallyError):
    """No answer at all: the connection failed or timed out (after the retries)."""


_BY_STATUS: dict[int, type[TallyError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidInput,
    429: RateLimited,
    503: Unavailable,
}

_BY_CODE: dict[str, type[TallyError]] = {
    "validation_error": InvalidInput,
    "invalid_value": InvalidInput,
    "invalid_json": BadRequest,
    "invalid_body": BadRequest,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "unknown_command": NotFound,
    "unknown_query": NotFound,
    "already_exists": Conflict,
    "conflict": Conflict,
    "command_id_reused": Conflict,
    "rate_limited": RateLimited,
    "unavailable": Unavailable,
    "read_model_behind": Unavailable,
    "internal_error": ServerError,
}


def error_from(
    error: dict[str, Any], *, status: int | None = None, retry_after: float | None = None
) -> TallyError:
    """The typed exception for an error object `{"code", "message", "details"}`."""
    code = str(error.get("code") or "error")
    kind = _BY_STATUS.get(status or 0) or _BY_CODE.get(code)
    if kind is None:
        kind = ServerError if status is not None and status >= 500 else TallyError
    details = error.get("details")
    return kind(
        code,
        str(error.get("message") or code),
        details if isinstance(details, list) else [],
        status=status,
        retry_after=retry_after,
    )
