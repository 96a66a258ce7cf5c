"""Routes the docs name that this build does not serve yet: each answers 501 `not_implemented`
with a message naming the route, never a bare 404 (docs/http-api.md).

Add a route to PLANNED when SURFACE.md or docs/ name it before it is built; take it out when
its real route lands (tests/unit/http/test_planned_routes.py checks that every HTTP route
SURFACE.md names is either served or listed here). Planned routes stay out of /openapi.json:
the document lists what works.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fastapi import APIRouter

from adapters.http.errors import ApiError, not_implemented

PlannedRoute = tuple[str, str, str]
"""(method, path template, what it will do)."""

PLANNED: tuple[PlannedRoute, ...] = ()


def planned_router(routes: Iterable[PlannedRoute] = PLANNED) -> APIRouter:
    """A router answering 501 on each planned route (any key or none: nothing is there)."""
    router = APIRouter()
    for method, path, what in routes:
        router.add_api_route(
            path, _answer_501(method, path, what), methods=[method], include_in_schema=False
        )
    return router


def _answer_501(method: str, path: str, what: str) -> Callable[[], None]:
    def planned() -> None:
        raise _planned_error(method, path, what)

    planned.__name__ = f"planned_{method.lower()}_{path.strip('/').replace('/', '_')}"
    return planned


def _planned_error(method: str, path: str, what: str) -> ApiError:
    error = not_implemented(f"{method} {path} ({what})")
    error.details = [{"route": f"{method} {path}", "status": "planned"}]
    return error
