"""Who is using the console: the session's key, re-verified on every request, its scopes, and
the CSRF check of every form posted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, quote

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import RedirectResponse, Response

from adapters.console.render import page, problem
from adapters.console.session import COOKIE, CSRF_FIELD, Session, SessionSigner
from adapters.http.auth import KeyVerifier, Principal
from adapters.http.errors import ApiError, status_for
from domain.api_key import Scope
from domain.errors import DomainError

T = TypeVar("T")
MAX_FORM_FIELDS = 100


class SignInRequired(Exception):
    """No session, an expired one, or its key was revoked: back to the sign-in form."""


class Refused(Exception):
    """A request the console refuses with a page: bad CSRF token (403), missing scope."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Operator:
    """The signed-in key: its app, scopes, and the CSRF token its forms carry."""

    principal: Principal
    session: Session
    csrf: str

    @property
    def app_id(self) -> str:
        return self.principal.app_id

    @property
    def can_write(self) -> bool:
        return self.principal.has(Scope.WRITE)

    @property
    def scopes(self) -> list[str]:
        return sorted((scope.value for scope in self.principal.scopes), key=_rank)

    def require(self, scope: Scope) -> None:
        if not self.principal.has(scope):
            raise Refused(403, f"this action needs the {scope.value} scope")


def _rank(scope: str) -> int:
    return Scope(scope).rank


def signer_of(request: Request) -> SessionSigner:
    return request.app.state.console_signer  # type: ignore[no-any-return]


async def current_operator(request: Request) -> Operator:
    """The operator of a signed-in session; SignInRequired otherwise."""
    signer = signer_of(request)
    session = signer.load(request.cookies.get(COOKIE))
    if session is None or session.key_id is None:
        raise SignInRequired()
    verifier: KeyVerifier = request.app.state.keys
    try:
        principal = await run_in_threadpool(verifier.verify_id, session.key_id)
    except ApiError:
        raise SignInRequired() from None
    request.state.principal = principal
    return Operator(principal, session, signer.csrf_token(session))


Op = Annotated[Operator, Depends(current_operator)]


async def form_of(request: Request) -> dict[str, str]:
    """An url-encoded form's fields (the first value of each); {} for any other body."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    text = (await request.body()).decode("utf-8", errors="replace")
    fields: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS):
        fields.setdefault(name, value)
    return fields


@dataclass(frozen=True)
class Posted:
    """A form a signed-in operator posted with its session's CSRF token."""

    operator: Operator
    fields: dict[str, str]


async def posted_form(request: Request, operator: Op) -> Posted:
    fields = await form_of(request)
    if not signer_of(request).csrf_ok(operator.session, fields.get(CSRF_FIELD)):
        raise Refused(403, "the form's CSRF token is missing or wrong: reload the page")
    return Posted(operator, fields)


Form = Annotated[Posted, Depends(posted_form)]


def attempt(call: Callable[[], T]) -> tuple[T | None, str | None]:
    """The call's result, or what refused it (an API or domain error) as a message."""
    try:
        return call(), None
    except (ApiError, DomainError) as error:
        return None, problem(error)


def status_of(error: Exception) -> int:
    if isinstance(error, ApiError):
        return error.status
    if isinstance(error, DomainError):
        return status_for(error)
    return 500


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(part) for part in item.get("loc", ())[1:]) or "request"
        parts.append(f"{field}: {item.get('msg', 'invalid')}")
    return "validation_error: " + "; ".join(parts)


class ConsolePage(APIRoute):
    """A console route: an API or domain error, or bad input, answers a page, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response: Response = await handler(request)
                return response
            except (ApiError, DomainError) as error:
                message, status = problem(error), status_of(error)
            except RequestValidationError as error:
                message, status = _validation_message(error), 422
            context = {"title": "Refused", "message": message}
            return page(request, "refused.html", context, status_code=status)

        return handle


def sign_in_url(request: Request) -> str:
    target = request.url.path
    if request.url.query:
        target += f"?{request.url.query}"
    return f"/console/login?next={quote(target, safe='')}"


def install_guards(app: FastAPI) -> None:
    """Pages for the console's own refusals (the API's stay JSON)."""

    async def on_sign_in(request: Request, _: Exception) -> Response:
        target = sign_in_url(request) if request.method == "GET" else "/console/login"
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def on_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        context: dict[str, Any] = {"title": "Refused", "message": exc.message}
        return page(request, "refused.html", context, status_code=exc.status)

    app.add_exception_handler(SignInRequired, on_sign_in)
    app.add_exception_handler(Refused, on_refused)
