"""The edge in one place: what HTTP, the NATS bus and `CommandBus.dispatch` share when they
turn a request into a command (or a query's parameters) and an outcome into a reply.

- `Instant`: the one type of a point in time at every edge (`UtcInstant` is it converted to
  UTC, for the HTTP parameters that answer in UTC);
- `validation_error`: the one shape of bad input, each detail naming the field and the rule;
- `Refused`: a request answered before anything ran, carrying its error;
- `validated` / `command_named` / `query_model`: a command or a query's parameters from JSON
  fields, a `Refused` naming the field for bad input;
- `error`, `refused`, `outcome_reply`: the bus reply shape (`{"ok": true, "result", ...}` or
  `{"ok": false, "error": {"code", "message", "details"}}`) for every outcome.

Queries declare their parameters in their signature (`fn(ctx, *, app_id, tenant_id, ...)`);
`query_model` makes the pydantic model of that declaration, so a query's parameters are
validated like a command's fields (unknown or missing ones: validation_error naming them).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, ValidationError
from pydantic import create_model as _create_model

from domain.errors import DomainError
from domain.period import in_range

if TYPE_CHECKING:
    from commands.base import Command
    from commands.bus import CommandResult

Model = TypeVar("Model", bound=BaseModel)

Instant = Annotated[AwareDatetime, AfterValidator(in_range)]
"""A point in time with its timezone, between the years 2 and 8999 (a naive or out-of-range
time is refused naming the field, not met later as an overflow naming nothing)."""


def _to_utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC)


UtcInstant = Annotated[Instant, AfterValidator(_to_utc)]
"""An Instant, converted to UTC."""


# --- errors and replies ---------------------------------------------------------------------


def error(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The error shape of every edge: `{"code", "message", "details"}`."""
    return {"code": code, "message": message, "details": details or []}


def refused(failure: dict[str, Any] | DomainError) -> dict[str, Any]:
    """The reply of a refusal: `{"ok": false, "error": ...}`."""
    body = failure.as_dict() if isinstance(failure, DomainError) else failure
    return {"ok": False, "error": body}


def outcome_reply(outcome: CommandResult | DomainError) -> dict[str, Any]:
    """The reply of a command's outcome (its result, or the rule that refused it)."""
    if isinstance(outcome, DomainError):
        return refused(outcome)
    return outcome.as_reply()


def field_error(name: str, field: str, rule: str, message: str) -> dict[str, Any]:
    """A validation_error naming one field (the shape `validation_error` gives)."""
    detail = {"field": field, "rule": rule, "message": message}
    return error("validation_error", f"{name}: {field}: {message}", [detail])


class Refused(Exception):
    """A request answered at once, before anything ran; `error` says why."""

    def __init__(self, failure: dict[str, Any]) -> None:
        super().__init__(failure["message"])
        self.error = failure

    @property
    def code(self) -> str:
        return str(self.error["code"])

    def reply(self) -> dict[str, Any]:
        return refused(self.error)


# --- validation errors ----------------------------------------------------------------------

LOCATIONS = ("body", "query", "path", "header", "cookie")


def validation_error(
    failure: ValidationError | Sequence[Any], name: str | None = None
) -> dict[str, Any]:
    """One error shape for bad input: each detail names the field and the rule broken.

    A ValidationError of a command or query model (`name`: its bus name, which starts the
    message), or the errors of an HTTP request (located: each detail says `in` body, query,
    path...; the message starts with the field)."""
    if isinstance(failure, ValidationError):
        details = [_detail(item) for item in failure.errors(include_url=False)]
    else:
        details = [_located_detail(item) for item in failure]
    first = details[0] if details else {"field": "body", "message": "invalid"}
    lead = f"{name}: " if name is not None else ""
    return error("validation_error", f"{lead}{first['field']}: {first['message']}", details)


def _message(item: Any) -> str:
    return str(item.get("msg", "invalid")).removeprefix("Value error, ")


def _detail(item: Any) -> dict[str, Any]:
    """A model's error; a domain rule raised by a whole-model check names its own field."""
    path = [str(part) for part in item["loc"]]
    cause = item.get("ctx", {}).get("error")
    if isinstance(cause, DomainError) and cause.field and path[-1:] != [cause.field]:
        path.append(cause.field)
    return {"field": ".".join(path) or "body", "rule": item["type"], "message": _message(item)}


def _located_detail(item: Any) -> dict[str, Any]:
    """A request's error: the field without its body/query/path prefix, nor union tags."""
    if item.get("type") == "json_invalid":
        return _not_json(item)
    loc = [str(part) for part in item.get("loc", ())]
    where = loc[0] if loc else "body"
    path = loc[1:] if where in LOCATIONS else loc
    path = [part for part in path if not _is_union_tag(part)]
    rule = item.get("type", "invalid")
    return {"field": ".".join(path) or where, "in": where, "rule": rule, "message": _message(item)}


def _not_json(item: Any) -> dict[str, Any]:
    """A body that is not JSON names `body` (its loc is a character position, not a field)."""
    reason = item.get("ctx", {}).get("error")
    message = f"the body is not valid JSON: {reason}" if reason else "the body is not valid JSON"
    return {"field": "body", "in": "body", "rule": "json_invalid", "message": message}


def _is_union_tag(part: str) -> bool:
    """A tagged union's branch name, e.g. "(batch)": not a field, so not in the path."""
    return part.startswith("(") and part.endswith(")")


# --- commands and query parameters from JSON fields ------------------------------------------


def validated(model: type[Model], fields: Mapping[str, Any], name: str) -> Model:
    """The model of these fields; Refused (validation_error naming the field) when bad."""
    try:
        return model.model_validate(dict(fields))
    except ValidationError as failure:
        raise Refused(validation_error(failure, name)) from None


def command_named(
    command_type: Callable[[str], type[Command]], name: str, fields: Mapping[str, Any]
) -> Command:
    """The command `name` (looked up by `command_type`, e.g. `CommandBus.command_type`) of
    these fields; Refused for an unknown name (unknown_command) or bad fields."""
    try:
        kind = command_type(name)
    except DomainError as unknown:
        raise Refused(unknown.as_dict()) from None
    return validated(kind, fields, name)


@cache
def query_model(query: Callable[..., Any], name: str) -> type[BaseModel]:
    """The parameters a query function declares (after its context argument) as a pydantic
    model: unknown ones refused, unless it takes **params; required ones required."""
    hints = _hints(query)
    fields: dict[str, Any] = {}
    extra = "forbid"
    for parameter in list(inspect.signature(query).parameters.values())[1:]:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            extra = "allow"
        elif parameter.kind is not inspect.Parameter.VAR_POSITIONAL:
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            fields[parameter.name] = (hints.get(parameter.name, Any), default)
    config = ConfigDict(extra=extra, arbitrary_types_allowed=True)  # type: ignore[typeddict-item]
    model: type[BaseModel] = _create_model(f"{name}_parameters", __config__=config, **fields)
    return model


def _hints(query: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(query)
    except (NameError, TypeError):  # an annotation only imported for type checking
        return {}


def query_params(query: Callable[..., Any], name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A query's parameters, validated against what it declares (see query_model)."""
    found = validated(query_model(query, name), params, name)
    given = {field: getattr(found, field) for field in found.model_fields_set}
    return {**given, **(found.model_extra or {})}
