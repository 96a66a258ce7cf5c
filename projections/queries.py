"""Queries over the read models: plain functions the API and the NATS query bus call.

Each read model registers its queries with @query in its own module; `run_query` finds them
by public name (tally.query.<app_id>.<name>).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.errors import NotFound
from projections.ports import EntitlementCache, ViewReader

Query = Callable[..., Any]

QUERIES: dict[str, Query] = {}


@dataclass(frozen=True)
class QueryContext:
    """What queries read from: the read models, the hot cache (if any) and the clock."""

    views: ViewReader
    now: Callable[[], datetime]
    cache: EntitlementCache | None = None


def query(name: str) -> Callable[[Query], Query]:
    """Register a query function `fn(ctx: QueryContext, **params)` under a public name."""

    def register(fn: Query) -> Query:
        QUERIES[name] = fn
        return fn

    return register


def run_query(ctx: QueryContext, name: str, **params: Any) -> Any:
    try:
        fn = QUERIES[name]
    except KeyError:
        raise NotFound(f"no query named {name!r}", field="query_name") from None
    return fn(ctx, **params)
