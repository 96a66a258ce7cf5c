"""Versioned schema migrations, applied once under a PostgreSQL advisory lock (ADR 0017).

`versions` numbers the migrations (each one's DDL comes from the code that owns its tables),
`runner` applies the missing ones and records them in `tally_migrations`, `lock` is the lock
every DDL statement of Tally runs under. This module imports nothing, so a DDL owner can
import `adapters.migrations.lock` without a cycle.
"""
