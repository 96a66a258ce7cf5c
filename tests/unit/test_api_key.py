"""API keys: the aggregate (scopes, hashing, revocation), its commands on the bus, the key
verifier of the HTTP API (cache and revocation) and `tally keys` on the CLI."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from adapters.bootstrap import System, bootstrap
from adapters.cli.main import app as cli
from adapters.eventstore.envelopes import read_envelopes
from adapters.http.auth import KeyVerifier
from adapters.http.errors import ApiError
from adapters.settings import Settings
from commands.keys.create_api_key import CreateApiKey
from domain.api_key import (
    ApiKey,
    ApiKeyCreated,
    ApiKeyRevoked,
    Scope,
    api_key_id,
    format_key,
    hash_secret,
    parse_key,
)
from domain.clock import SettableClock
from domain.errors import InvalidTransition, InvalidValue
from tests.factories import T0, cause

KEY_ID = "0123456789abcdef"


def make_key(scope: Scope = Scope.WRITE, secret: str = "s3cret_with-underscores") -> ApiKey:
    return ApiKey.create(KEY_ID, "acme", scope, hash_secret(secret), cause(), label="ci")


def test_scopes_are_ordered_and_imply_the_lower_ones() -> None:
    assert Scope.ADMIN.implied() == [Scope.READ, Scope.WRITE, Scope.ADMIN]
    assert Scope.WRITE.implied() == [Scope.READ, Scope.WRITE]
    assert Scope.READ.implied() == [Scope.READ]
    key = make_key(Scope.WRITE)
    assert key.allows(Scope.READ) and key.allows(Scope.WRITE)
    assert not key.allows(Scope.ADMIN)
    assert key.top_scope is Scope.WRITE


def test_the_event_holds_the_sha256_of_the_secret_never_the_secret() -> None:
    key = make_key(secret="the-secret")
    (event,) = key.collect_events()
    assert isinstance(event, ApiKeyCreated)
    assert event.secret_hash == hashlib.sha256(b"the-secret").hexdigest()
    assert "the-secret" not in event.model_dump_json()
    assert key.id == api_key_id(KEY_ID)
    assert event.scopes == [Scope.READ, Scope.WRITE]


def test_verify_accepts_only_the_secret_and_not_after_revocation() -> None:
    key = make_key(secret="right")
    assert key.verify("right")
    assert not key.verify("wrong")
    key.revoke(cause(), reason="leaked")
    assert isinstance(key.pending_events[-1], ApiKeyRevoked)
    assert not key.verify("right")
    assert not key.allows(Scope.READ)
    with pytest.raises(InvalidTransition):
        key.revoke(cause())


def test_keys_format_and_parse_with_underscores_in_the_secret() -> None:
    full = format_key(KEY_ID, "a_b_c-d")
    assert full == f"tk_{KEY_ID}_a_b_c-d"
    assert parse_key(full) == (KEY_ID, "a_b_c-d")
    for bad in ("", "tk_", f"tk_{KEY_ID}", f"tk_{KEY_ID}_", "xx_0123_abc", "tk_NOTHEX_abc"):
        with pytest.raises(InvalidValue):
            parse_key(bad)


def test_create_refuses_a_bad_key_id_or_hash() -> None:
    with pytest.raises(InvalidValue):
        ApiKey.create("XYZ", "acme", Scope.READ, hash_secret("x"), cause())
    with pytest.raises(InvalidValue):
        ApiKey.create(KEY_ID, "acme", Scope.READ, "not-a-digest", cause())


# --- on the bus ------------------------------------------------------------------------


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    built = bootstrap(
        Settings(database_url=f"sqlite:///{tmp_path / 'events.db'}"),
        SettableClock(T0),
        deliver_in_process=False,
    )
    try:
        yield built
    finally:
        built.close()


def create(system: System, app_id: str = "acme", scope: str = "write") -> dict[str, Any]:
    reply = system.dispatch("create_api_key", {"app_id": app_id, "scope": scope, "label": "x"})
    assert reply["ok"], reply
    return dict(reply["result"])


def test_create_api_key_returns_the_key_once_and_stores_only_its_hash(system: System) -> None:
    result = create(system, scope="admin")
    key_id, secret = parse_key(result["api_key"])
    assert key_id == result["key_id"]
    assert result["scopes"] == ["read", "write", "admin"]
    assert len(secret) >= 40  # secrets.token_urlsafe(32)
    stored = system.aggregate(api_key_id(key_id))
    assert isinstance(stored, ApiKey) and stored.verify(secret)
    raw = b"".join(n.state for n in system.ledger.recorder.select_notifications(start=1, limit=100))
    assert secret.encode() not in raw
    assert hash_secret(secret).encode() in raw
    envelopes = read_envelopes(system.ledger.recorder, 0, 100)
    assert [e.type for e in envelopes] == ["ApiKeyCreated"]
    assert envelopes[0].aggregate_type == "api_key"


def test_create_api_key_takes_no_command_id(system: System) -> None:
    reply = system.dispatch(
        "create_api_key", {"app_id": "acme", "scope": "read", "command_id": "once"}
    )
    assert not reply["ok"]
    assert reply["error"]["code"] == "validation_error"
    assert reply["error"]["details"][0]["field"] == "command_id"
    with pytest.raises(ValueError):
        CreateApiKey(app_id="acme", scope=Scope.READ, command_id="x")


def test_create_api_key_names_a_bad_scope(system: System) -> None:
    reply = system.dispatch("create_api_key", {"app_id": "acme", "scope": "root"})
    assert reply["error"]["details"][0]["field"] == "scope"


def test_revoke_api_key_only_in_its_own_app(system: System) -> None:
    key_id = create(system)["key_id"]
    other = system.dispatch("revoke_api_key", {"app_id": "other", "key_id": key_id})
    assert other["error"]["code"] == "not_found"
    reply = system.dispatch("revoke_api_key", {"app_id": "acme", "key_id": key_id})
    assert reply["ok"] and reply["result"]["revoked"] is True
    again = system.dispatch("revoke_api_key", {"app_id": "acme", "key_id": key_id})
    assert again["error"]["code"] == "invalid_transition"


# --- the HTTP API's verifier -----------------------------------------------------------


def test_verifier_checks_the_secret_and_caches_briefly(system: System) -> None:
    full = create(system, scope="read")["api_key"]
    key_id, secret = parse_key(full)
    loads: list[Any] = []

    def load(aggregate_id: Any) -> Any:
        loads.append(aggregate_id)
        return system.aggregate(aggregate_id)

    verifier = KeyVerifier(load, ttl=0.3)
    principal = verifier.verify(full)
    assert principal.app_id == "acme" and principal.scopes == {Scope.READ}
    assert principal.actor == f"api-key:{key_id} (x)"  # the key and its label
    verifier.verify(full)
    assert len(loads) == 1  # cached
    for bad in (f"tk_{key_id}_{secret}x", "tk_ffffffffffffffff_nope", "garbage"):
        with pytest.raises(ApiError) as caught:
            verifier.verify(bad)
        assert caught.value.status == 401

    system.dispatch("revoke_api_key", {"app_id": "acme", "key_id": key_id})
    verifier.verify(full)  # still cached: revocation takes effect within the TTL
    time.sleep(0.35)
    with pytest.raises(ApiError) as caught:
        verifier.verify(full)
    assert caught.value.status == 401 and "revoked" in caught.value.message


# --- the CLI ---------------------------------------------------------------------------


def test_cli_prints_the_key_alone_on_its_last_line_and_revokes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALLY_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "--app", "acme", "--scope", "write"])
    assert created.exit_code == 0, created.output
    full = created.output.strip().splitlines()[-1]
    key_id, _ = parse_key(full)

    refused = runner.invoke(cli, ["keys", "create", "--app", "acme", "--scope", "root"])
    assert refused.exit_code != 0

    revoked = runner.invoke(cli, ["keys", "revoke", key_id, "--reason", "rotated"])
    assert revoked.exit_code == 0, revoked.output
    again = runner.invoke(cli, ["keys", "revoke", full])
    assert again.exit_code == 1
    unknown = runner.invoke(cli, ["keys", "revoke", "ffffffffffffffff"])
    assert unknown.exit_code == 1

    built = bootstrap(deliver_in_process=False)
    try:
        events = read_envelopes(built.ledger.recorder, 0, 100)
        assert [e.type for e in events] == ["ApiKeyCreated", "ApiKeyRevoked"]
        assert orjson.loads(events[1].model_dump_json())["data"]["reason"] == "rotated"
        assert events[1].actor == "cli"
    finally:
        built.close()


def test_key_hashes_are_never_published() -> None:
    from datetime import UTC, datetime

    from adapters.bootstrap import bootstrap
    from adapters.eventstore.envelopes import read_envelopes
    from adapters.settings import Settings
    from domain.clock import SettableClock

    system = bootstrap(
        Settings(database_url="sqlite:///:memory:"),
        SettableClock(datetime(2026, 1, 1, tzinfo=UTC)),
        deliver_in_process=False,
    )
    try:
        reply = system.dispatch("create_api_key", {"app_id": "acme", "scope": "read"})
        assert reply["ok"], reply
        [created] = read_envelopes(system.ledger.recorder, 0, 10)
        assert created.type == "ApiKeyCreated"
        assert "secret_hash" not in created.data and created.data["key_id"]
        assert "secret_hash" not in created.model_dump_json()
    finally:
        system.close()
