"""The operator console (`GET /console`, docs/console.md): server-rendered pages over the
same queries, routes and commands the API uses, signed in with an API key; plus Swagger UI
and ReDoc from local assets. Every asset is vendored under static/ (VENDORED.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from adapters.console.lazy import LazyConsole

if TYPE_CHECKING:
    from adapters.settings import Settings


def install_console(app: FastAPI, settings: Settings) -> None:
    """Route the console's pages and assets and the local API docs to the console app, built
    on their first request (adapters/console/lazy.py). No route here is in /openapi.json."""
    from adapters.console.session import SessionSigner

    app.state.console_signer = SessionSigner(
        settings.console_secret, settings.console_session_hours * 3600
    )
    app.router.routes.append(LazyConsole(lambda: console_app(app)))


def console_app(api: FastAPI) -> FastAPI:
    """The console's routes on an app of their own, sharing the API app's state."""
    from fastapi.staticfiles import StaticFiles

    from adapters.console import audit, billing, catalog, docs, overview, signin, tenants
    from adapters.console.guard import install_guards
    from adapters.console.render import HERE
    from adapters.http import errors

    console = FastAPI(title=api.title, openapi_url=api.openapi_url, docs_url=None, redoc_url=None)
    console.state = api.state
    errors.install(console)
    install_guards(console)
    console.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    for module in (signin, overview, tenants, catalog, billing, audit, docs):
        console.include_router(module.router)
    return console


__all__ = ["console_app", "install_console"]
