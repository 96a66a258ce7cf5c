"""tally-client: Tally's HTTP API, its NATS command bus and its event stream, for Python.

- `Tally` / `AsyncTally`: every route of /openapi.json as a typed method (http.py).
- `TallyBus`: commands and queries over NATS with a command_id kept across retries (bus.py).
- `subscribe`: a durable JetStream subscriber with exactly-once effects (subscriber.py) in
  the subscriber's own store (`PostgresStore`, `SQLiteStore`; stores.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tally_client import models
    from tally_client._core import NO_RETRIES, Reply, ReplyList, RetryPolicy
    from tally_client.bus import TallyBus
    from tally_client.errors import (
        BadRequest,
        Conflict,
        Forbidden,
        InvalidInput,
        NotFound,
        RateLimited,
        ServerError,
        TallyError,
        TransportError,
        Unauthorized,
        Unavailable,
    )
    from tally_client.events import Event, parse_event, upcast, upcaster
    from tally_client.http import AsyncTally, Tally
    from tally_client.stores import MemoryStore, PostgresStore, SQLiteStore, Store
    from tally_client.subscriber import Subscription, subscribe

# Imported on first use, so a service that only subscribes does not load the HTTP client and
# its models (a faster start after a restart).
_HOMES = {
    "models": "tally_client.models",
    **dict.fromkeys(["NO_RETRIES", "Reply", "ReplyList", "RetryPolicy"], "tally_client._core"),
    "TallyBus": "tally_client.bus",
    **dict.fromkeys(
        [
            "BadRequest",
            "Conflict",
            "Forbidden",
            "InvalidInput",
            "NotFound",
            "RateLimited",
            "ServerError",
            "TallyError",
            "TransportError",
            "Unauthorized",
            "Unavailable",
        ],
        "tally_client.errors",
    ),
    **dict.fromkeys(["Event", "parse_event", "upcast", "upcaster"], "tally_client.events"),
    **dict.fromkeys(["AsyncTally", "Tally"], "tally_client.http"),
    **dict.fromkeys(
        ["MemoryStore", "PostgresStore", "SQLiteStore", "Store"], "tally_client.stores"
    ),
    **dict.fromkeys(["Subscription", "subscribe"], "tally_client.subscriber"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'tally_client' has no attribute {name!r}")
    module = importlib.import_module(home)
    return module if name == "models" else getattr(module, name)


__version__ = "0.1.0"

__all__ = [
    "NO_RETRIES",
    "AsyncTally",
    "BadRequest",
    "Conflict",
    "Event",
    "Forbidden",
    "InvalidInput",
    "MemoryStore",
    "NotFound",
    "PostgresStore",
    "RateLimited",
    "Reply",
    "ReplyList",
    "RetryPolicy",
    "SQLiteStore",
    "ServerError",
    "Store",
    "Subscription",
    "Tally",
    "TallyBus",
    "TallyError",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "models",
    "parse_event",
    "subscribe",
    "upcast",
    "upcaster",
]
