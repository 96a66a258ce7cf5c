"""Immutable value objects: a copy of an aggregate's state shares them instead of copying.

Aggregates are deep-copied on every load from the cache and in every group commit; their
frozen parts (plan terms, money, periods, invoice lines, events) never change after they are
made, so copying them is pure cost. Nothing may mutate a value object in place (their
lists included): make a new one.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict


class FrozenValue(BaseModel):
    """An immutable value: `copy.deepcopy` answers the object itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        return self
