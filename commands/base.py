"""What every command carries, and the port the handlers use to load and save aggregates."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Protocol
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from domain.money import validate_currency

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
APP_ID_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,63}$"  # no dots: it is one token of NATS subjects


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Command(BaseModel):
    """An imperative request to change the ledger; NAME is its bus name (snake_case)."""

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

    def concurrency_key(self) -> str:
        """Commands with the same key run one at a time in this process (fewer optimistic
        conflicts under contention); across processes optimistic concurrency still decides."""
        tenant = getattr(self, "tenant_id", None)
        return f"{self.app_id}/tenant/{tenant}" if tenant else f"{self.app_id}/app"


class EventStore(Protocol):
    """Port: loads aggregates (optionally as of a version) and saves them atomically."""

    def get(self, aggregate_id: UUID, version: int | None = None) -> Any: ...

    def save(self, *aggregates: Any, **kwargs: Any) -> Any: ...


TENANT_FIELD = Field(pattern=ID_PATTERN, description="the app's customer")

Currency = Annotated[str, AfterValidator(validate_currency)]
"""An ISO 4217 code, checked at the edge so the error names the field."""

Instant = AwareDatetime
"""A point in time with its timezone (naive times are refused naming the field)."""
