"""tally-client covers the whole API: every route, parameter and body field that GET
/openapi.json lists has its method, argument and model field in the client. When this fails,
regenerate the typed layer and commit it:

    PATH=<a venv with datamodel-code-generator>/bin:$PATH .venv/bin/python \\
        clients/python/scripts/generate.py
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from enum import Enum
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, RootModel
from tally_client import AsyncTally, Tally, models
from tally_client._operations import OPERATIONS

from adapters.bootstrap import bootstrap
from adapters.http.app import create_app
from adapters.settings import Settings

GENERIC = {"min_position", "timeout"}  # every method takes these as keywords


@pytest.fixture(scope="module")
def document() -> Iterator[dict[str, Any]]:
    """GET /openapi.json of a Tally app (the document `tally serve` answers)."""
    system = bootstrap(Settings(database_url="sqlite:///:memory:"), deliver_in_process=False)
    try:
        with TestClient(create_app(system)) as http:
            yield http.get("/openapi.json").raise_for_status().json()
    finally:
        system.close()


def missing(document: dict[str, Any]) -> list[str]:
    """What the document has and the client lacks."""
    by_route = {(op.method, op.path): op for op in OPERATIONS.values()}
    problems: list[str] = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            op = by_route.get((method.upper(), path))
            if op is None:
                problems.append(f"route {method.upper()} {path}")
                continue
            problems += missing_in_operation(op, operation)
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        problems += missing_in_schema(name, schema)
    return problems


def missing_in_operation(op: Any, operation: dict[str, Any]) -> list[str]:
    problems = []
    for param in operation.get("parameters", []):
        known = {"path": op.path_params, "query": op.query_params}.get(param["in"], ())
        if param["name"] not in GENERIC and param["name"] not in known:
            problems.append(f"parameter {param['name']} of {op.method} {op.path}")
    if operation.get("requestBody") and op.body is None:
        problems.append(f"body of {op.method} {op.path}")
    for client in (Tally, AsyncTally):
        if not callable(getattr(client, op.name, None)):
            problems.append(f"method {client.__name__}.{op.name}")
    return problems


def missing_in_schema(name: str, schema: dict[str, Any]) -> list[str]:
    model = getattr(models, name, None)
    if isinstance(model, type) and issubclass(model, Enum):
        values = {member.value for member in model}
        return [f"value {name}.{v}" for v in schema.get("enum", []) if v not in values]
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return [f"model {name}"]
    if issubclass(model, RootModel):
        return []  # an enum or a constrained scalar: no fields of its own
    fields = {info.alias or field for field, info in model.model_fields.items()}
    return [f"field {name}.{prop}" for prop in schema.get("properties", {}) if prop not in fields]


def test_the_client_has_every_route_parameter_and_field(document: dict[str, Any]) -> None:
    assert len(document["paths"]) > 50
    assert missing(document) == []


def test_the_check_sees_what_the_client_lacks(document: dict[str, Any]) -> None:
    changed = copy.deepcopy(document)
    changed["paths"]["/v1/brand-new"] = {"get": {"operationId": "brand_new", "responses": {}}}
    changed["paths"]["/v1/plans"]["get"]["parameters"].append(
        {"name": "colour", "in": "query", "schema": {"type": "string"}}
    )
    changed["components"]["schemas"]["DefinePlanBody"]["properties"]["colour"] = {"type": "string"}
    changed["components"]["schemas"]["BrandNewBody"] = {"type": "object", "properties": {}}
    changed["components"]["schemas"]["AlertKind"]["enum"].append("colour")
    assert sorted(missing(changed)) == [
        "field DefinePlanBody.colour",
        "model BrandNewBody",
        "parameter colour of GET /v1/plans",
        "route GET /v1/brand-new",
        "value AlertKind.colour",
    ]


def test_bodies_are_the_documented_models(document: dict[str, Any]) -> None:
    op = OPERATIONS["define_plan"]
    assert op.body is models.DefinePlanBody and op.method == "POST" and op.path == "/v1/plans"
    assert OPERATIONS["get_entitlement"].path_params == ("tenant_id", "feature_key")
    listed = document["paths"]["/v1/plans"]["get"]["parameters"]
    assert "min_position" in {p["name"] for p in listed}
