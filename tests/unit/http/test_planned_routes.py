"""Planned routes answer 501 `not_implemented` naming the route, never a bare 404; every HTTP
route SURFACE.md and docs/http-api.md name is served by the app or listed as planned
(adapters/http/planned.py)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from adapters.http import errors
from adapters.http.planned import PLANNED, planned_router
from tests.unit.http.support import Api, assert_error

SURFACE = Path("/work/shared/spec/SURFACE.md")
ROOT = Path(__file__).resolve().parents[3]
ROUTE = re.compile(
    r"`((?:GET|POST|PUT|DELETE)(?:\|(?:GET|POST|PUT|DELETE))*) (/[^` ?\[]*)"
)  # up to `, a space, ? or [


def surface_routes(text: str) -> set[tuple[str, str]]:
    """(method, path with {} for each parameter) of every route named in backticks."""
    found = set()
    for methods, path in ROUTE.findall(text):
        head, _, last = re.sub(r"\{[^}]*\}", "{}", path.rstrip("/")).rpartition("/")
        for method in methods.split("|"):
            found |= {(method, f"{head}/{name}") for name in last.split("|")}
    return found


def test_every_route_surface_names_is_served_or_planned(acme: Api) -> None:
    """Sent without a key, a served route answers 401 (or its own answer), a planned one
    501; an unknown one would be 404 or 405."""
    docs = [ROOT / "docs" / "http-api.md", *([SURFACE] if SURFACE.exists() else [])]
    named = set().union(*(surface_routes(doc.read_text(encoding="utf-8")) for doc in docs))
    assert len(named) > 60 and ("PUT", "/v1/tenants/{}/quotas/{}") in named
    answers = {
        (method, path): acme.client.request(method, path.replace("{}", "x")).status_code
        for method, path in sorted(named)
    }
    assert {route: status for route, status in answers.items() if status in (404, 405)} == {}
    planned = {(m, re.sub(r"\{[^}]*\}", "{}", p)) for m, p, _ in PLANNED}
    assert {route for route, status in answers.items() if status == 501} == planned & named


def test_a_planned_route_answers_501_naming_it() -> None:
    app = FastAPI()
    errors.install(app)
    app.include_router(planned_router([("GET", "/v1/things/{thing_id}", "one thing")]))
    response = TestClient(app).get("/v1/things/t-1")
    assert_error(response, 501, "not_implemented")
    body = response.json()["error"]
    assert body["message"] == (
        "GET /v1/things/{thing_id} (one thing) is not available yet in this build"
    )
    assert body["details"] == [{"route": "GET /v1/things/{thing_id}", "status": "planned"}]
    assert "/v1/things/{thing_id}" not in app.openapi()["paths"]


def test_the_surface_parser_reads_alternatives_and_parameters() -> None:
    text = "`PUT /v1/tenants/{tenant_id}/quotas/{feature_key}`, `POST|GET /v1/a/{x}/b`, "
    text += "`POST /v1/invoices/{id}/finalize|pay`"
    assert surface_routes(text) == {
        ("PUT", "/v1/tenants/{}/quotas/{}"),
        ("POST", "/v1/invoices/{}/finalize"),
        ("POST", "/v1/invoices/{}/pay"),
        ("POST", "/v1/a/{}/b"),
        ("GET", "/v1/a/{}/b"),
    }
