"""The console's pages, assets and the local API docs, built on their first request.

The console imports Jinja2, its templates and every page module; an API process that never
serves a page should not pay for that at start-up (TARGETS.md P9). `LazyConsole` is one route
of the API app matching `/console…`, `/docs` and `/redoc`: on first use it builds the console
app (`build`), which shares the API app's state (system, keys, session signer), and hands it
every matching request from then on. The API's middleware wraps it as any route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

PREFIX = "/console"
PAGES = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


class LazyConsole(BaseRoute):
    """A route to the console app, which is built on the first request it matches."""

    def __init__(self, build: Callable[[], FastAPI]) -> None:
        self.build = build
        self._app: FastAPI | None = None

    @property
    def app(self) -> FastAPI:
        if self._app is None:
            self._app = self.build()
        return self._app

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        path: str = scope["path"]
        if path == PREFIX or path.startswith(PREFIX + "/") or path in PAGES:
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
