"""structlog for the whole process: console lines (the default) or one JSON object a line
(`TALLY_LOG_FORMAT=json`), on stderr so a command that prints JSON on stdout stays clean.

Each line carries the context bound for the work in hand (`bind`): the request id and the
correlation id of an HTTP request, the command, its command_id and correlation id. The
standard library's loggers (uvicorn's) go through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import Processor

LogFormat = Literal["console", "json"]
_NOTHING: Mapping[str, Any] = MappingProxyType({})
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
LEVELS |= {"error": logging.ERROR}


class _Stderr:
    """Whatever sys.stderr is when a line is written (a test runner swaps it per test)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _json(event: Mapping[str, Any], **_: Any) -> str:
    return orjson.dumps(event, default=repr).decode()


def _shared() -> list[Processor]:
    return [
        merge_context,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _renderer(log_format: LogFormat, stream: Any) -> Processor:
    if log_format == "json":
        return structlog.processors.JSONRenderer(serializer=_json)
    return structlog.dev.ConsoleRenderer(colors=stream.isatty())


def configure_logging(
    log_format: LogFormat = "console",
    level: str = "info",
    stream: TextIO | None = None,
    *,
    stdlib: bool = True,
) -> None:
    """Set up structlog (and, with `stdlib`, the standard library's root logger) for this
    process."""
    out: Any = stream if stream is not None else _Stderr()
    renderer = _renderer(log_format, out)
    extra: list[Processor] = [structlog.processors.format_exc_info] if log_format == "json" else []
    structlog.configure(
        processors=[*_shared(), structlog.processors.StackInfoRenderer(), *extra, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    if stdlib:
        _route_stdlib(renderer, out, LEVELS[level])


def _route_stdlib(renderer: Processor, stream: Any, level: int) -> None:
    """uvicorn and other libraries log through `logging`: render them like our own lines."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*_shared(), structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "tally", False)]:
        root.removeHandler(old)
    handler.tally = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in CHATTY:  # a line per HTTP call they make: only their warnings, unless debug
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.WARNING)


CHATTY = ("stripe", "httpx", "httpcore")
"""Libraries that log every request they send at INFO."""


_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar("tally_log_context", default=_NOTHING)


def merge_context(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add the context bound by `bound` (a line's own keys win)."""
    for key, value in _CONTEXT.get().items():
        event.setdefault(key, value)
    return event


class bound:  # noqa: N801  (used like a function: `with bound(request_id=...)`)
    """Add `context` to every log line written inside the block (this thread or task, and
    the threads it hands work to with the context copied, as FastAPI's thread pool does)."""

    __slots__ = ("context", "token")

    def __init__(self, **context: Any) -> None:
        self.context = context

    def __enter__(self) -> None:
        self.token = _CONTEXT.set({**_CONTEXT.get(), **self.context})

    def __exit__(self, *_: object) -> None:
        _CONTEXT.reset(self.token)


def configure_from_environment() -> None:
    """Logs as TALLY_LOG_FORMAT and TALLY_LOG_LEVEL say (the CLI's entry point)."""
    from adapters.settings import Settings

    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
