"""Signing in with an API key (a form posting it) and signing out.

The sign-in form carries the CSRF token of a session without a key (set on first visit);
a good key gets a new session (new nonce, so a new token) holding only the key's id.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from adapters.console.guard import ConsolePage, Form, form_of, signer_of
from adapters.console.render import page
from adapters.console.session import COOKIE, CSRF_FIELD, Session
from adapters.http.auth import KeyVerifier
from adapters.http.errors import ApiError

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsolePage)

HOME = "/console"


def _safe_next(target: str | None) -> str:
    """Only a console path (no open redirect to another site)."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return HOME


def set_session(request: Request, response: Response, session: Session) -> None:
    signer = signer_of(request)
    response.set_cookie(
        COOKIE,
        signer.dump(session),
        max_age=int(signer.lifetime),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _form(
    request: Request, session: Session, target: str, error: str | None, status: int
) -> Response:
    context: dict[str, Any] = {
        "title": "Sign in",
        "csrf": signer_of(request).csrf_token(session),
        "next": target,
        "error": error,
    }
    response = page(request, "login.html", context, status_code=status)
    set_session(request, response, session)
    return response


@router.get("/login")
def login_form(
    request: Request, next_: Annotated[str | None, Query(alias="next", max_length=2000)] = None
) -> Response:
    signer = signer_of(request)
    session = signer.load(request.cookies.get(COOKIE)) or signer.new()
    return _form(request, session, _safe_next(next_), None, 200)


@router.post("/login")
async def login(request: Request) -> Response:
    signer = signer_of(request)
    fields = await form_of(request)
    target = _safe_next(fields.get("next"))
    session = signer.load(request.cookies.get(COOKIE))
    if session is None or not signer.csrf_ok(session, fields.get(CSRF_FIELD)):
        return _form(request, signer.new(), target, "The form expired: sign in again.", 403)
    verifier: KeyVerifier = request.app.state.keys
    try:
        principal = await run_in_threadpool(verifier.verify, fields.get("api_key", "").strip())
    except ApiError as error:
        return _form(request, session, target, f"Refused: {error.message}", 401)
    response = RedirectResponse(target, status_code=303)
    set_session(request, response, signer.new(principal.key_id))
    return response


@router.post("/logout")
def logout(request: Request, form: Form) -> Response:
    response = RedirectResponse("/console/login", status_code=303)
    set_session(request, response, signer_of(request).new())
    return response
