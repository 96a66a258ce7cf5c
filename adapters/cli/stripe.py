"""`tally stripe reconcile [--repair]` (Stripe against the ledger, per app; JSON report) and
`tally stripe inbox` (the webhook inbox: events naming no app, and those still failing)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from adapters.bootstrap import System

stripe_app = typer.Typer(help="Stripe: reconciliation and the webhook inbox.", no_args_is_help=True)


def _system() -> System:
    from adapters.bootstrap import bootstrap

    system = bootstrap(deliver_in_process=False)
    if system.stripe is None:
        system.close()
        typer.echo("Stripe is not configured: set TALLY_STRIPE_API_KEY", err=True)
        raise typer.Exit(2)
    return system


@stripe_app.command("reconcile")
def reconcile(
    repair: bool = typer.Option(False, "--repair", help="fix what can be fixed, as events"),
    app_id: str | None = typer.Option(None, "--app", help="one app (default: every app)"),
) -> None:
    """Compare customers, subscriptions, invoices and payments with Stripe; report the drift
    (exit 1 when any drift is left unrepaired)."""
    system = _system()
    try:
        assert system.stripe is not None
        system.index.refresh()
        apps = [app_id] if app_id else system.index.apps()
        reports = [system.stripe.reconciler.reconcile(app, repair=repair) for app in apps]
    finally:
        system.close()
    typer.echo(json.dumps(reports, indent=2))
    left = [d for r in reports for d in r["drifts"] if not _repaired(d.get("repaired"))]
    raise typer.Exit(1 if left else 0)


def _repaired(outcome: str | None) -> bool:
    return bool(outcome) and not str(outcome).startswith("not repaired")


@stripe_app.command("inbox")
def inbox(
    status: str | None = typer.Option(None, help="pending, processed, unrouted or failed"),
    limit: int = typer.Option(100, help="how many rows at most"),
) -> None:
    """The webhook inbox (default: every row, newest first)."""
    system = _system()
    try:
        assert system.stripe is not None
        intake = system.stripe.intake
        if intake is None:
            typer.echo("no webhook inbox: set TALLY_STRIPE_WEBHOOK_SECRET", err=True)
            raise typer.Exit(2)
        try:
            rows = intake.rows(status=status, limit=limit)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--status") from None
    finally:
        system.close()
    typer.echo(json.dumps(rows, indent=2, default=str))
