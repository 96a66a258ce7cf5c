"""The operator console (`GET /console`, docs/console.md): server-rendered pages over the
same queries, routes and commands the API uses, signed in with an API key; plus Swagger UI
and ReDoc from local assets. Every asset is vendored under static/ (VENDORED.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from adapters.console import audit, billing, catalog, docs, overview, signin, tenants
from adapters.console.guard import install_guards
from adapters.console.render import HERE
from adapters.console.session import SessionSigner

if TYPE_CHECKING:
    from adapters.settings import Settings

STATIC = HERE / "static"


def install_console(app: FastAPI, settings: Settings) -> None:
    """Mount the console's pages and assets and the local API docs on the app (whose
    `docs_url` and `redoc_url` are None). No route here is in /openapi.json."""
    app.state.console_signer = SessionSigner(
        settings.console_secret, settings.console_session_hours * 3600
    )
    install_guards(app)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    for module in (signin, overview, tenants, catalog, billing, audit, docs):
        app.include_router(module.router)


__all__ = ["install_console"]
