"""The correlation id of a command, one rule for every edge: the one its body names, else the
request id the caller sent (`X-Request-Id`, over HTTP or as a NATS header), else its
command_id (the command bus's default), else the HTTP request's own id."""

from __future__ import annotations

import re
from collections.abc import Mapping

from commands.base import Command

REQUEST_ID_HEADER = "X-Request-Id"
_SANE = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def sane_request_id(value: str | None) -> str | None:
    """A caller's request id when it is a plain token (1-128 characters), else None."""
    return value if value is not None and _SANE.fullmatch(value) else None


def request_id_in(headers: Mapping[str, str] | None) -> str | None:
    """The sane X-Request-Id among a message's headers, if any."""
    return sane_request_id(headers.get(REQUEST_ID_HEADER)) if headers else None


def correlated(command: Command, request_id: str | None, sent: bool) -> Command:
    """The command with its correlation id (`sent`: the caller chose `request_id`)."""
    if command.correlation_id or request_id is None or (command.command_id and not sent):
        return command
    return command.model_copy(update={"correlation_id": request_id})
