"""Immutable value objects: a copy of an aggregate's state shares them instead of copying.

Aggregates are deep-copied on every load from the cache and in every group commit; their
frozen parts (plan terms, money, periods, invoice lines, events) never change after they are
made, so copying them is pure cost. Nothing may mutate a value object in place (their
lists included): make a new one.
"""

from __future__ import annotations

import copy
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from types import NoneType
from typing import Any, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class FrozenValue(BaseModel):
    """An immutable value: `copy.deepcopy` answers the object itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        return self


_SCALARS = (str, int, float, bytes, NoneType, UUID, datetime, date, time, timedelta, Decimal, Enum)
_SHARED = (*_SCALARS, FrozenValue)


def copy_state(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """`copy.deepcopy` for aggregate state, faster: immutable scalars (str, UUID, datetime,
    enums...) and frozen values (FrozenValue, events: their deepcopy answers themselves)
    are shared; lists, dicts, sets and mutable pydantic models are copied, each once
    (`memo`, as deepcopy keeps it); anything else goes to `copy.deepcopy`."""
    if isinstance(value, _SHARED):
        return value
    memo = {} if memo is None else memo
    seen = memo.get(id(value))
    if seen is not None:
        return seen
    kind = type(value)
    if kind is list:
        clone: Any = memo.setdefault(id(value), [])
        clone.extend(copy_state(item, memo) for item in value)
        return clone
    if kind is dict:
        clone = memo.setdefault(id(value), {})
        clone.update((key, copy_state(item, memo)) for key, item in value.items())
        return clone
    if kind is set:
        return memo.setdefault(id(value), {copy_state(item, memo) for item in value})
    if isinstance(value, BaseModel) and kind.__deepcopy__ is BaseModel.__deepcopy__:
        return _copy_model(value, memo)
    return copy.deepcopy(value, memo)


def _copy_model(model: BaseModel, memo: dict[int, Any]) -> BaseModel:
    """A mutable pydantic model copied as BaseModel.__deepcopy__ does, field by field."""
    clone = type(model).__new__(type(model))
    memo[id(model)] = clone
    private = getattr(model, "__pydantic_private__", None)
    setattr_ = object.__setattr__
    setattr_(clone, "__dict__", {k: copy_state(v, memo) for k, v in model.__dict__.items()})
    setattr_(clone, "__pydantic_extra__", copy_state(model.__pydantic_extra__, memo))
    setattr_(clone, "__pydantic_fields_set__", set(model.__pydantic_fields_set__))
    setattr_(clone, "__pydantic_private__", None if private is None else copy.deepcopy(private))
    return clone
