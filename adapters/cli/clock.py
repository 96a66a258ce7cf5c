"""`tally clock advance --to <iso time>`: a test clock for the whole ledger, from the shell.

Starts a settable clock at the later of now and the newest event's time, then runs the
billing run (commands/billing/run.py) for every app (or one) up to the instant given, so
invoices are issued for the billing points that fell due, trials end, periods renew,
scheduled cancels happen and quota windows reset, each stamped with the time it fell due.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from adapters.billing.runs import run_billing
from adapters.bootstrap import bootstrap
from adapters.eventstore.envelopes import read_envelopes
from domain.clock import SettableClock, ensure_aware
from domain.errors import InvalidValue


def advance(until: datetime, app_id: str | None = None) -> list[dict[str, Any]]:
    """Run everything due up to `until`; one report per app."""
    until = ensure_aware(until)
    clock = SettableClock(datetime.now(UTC))
    system = bootstrap(clock=clock)
    try:
        clock.set(max(clock.now(), _newest_event_time(system)))
        if until < clock.now():
            raise InvalidValue(
                f"--to is before the ledger's clock ({clock.now().isoformat()})", field="to"
            )
        index = system.index
        apps = [app_id] if app_id else index.apps()
        reports = []
        for app in apps:
            report = run_billing(system, index.ids, app, clock, until)
            reports.append({"app_id": app, **report})
        system.sync()
        return reports
    finally:
        system.close()


def _newest_event_time(system: Any) -> datetime:
    head = system.ledger.recorder.max_notification_id() or 0
    if not head:
        return datetime.now(UTC)
    [last] = read_envelopes(system.ledger.recorder, head - 1, 1)
    return datetime.fromisoformat(last.occurred_at)


def run(until: datetime, app_id: str | None) -> None:
    console = Console()
    reports = advance(until, app_id)
    table = Table(
        "app", "invoiced", "trials ended", "renewed", "canceled", "quotas reset", "errors"
    )
    for r in reports:
        table.add_row(
            r["app_id"],
            str(r["invoiced"]),
            str(r["trials_ended"]),
            str(r["renewed"]),
            str(r["canceled"]),
            str(r["quotas_reset"]),
            str(len(r["errors"])),
        )
    console.print(table)
    console.print(f"clock at {until.isoformat()}")
