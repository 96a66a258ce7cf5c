"""`tally keys create|revoke`: API keys for the HTTP API, through the command bus (so every
key's creation and revocation is an event in the audit trail)."""

from __future__ import annotations

from typing import Annotated

import typer

from domain.api_key import Scope

keys_app = typer.Typer(help="API keys: create (shown once) and revoke.", no_args_is_help=True)


@keys_app.command("create")
def create(
    app_id: Annotated[str, typer.Option("--app", help="the app the key belongs to")],
    scope: Annotated[Scope, typer.Option("--scope", help="read < write < admin")],
    label: Annotated[str | None, typer.Option("--label", help="what the key is for")] = None,
) -> None:
    """Create a key; the key itself is printed alone on the LAST line, once."""
    from adapters.bootstrap import bootstrap

    system = bootstrap(deliver_in_process=False)
    try:
        payload = {"app_id": app_id, "scope": scope.value, "actor": "cli"}
        if label is not None:
            payload["label"] = label
        reply = system.dispatch("create_api_key", payload)
    finally:
        system.close()
    if not reply["ok"]:
        error = reply["error"]
        typer.echo(f"error: {error['code']}: {error['message']}", err=True)
        raise typer.Exit(1)
    result = reply["result"]
    typer.echo(
        f"created key {result['key_id']} for app {result['app_id']} "
        f"(scopes: {', '.join(result['scopes'])}); it is shown only now:"
    )
    typer.echo(result["api_key"])


@keys_app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="the key's id (or the whole key)"),
    reason: str | None = typer.Option(None, "--reason", help="why (kept in the audit trail)"),
) -> None:
    """Revoke a key (the API stops accepting it within a few seconds)."""
    from adapters.bootstrap import bootstrap
    from domain.api_key import ApiKey, api_key_id, parse_key
    from domain.errors import InvalidValue

    if key_id.startswith("tk_"):
        try:
            key_id = parse_key(key_id)[0]
        except InvalidValue as error:
            raise typer.BadParameter(error.message, param_hint="KEY_ID") from None
    system = bootstrap(deliver_in_process=False)
    try:
        key = system.aggregate(api_key_id(key_id))
        if not isinstance(key, ApiKey):
            typer.echo(f"error: no API key {key_id}", err=True)
            raise typer.Exit(1)
        payload = {"app_id": key.state.app_id, "key_id": key_id, "actor": "cli"}
        if reason is not None:
            payload["reason"] = reason
        reply = system.dispatch("revoke_api_key", payload)
    finally:
        system.close()
    if not reply["ok"]:
        failure = reply["error"]
        typer.echo(f"error: {failure['code']}: {failure['message']}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked key {key_id} of app {key.state.app_id}")
