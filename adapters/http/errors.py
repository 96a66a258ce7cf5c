"""One error shape for the whole API, and ONE table from error codes to HTTP statuses.

Every error answers `{"error": {"code", "message", "details": [...]}}`; details name the field
and the rule broken where there is one. Domain error codes map to statuses through their
class (a new subclass of InvalidTransition is a 409 without touching this file); codes that are
not domain classes (validation_error, unauthorized, ...) are listed in STATUS_BY_CODE.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import structlog
from eventsourcing.persistence import InterfaceError, OperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from commands.edge import Refused, validation_error
from commands.edge import error as edge_error
from domain.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    InvalidTransition,
    InvalidValue,
    NotFound,
)

log = structlog.get_logger(__name__)

# Domain error classes -> status (the most specific base class wins, in this order).
STATUS_BY_CLASS: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (InvalidValue, 422),
    (InvalidTransition, 409),
    (AlreadyExists, 409),
    (Conflict, 409),
)

# Codes that are not (only) domain classes: the edges' own errors.
STATUS_BY_CODE: dict[str, int] = {
    "validation_error": 422,
    "app_id_mismatch": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,
    "clock_not_settable": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,  # the key spent its rate limit (rate_limit.py), with Retry-After
    "signature_missing": 400,  # the Stripe webhook's Stripe-Signature header
    "signature_invalid": 400,
    "signature_stale": 400,
    "invalid_body": 400,
    "not_configured": 503,  # e.g. Stripe routes without the Stripe settings
    "not_implemented": 501,
    "unavailable": 503,
    "internal_error": 500,
}

# Persistence failures that mean "the store is down or unreachable": 503, retry later.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
    TimeoutError,
    ConnectionError,
)


def _domain_codes() -> dict[str, int]:
    """code -> status for every DomainError subclass known now (imported modules)."""
    table: dict[str, int] = {}
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        status = next((s for base, s in STATUS_BY_CLASS if issubclass(cls, base)), None)
        if status is not None:
            table.setdefault(cls.code, status)
    return table


def status_for_code(code: str) -> int:
    """The HTTP status of an error code (from a bus reply or an exception)."""
    if code in STATUS_BY_CODE:
        return STATUS_BY_CODE[code]
    return _domain_codes().get(code, 400)


def status_for(error: DomainError) -> int:
    if error.code in STATUS_BY_CODE:
        return STATUS_BY_CODE[error.code]
    for base, status in STATUS_BY_CLASS:
        if isinstance(error, base):
            return status
    return 400


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] = []


class ErrorResponse(BaseModel):
    """The shape of every error answer."""

    error: ErrorBody


ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    # the schema by reference, not {"model": ErrorResponse}: FastAPI would build a model
    # field per route and status (600 at start, TARGETS.md P9) only to write this same
    # reference; ErrorResponse is in the document's schemas once (`document_errors`)
    status: {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
    for status, text in (
        (401, "no API key, or an unknown or revoked one"),
        (403, "the key lacks the scope this route needs"),
        (404, "unknown id (another app's ids too)"),
        (409, "conflict, invalid transition or already exists"),
        (422, "invalid input: details name the field and the rule"),
        (429, "the key sent too many requests (rate limit); retry after Retry-After seconds"),
        (503, "the event store (or another dependency) is unavailable"),
    )
}


def document_errors(app: FastAPI) -> None:
    """ErrorResponse (and ErrorBody) among the OpenAPI document's schemas, where every
    route's ERROR_RESPONSES point, as FastAPI documents a response model."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        components = document.setdefault("components", {})
        schemas = components.get("schemas", {}) | _error_schemas()
        components["schemas"] = dict(sorted(schemas.items()))
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _error_schemas() -> dict[str, Any]:
    """The schemas FastAPI's own document has for a route answering an ErrorResponse."""
    from fastapi.openapi.utils import get_openapi
    from fastapi.routing import APIRoute

    route = APIRoute("/error", _answers_error, response_model=ErrorResponse)
    schemas: dict[str, Any] = get_openapi(title="", version="", routes=[route])["components"][
        "schemas"
    ]
    return schemas


def _answers_error() -> None:
    """The endpoint of the route `_error_schemas` documents (never served)."""


class ApiError(Exception):
    """An error the API answers with directly (auth, 501, app_id mismatch...)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or []
        self.headers = headers

    def error(self) -> dict[str, Any]:
        return edge_error(self.code, self.message, self.details)

    def body(self) -> dict[str, Any]:
        return {"error": self.error()}


def error_response(
    status: int,
    error: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def unavailable(error: BaseException) -> ApiError:
    return ApiError(
        503,
        "unavailable",
        "the event store is unavailable; retry shortly",
        [{"reason": type(error).__name__}],
        headers={"Retry-After": "1"},
    )


def not_implemented(what: str) -> ApiError:
    return ApiError(501, "not_implemented", f"{what} is not available yet in this build")


def request_validation_error(error: RequestValidationError) -> dict[str, Any]:
    """FastAPI's request validation errors in the edge's one shape (commands/edge.py): each
    detail names the field (without the body/query/path prefix), where it was and the rule."""
    return validation_error(error.errors())


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the one error shape."""

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def on_refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refused)
        return error_response(status_for_code(exc.code), exc.error)

    async def on_domain_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return error_response(status_for(exc), exc.as_dict())

    async def on_request_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, request_validation_error(exc))

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ValidationError)
        return error_response(422, validation_error(exc, exc.title))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            406: "not_acceptable",
            413: "payload_too_large",
            415: "unsupported_media_type",
        }.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(
            exc.status_code, {"code": code, "message": message, "details": []}, headers
        )

    async def on_unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("store_unavailable", error=repr(exc))
        api_error = unavailable(exc)
        return JSONResponse(api_error.body(), status_code=503, headers=api_error.headers)

    async def on_overflow(_: Request, exc: Exception) -> JSONResponse:
        # a number or time at the edge of what the arithmetic can hold: bad input, not a crash
        log.warning("value_out_of_range", error=repr(exc))
        return error_response(
            422,
            {
                "code": "invalid_value",
                "message": f"a value is out of range: {exc}",
                "details": [{"rule": "out_of_range"}],
            },
        )

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error=repr(exc))
        return error_response(
            500,
            {"code": "internal_error", "message": "an unexpected error occurred", "details": []},
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(Refused, on_refused)
    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for kind in UNAVAILABLE_ERRORS:
        app.add_exception_handler(kind, on_unavailable)
    app.add_exception_handler(OverflowError, on_overflow)
    app.add_exception_handler(Exception, on_unexpected)
