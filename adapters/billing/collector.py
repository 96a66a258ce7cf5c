"""Python's cyclic garbage collector, held to its young generations while a billing run works.

A billing run keeps tens of thousands of aggregates alive at once (the ones it loaded, the
event store's cache) and makes hundreds of thousands of short-lived objects. CPython's
collector then keeps walking the whole heap: a full collection each time the old generation
has grown by a quarter, each one visiting every live object. Measured on the P6 run
(docs/benchmarks.md), that was 40 % of the run's CPU at 2,000 subscriptions, growing with
the heap. While a run holds `young_collections_only`, automatic collection is off: objects
are still freed the moment nothing refers to them (reference counting), only cycles wait
for the next collection after the run (a P6 batch leaves none: a young collection after
each batch found nothing to free, while walking its survivors cost 20 to 90 ms). By then
what the run loaded is gone, so it is never walked at all. Runs in several threads share
one hold; the last to finish gives automatic collection back (only if it was on when the
first began).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_was_enabled = False


@contextmanager
def young_collections_only() -> Iterator[None]:
    """Automatic collection off (full collections put off) until the last holder leaves."""
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
