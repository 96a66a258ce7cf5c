"""`tally invoices recompute --invoice ID` prints the recomputed invoice as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.bootstrap import bootstrap
from adapters.cli.main import app
from adapters.settings import Settings
from tests.factories import T0, ok


def test_the_cli_recomputes_an_invoice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    monkeypatch.setenv("TALLY_DATABASE_URL", url)
    monkeypatch.setenv("TALLY_CLOCK", "settable")
    from domain.clock import SettableClock

    system = bootstrap(Settings(database_url=url), SettableClock(T0), deliver_in_process=False)
    try:
        invoice = ok(
            system.dispatch(
                "draft_invoice",
                {"app_id": "acme", "tenant_id": "t1", "currency": "USD"},
            )
        )
    finally:
        system.close()
    result = CliRunner().invoke(app, ["invoices", "recompute", "--invoice", invoice["invoice_id"]])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["invoice_id"] == invoice["invoice_id"] and answer["features"] == []
    missing = CliRunner().invoke(
        app, ["invoices", "recompute", "--invoice", "00000000-0000-0000-0000-000000000000"]
    )
    assert missing.exit_code == 1
    bad = CliRunner().invoke(app, ["invoices", "recompute", "--invoice", "nope"])
    assert bad.exit_code == 2
