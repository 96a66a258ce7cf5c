"""`tally invoices recompute --invoice ID`: an invoice recomputed from the events now, beside
what it billed (JSON; commands/billing/recompute.py). Records nothing."""

from __future__ import annotations

import json
from uuid import UUID

import typer

invoices_app = typer.Typer(help="Invoices: recompute from the events.", no_args_is_help=True)


@invoices_app.command("recompute")
def recompute(invoice: str = typer.Option(..., "--invoice", help="the invoice id")) -> None:
    """Show the invoice's usage recomputed from the facts now beside what it billed."""
    from adapters.bootstrap import bootstrap
    from commands.billing.recompute import recompute_with
    from domain.invoice import Invoice

    try:
        invoice_id = UUID(invoice)
    except ValueError:
        raise typer.BadParameter("an invoice id (UUID)", param_hint="--invoice") from None
    system = bootstrap(deliver_in_process=False)
    try:
        found = system.ledger.get(invoice_id)
        if not isinstance(found, Invoice):
            typer.echo(f"no invoice {invoice}", err=True)
            raise typer.Exit(1)
        system.sync()
        ports = system.plugins.billing_ports(system.usage_reader)
        typer.echo(json.dumps(recompute_with(found, ports, system.aggregate), indent=2))
    finally:
        system.close()
