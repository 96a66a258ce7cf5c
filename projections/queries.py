"""Queries over the read models: plain functions the API and the NATS query bus call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from projections.ports import ViewReader

Query = Callable[..., Any]

QUERIES: dict[str, Query] = {}


def query(name: str) -> Callable[[Query], Query]:
    """Register a query function under its public name (tally.query.<app>.<name>)."""

    def register(fn: Query) -> Query:
        QUERIES[name] = fn
        return fn

    return register


def run_query(views: ViewReader, name: str, **params: Any) -> Any:
    from domain.errors import NotFound

    try:
        fn = QUERIES[name]
    except KeyError:
        raise NotFound(f"no query named {name!r}", field="query_name") from None
    return fn(views, **params)
