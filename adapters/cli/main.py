"""The `tally` command line (typer + rich)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

# each command imports what it needs when it runs (demo and events import the whole bootstrap):
# `tally serve` and `tally worker ...` import only their own (TARGETS.md P9)
from adapters.cli import invoices as invoices_module
from adapters.cli import keys as keys_module
from adapters.cli import stripe as stripe_module
from adapters.simulation.cli import chaos_app

app = typer.Typer(help="Tally: the event-sourced billing ledger.", no_args_is_help=True)


@app.callback()
def _configure_logs() -> None:
    # logs on stderr (TALLY_LOG_FORMAT, TALLY_LOG_LEVEL): stdout stays the command's own
    from adapters.observability.logs import configure_from_environment

    configure_from_environment()


@app.command()
def demo(
    fast: bool = typer.Option(False, help="skip the pauses between steps"),
) -> None:
    """A narrated scenario on the configured store (the embedded SQLite default)."""
    from adapters.cli import demo as demo_module

    demo_module.run(pause=0.0 if fast else 0.3)


@app.command()
def events(
    aggregate: str | None = typer.Option(None, help="only this aggregate id"),
    tenant: str | None = typer.Option(None, help="only this tenant"),
    after: int = typer.Option(0, help="start after this position"),
    limit: int = typer.Option(50, help="how many events at most"),
    follow: bool = typer.Option(False, help="keep printing new events"),
) -> None:
    """Print the event log (the audit trail)."""
    from adapters.cli import events as events_module

    events_module.run(aggregate=aggregate, tenant=tenant, after=after, limit=limit, follow=follow)


@app.command()
def verify(
    app_id: Annotated[
        str | None, typer.Option("--app", help="only this app's chain (default: every app)")
    ] = None,
) -> None:
    """Recompute the event log's hash chains: exit 0 when intact, 1 at the first break."""
    from functools import partial

    from adapters.cli import verify as verify_module

    raise typer.Exit(verify_module.run_verify(app_id, typer.echo, partial(typer.echo, err=True)))


@app.command()
def seal() -> None:
    """Seal the events committed since the sealer last ran (serve and `tally worker sealer`
    do this continuously)."""
    from adapters.cli import verify as verify_module

    raise typer.Exit(verify_module.run_seal(typer.echo))


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port to listen on"),
) -> None:
    """The HTTP API (and, with TALLY_NATS_URL, the relay and projectors) until SIGTERM."""
    from adapters.entrypoints import serve as serve_http

    serve_http(host=host, port=port)


app.add_typer(keys_module.keys_app, name="keys")
app.add_typer(invoices_module.invoices_app, name="invoices")
app.add_typer(stripe_module.stripe_app, name="stripe")
app.add_typer(chaos_app, name="chaos")

plugins_app = typer.Typer(help="Plugins (docs/plugins.md).", no_args_is_help=True)
app.add_typer(plugins_app, name="plugins")


@plugins_app.command("list")
def plugins_list() -> None:
    """The registered plugins: name, kind, hooks or strategy ports, source."""
    from adapters.plugins.cli import run_list

    raise typer.Exit(run_list(typer.echo))


worker_app = typer.Typer(
    help="Workers for the real stack (NATS JetStream); SIGTERM/SIGINT stop them gracefully.",
    no_args_is_help=True,
)
app.add_typer(worker_app, name="worker")


def _need_nats() -> None:
    from adapters.settings import Settings

    if not Settings().nats_url:
        typer.echo("tally worker needs NATS JetStream: set TALLY_NATS_URL (nats://…)", err=True)
        raise typer.Exit(2)


@worker_app.command("relay")
def worker_relay() -> None:
    """Publish committed events to JetStream (one relay active; others wait to take over)."""
    _need_nats()
    from adapters.entrypoints import run_relay

    run_relay()


@worker_app.command("projector")
def worker_projector(name: str = typer.Argument(..., help="the projector's NAME")) -> None:
    """Build one read model from JetStream (a durable consumer proj-NAME)."""
    _need_nats()
    from adapters.entrypoints import run_projector

    try:
        run_projector(name)
    except KeyError as error:
        raise typer.BadParameter(str(error.args[0]), param_hint="NAME") from None


@worker_app.command("alerts")
def worker_alerts() -> None:
    """Evaluate alerts from the event log and record AlertTriggered (one active; others
    wait to take over)."""
    _need_nats()
    from adapters.entrypoints import run_alerts

    run_alerts()


@worker_app.command("sealer")
def worker_sealer() -> None:
    """Seal committed events into each app's hash chain (tamper evidence; one active, others
    wait to take over). Needs no NATS."""
    from adapters.entrypoints import run_sealer

    run_sealer()


