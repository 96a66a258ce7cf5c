"""The one advisory lock that every schema change of a schema runs under: the migration
runner holds it for a whole run (a session lock), and the DDL left at run time (ViewStore,
SealStore, StripeInbox `ensure`) takes it for its transaction, so no two processes ever
change one schema's catalog at once."""

from __future__ import annotations

import hashlib

XACT_LOCK = "SELECT pg_advisory_xact_lock(%s)"


def lock_key(schema: str) -> int:
    """A stable signed 64-bit advisory lock number for the schema, the same in every process."""
    digest = hashlib.blake2b(f"tally-migrate\x1f{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
