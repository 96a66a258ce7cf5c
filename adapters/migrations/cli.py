"""`tally migrate`: apply the pending migrations and say what was applied."""

from __future__ import annotations

from collections.abc import Callable

from adapters.settings import Settings


def run_migrate(echo: Callable[[str], None]) -> int:
    """Migrate the configured stores; prints one line per migration applied, then a summary."""
    from adapters.bootstrap import open_stores

    ledger, views, run = open_stores(Settings())
    ledger.close()
    views.close()
    for migration in run.applied:
        echo(f"applied {migration.version}: {migration.name}")
    applied = f"{len(run.applied)} applied now" if run.applied else "nothing to apply"
    latest = max(run.recorded, default=0)
    echo(f"migrations: {len(run.recorded)} recorded (latest {latest}), {applied}")
    return 0
