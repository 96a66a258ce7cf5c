"""Applying stored events to an aggregate, as the library's `project_aggregate` does.

The library's version asserts `isinstance(event, CanMutateProtocol)` for every event: a check
against a runtime-checkable Protocol, about 20 µs an event, which was most of the time a load
from a snapshot took (TARGETS.md P7). Every event Tally's mapper decodes is a domain event of
domain/base.py, whose `mutate` is what the check looks for.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def apply_events(aggregate: Any, domain_events: Iterable[Any]) -> Any:
    """The aggregate (or None) after each event's `mutate`, in order."""
    for event in domain_events:
        aggregate = event.mutate(aggregate)
    return aggregate
