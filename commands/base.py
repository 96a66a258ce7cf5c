"""What every command carries, and the port the handlers use to load and save aggregates."""

from __future__ import annotations

import operator
import re
from copy import copy
from functools import reduce
from types import UnionType
from typing import Annotated, Any, ClassVar, Protocol, Union, get_args, get_origin
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

from commands.edge import Instant as Instant  # the one Instant type (commands/edge.py)
from domain.money import validate_currency

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
APP_ID_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,63}$"  # no dots: it is one token of NATS subjects


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def strict_integers(annotation: Any) -> Any:
    """The annotation with each `int` in it (alone, optional, in a union or a list) made a
    StrictInt: JSON integers only, so "5", 5.0 and true are refused naming the field. A union
    that also takes str (a value compared as sent, e.g. a meter filter) is left as it is."""
    if annotation is int:
        return StrictInt
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, UnionType) and str not in args:
        members = tuple(strict_integers(arg) for arg in args)
        return reduce(operator.or_, members) if members != args else annotation
    if origin is list and len(args) == 1:
        item = strict_integers(args[0])
        return list[item] if item is not args[0] else annotation  # type: ignore[valid-type]
    return annotation


def _make_integers_strict(model: type[BaseModel]) -> bool:
    """Turn the model's integer fields strict (see strict_integers); True if any changed."""
    changed = False
    for name, info in model.__pydantic_fields__.items():
        strict = strict_integers(info.annotation)
        if strict is not info.annotation:
            field = copy(info)  # a parent model's field (e.g. of a domain value) stays as it is
            field.annotation = strict
            model.__pydantic_fields__[name] = field
            changed = True
    return changed


class Command(BaseModel):
    """An imperative request to change the ledger; NAME is its bus name (snake_case).

    Every integer field of a command is strict, on every edge alike (HTTP, NATS, the bus):
    a quantity, an amount or a limit is a JSON integer, never "5", 5.0 or true."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    NAME: ClassVar[str] = ""

    app_id: str = Field(pattern=APP_ID_PATTERN, description="the app this command belongs to")
    command_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description="repeat it to retry safely: runs once"
    )
    actor: str = Field(default="system", min_length=1, max_length=200)
    on_behalf_of: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="whom the caller acts for (e.g. an end user's id), recorded beside the actor",
    )
    correlation_id: str | None = Field(default=None, max_length=200)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "NAME" not in cls.__dict__:
            cls.NAME = snake_case(cls.__name__)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if _make_integers_strict(cls):
            cls.model_rebuild(force=True)

    def concurrency_key(self) -> str:
        """Commands with the same key run one at a time in this process (fewer optimistic
        conflicts under contention); across processes optimistic concurrency still decides."""
        tenant = getattr(self, "tenant_id", None)
        return f"{self.app_id}/tenant/{tenant}" if tenant else f"{self.app_id}/app"

    def aggregates_to_load(self) -> list[UUID]:
        """The aggregates the handler will load, when known from the command alone: a group
        commit loads those of all its commands in one query instead of one each (none by
        default; a handler may still load others)."""
        return []


class EventStore(Protocol):
    """Port: loads aggregates (optionally as of a version) and saves them atomically."""

    def get(self, aggregate_id: UUID, version: int | None = None) -> Any: ...

    def save(self, *aggregates: Any, **kwargs: Any) -> Any: ...


TENANT_FIELD = Field(pattern=ID_PATTERN, description="the app's customer")

Currency = Annotated[str, AfterValidator(validate_currency)]
"""An ISO 4217 code, checked at the edge so the error names the field."""