@worker_app.command("plugins")
def worker_plugins() -> None:
    """Run the plugins' lifecycle hooks from JetStream (a durable consumer `plugins`; one
    active, others wait to take over)."""
    _need_nats()
    from adapters.entrypoints import run_plugins

    run_plugins()


@worker_app.command("mailer")
def worker_mailer() -> None:
    """Send the outbox's mails (invoices, payment failures, credit notes) through
    TALLY_SMTP_URL (one active; others wait to take over)."""
    from adapters.settings import Settings

    if not Settings().smtp_url:
        typer.echo("tally worker mailer needs SMTP: set TALLY_SMTP_URL (smtp://…)", err=True)
        raise typer.Exit(2)
    from adapters.entrypoints import run_mailer

    run_mailer()


@worker_app.command("stripe")
def worker_stripe() -> None:
    """Keep Stripe in step with the ledger (customers, catalog, mirrors, collection; one
    active, others wait to take over) and drain the webhook inbox."""
    from adapters.settings import Settings

    if not Settings().stripe_configured:
        typer.echo("tally worker stripe needs Stripe: set TALLY_STRIPE_API_KEY", err=True)
        raise typer.Exit(2)
    from adapters.entrypoints import run_stripe

    run_stripe()


@worker_app.command("command-bus")
def worker_command_bus(
    prefix: str = typer.Option("tally", help="subjects <prefix>.cmd.* and <prefix>.query.*"),
    max_batch: int = typer.Option(128, help="most commands committed in one transaction"),
    linger_ms: float = typer.Option(0.5, help="longest wait for more commands to a batch"),
    store_timeout: float = typer.Option(5.0, help="answer 'unavailable' after this many s"),
) -> None:
    """Serve the NATS command and query bus (queue group: run several to share the load)."""
    _need_nats()
    from adapters.entrypoints import run_command_bus

    run_command_bus(
        prefix=prefix, max_batch=max_batch, linger=linger_ms / 1000, store_timeout=store_timeout
    )


clock_app = typer.Typer(help="The ledger's test clock.", no_args_is_help=True)
app.add_typer(clock_app, name="clock")


@clock_app.command("advance")
def clock_advance(
    to: Annotated[
        str, typer.Option("--to", help="ISO time with a timezone, e.g. 2027-01-01T00:00Z")
    ],
    app_id: Annotated[
        str | None, typer.Option("--app", help="only this app (default: all)")
    ] = None,
) -> None:
    """Move time forward: invoices, renewals, trial ends, cancels, quota resets up to --to."""
    from adapters.cli import clock as clock_module
    from domain.errors import DomainError

    try:
        until = datetime.fromisoformat(to)
        clock_module.run(until, app_id)
    except ValueError as error:  # DomainError's InvalidValue is a ValueError too
        message = error.message if isinstance(error, DomainError) else str(error)
        typer.echo(f"--to: {message} (an ISO time with a timezone)", err=True)
        raise typer.Exit(2) from None


@app.command()
def replay(
    projection: str | None = typer.Option(None, help="only this read model (default: all)"),
) -> None:
    """Rebuild read models from the first event, aside, then switch over."""
    from adapters.cli import replay as replay_module

    replay_module.run(projection)


@app.command()
def bench(
    events: int = typer.Option(1_000_000, help="events to replay for P5"),
    out: str = typer.Option("docs/benchmarks.json", help="JSON results file"),
    markdown: str = typer.Option("docs/benchmarks.md", help="Markdown table"),
    quick: bool = typer.Option(False, help="every figure at a smaller size (about 2 minutes)"),
) -> None:
    """Benchmarks from TARGETS.md, each beside its raw baseline (a benchmark, not a test)."""
    from pathlib import Path

    try:  # the top-level benchmarks/ package: in a source checkout, never in the wheel
        from benchmarks import run as bench_run
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] != "benchmarks":
            raise
        typer.echo(
            "tally bench needs the benchmarks/ package of a source checkout (it is not in "
            "the wheel or the image): run it from a clone, e.g. `make bench`",
            err=True,
        )
        raise typer.Exit(2) from None

    bench_run.run(events, Path(out), Path(markdown), quick=quick)


@app.command()
def migrate() -> None:
    """Apply the schema migrations not applied yet, once, under an advisory lock (serve and
    every worker also do this at start); prints each one applied."""
    from adapters.migrations.cli import run_migrate

    raise typer.Exit(run_migrate(typer.echo))


if __name__ == "__main__":
    app()
