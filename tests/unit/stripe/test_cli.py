"""`tally stripe inbox`: the webhook inbox as JSON (a webhook naming no app stays there,
acknowledged), a bad --status is a clean error, and without Stripe the command says so."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from adapters.bootstrap import bootstrap
from adapters.cli.main import app as cli
from adapters.settings import Settings
from tests.stripe_signing import SECRET, sign

UNREACHABLE = "http://127.0.0.1:9"  # listing the inbox never calls Stripe


def test_the_inbox_lists_a_webhook_naming_no_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "TALLY_DATABASE_URL": f"sqlite:///{tmp_path / 'tally.db'}",
        "TALLY_STRIPE_API_KEY": "sk_test_tally",
        "TALLY_STRIPE_API_BASE": UNREACHABLE,
        "TALLY_STRIPE_WEBHOOK_SECRET": SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    system = bootstrap(Settings(), deliver_in_process=False)
    try:
        assert system.stripe is not None and system.stripe.intake is not None
        body = orjson.dumps(
            {"id": "evt_cli_1", "type": "charge.succeeded", "data": {"object": {"id": "ch_1"}}}
        )
        answer = system.stripe.intake.receive(body, sign(body))
        assert answer["status"] == "unrouted"
    finally:
        system.close()
    listed = CliRunner().invoke(cli, ["stripe", "inbox", "--status", "unrouted"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [(row["event_id"], row["status"]) for row in rows] == [("evt_cli_1", "unrouted")]
    bad = CliRunner().invoke(cli, ["stripe", "inbox", "--status", "bogus"])
    assert bad.exit_code == 2 and "--status" in bad.output


def test_without_stripe_the_commands_say_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALLY_DATABASE_URL", f"sqlite:///{tmp_path / 'tally.db'}")
    monkeypatch.delenv("TALLY_STRIPE_API_KEY", raising=False)
    for command in (["stripe", "inbox"], ["stripe", "reconcile"], ["worker", "stripe"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 2, (command, result.output)
        assert "TALLY_STRIPE_API_KEY" in result.output
