"""The edge in one place (commands/edge.py): one Instant, one validation_error builder, one
reply shape, commands and query parameters validated by pydantic models, used by HTTP, the
NATS bus and CommandBus.dispatch alike."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

from adapters.http.errors import request_validation_error
from adapters.nats.command_bus import query_params
from commands import edge
from commands.bus import CommandResult
from commands.quotas.configure_quota import ConfigureQuota
from domain.errors import InvalidTransition, NotFound
from projections.queries import QUERIES
from projections.registry import load_queries
from tests.factories import embedded_system

ROOT = Path(__file__).resolve().parents[2]
load_queries()  # every @query registered (bootstrap does this in a process)


def test_one_instant_in_range_with_its_timezone() -> None:
    instants = TypeAdapter(edge.Instant)
    kept = instants.validate_python("2026-01-01T00:00:00+02:00")
    assert kept.utcoffset() is not None and kept.hour == 0  # as given
    for bad in ("2026-01-01T00:00:00", "0001-01-01T00:00:00Z", "9500-01-01T00:00:00Z"):
        with pytest.raises(ValidationError):
            instants.validate_python(bad)
    in_utc = TypeAdapter(edge.UtcInstant).validate_python("2026-01-01T00:00:00+02:00")
    assert in_utc == datetime(2025, 12, 31, 22, tzinfo=UTC) and in_utc.tzinfo is UTC


def test_a_command_validation_error_names_the_command_field_and_rule() -> None:
    with pytest.raises(edge.Refused) as refused:
        edge.validated(ConfigureQuota, {"app_id": "acme", "tenant_id": "t1"}, "configure_quota")
    error = refused.value.error
    assert error["code"] == "validation_error" and refused.value.code == "validation_error"
    assert error["details"] == [
        {"field": "feature_key", "rule": "missing", "message": "Field required"}
    ]
    assert error["message"] == "configure_quota: feature_key: Field required"
    assert refused.value.reply() == {"ok": False, "error": error}


def test_a_request_validation_error_says_where_and_drops_union_tags() -> None:
    items = [
        {"type": "int_type", "loc": ("body", "(batch)", "events", 0, "quantity"), "msg": "bad"},
        {"type": "missing", "loc": ("query", "tenant_id"), "msg": "Field required"},
        {"type": "json_invalid", "loc": ("body", 3), "msg": "x", "ctx": {"error": "oops"}},
    ]
    error = request_validation_error(RequestValidationError(items))
    assert error == edge.validation_error(items)
    assert error["message"] == "events.0.quantity: bad"
    assert [(d["field"], d["in"], d["rule"]) for d in error["details"]] == [
        ("events.0.quantity", "body", "int_type"),
        ("tenant_id", "query", "missing"),
        ("body", "body", "json_invalid"),
    ]
    assert error["details"][2]["message"] == "the body is not valid JSON: oops"


def test_replies_of_every_outcome() -> None:
    assert edge.outcome_reply(CommandResult({"x": 1}, position=7)) == {
        "ok": True,
        "result": {"x": 1},
        "position": 7,
    }
    refusal = InvalidTransition("nope", field="status")
    assert edge.outcome_reply(refusal) == {"ok": False, "error": refusal.as_dict()}
    assert edge.field_error("q", "colour", "extra_forbidden", "no") == {
        "code": "validation_error",
        "message": "q: colour: no",
        "details": [{"field": "colour", "rule": "extra_forbidden", "message": "no"}],
    }


def test_command_named_refuses_an_unknown_name() -> None:
    def command_type(name: str) -> Any:
        raise NotFound(f"no command named {name!r}", field="command_name")

    with pytest.raises(edge.Refused) as refused:
        edge.command_named(command_type, "colour", {})
    assert refused.value.code == "not_found"
    assert refused.value.error["details"] == [{"field": "command_name"}]


def test_query_parameters_are_a_model_of_what_the_query_declares() -> None:
    model = edge.query_model(QUERIES["usage_current_period"], "usage_current_period")
    assert issubclass(model, BaseModel)
    assert set(model.model_fields) == {"app_id", "tenant_id", "feature"}
    assert model.model_fields["tenant_id"].is_required()
    params = query_params("usage_current_period", {"app_id": "a", "tenant_id": "t1"})
    assert params == {"app_id": "a", "tenant_id": "t1"}  # only what was given
    for given, field, rule in (
        ({"app_id": "a", "tenant_id": "t1", "colour": 1}, "colour", "extra_forbidden"),
        ({"app_id": "a"}, "tenant_id", "missing"),
        ({"app_id": "a", "tenant_id": 5}, "tenant_id", "string_type"),
    ):
        with pytest.raises(edge.Refused) as refused:
            query_params("usage_current_period", given)
        detail = refused.value.error["details"][0]
        assert (detail["field"], detail["rule"]) == (field, rule), refused.value.error


def test_a_query_with_keyword_params_takes_extra_ones() -> None:
    given = {"app_id": "a", "tenant_id": "t1", "from": "2026-01-01", "groups": True}
    assert query_params("usage", given) == given
    with pytest.raises(edge.Refused) as refused:
        query_params("no_such_query", {})
    assert refused.value.code == "unknown_query"


def test_every_query_has_a_parameter_model() -> None:
    assert QUERIES
    for name, query in QUERIES.items():
        model = edge.query_model(query, name)
        assert "app_id" in model.model_fields, name


def test_dispatch_answers_through_the_edge() -> None:
    system = embedded_system()
    try:
        bad = system.bus.dispatch("configure_quota", {"app_id": "acme", "tenant_id": "t1"})
        assert bad["ok"] is False and bad["error"]["details"][0]["field"] == "feature_key"
        unknown = system.bus.dispatch("colour", {})
        assert unknown["error"]["code"] == "unknown_command"
        fields = {"app_id": "acme", "tenant_id": "t1", "feature_key": "api", "limit": 5}
        assert system.bus.dispatch("configure_quota", fields)["result"]["limit"] == 5
        other = {"app_id": "acme", "tenant_id": "t1", "feature_key": "seats"}
        missing = system.bus.dispatch("reset_quota", other)
        assert missing == {"ok": False, "error": missing["error"]}
        assert missing["error"]["code"] == "not_found"
        assert missing["error"]["details"][0]["field"] == "feature_key"
    finally:
        system.close()


def _defines(path: Path, names: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            found |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return found & names


def test_the_edge_is_defined_once() -> None:
    """validation_error and the Instant types live in commands/edge.py only (others may name
    them, e.g. `Instant = edge.UtcInstant`, never build their own)."""
    owners: dict[str, list[str]] = {}
    for folder in ("adapters", "commands", "projections", "domain"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for name in _defines(path, {"validation_error", "Instant", "UtcInstant"}):
                owners.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert owners.pop("validation_error") == ["commands/edge.py"]
    assert owners.pop("UtcInstant") == ["commands/edge.py"]
    assert sorted(owners.pop("Instant")) == ["adapters/http/common.py", "commands/edge.py"]
    source = (ROOT / "adapters/http/common.py").read_text(encoding="utf-8")
    assert "Instant = edge.UtcInstant" in source
