"""`tally clock advance --to`: what fell due up to an instant is done, stamped with its time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from typer.testing import CliRunner

from adapters.bootstrap import bootstrap
from adapters.cli.main import app
from adapters.settings import Settings
from domain.clock import SettableClock
from domain.subscription import Subscription
from tests.factories import ok

PLAN = {
    "app_id": "acme",
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 1000, "currency": "USD"},
    "features": [{"key": "api", "kind": "metered", "limit": 10}],
}


def test_advance_renews_and_resets_by_the_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    monkeypatch.setenv("TALLY_DATABASE_URL", url)
    start = datetime.now(UTC).replace(microsecond=0)
    seeding = bootstrap(Settings(database_url=url), SettableClock(start))
    try:
        ok(seeding.dispatch("define_plan", PLAN))
        sub = ok(
            seeding.dispatch(
                "start_subscription", {"app_id": "acme", "tenant_id": "t1", "plan_key": "pro"}
            )
        )
    finally:
        seeding.close()
    first_end = datetime.fromisoformat(sub["current_period"]["end"])
    until = start + timedelta(days=45)

    result = CliRunner().invoke(
        app, ["clock", "advance", "--to", until.isoformat(), "--app", "acme"]
    )
    assert result.exit_code == 0, result.output

    after = bootstrap(Settings(database_url=url), SettableClock(until))
    try:
        renewed = after.aggregate(UUID(sub["subscription_id"]))
        assert isinstance(renewed, Subscription)
        assert renewed.state.current_period.start == first_end  # one renewal, at the period end
        assert renewed.modified_on == first_end  # stamped with the time it fell due
        usage = ok(
            after.dispatch(
                "consume_quota",
                {"app_id": "acme", "tenant_id": "t1", "feature_key": "api", "idempotency_key": "k"},
            )
        )
        assert usage["window"]["start"] == first_end.isoformat().replace("+00:00", "Z")
    finally:
        after.close()

    backwards = CliRunner().invoke(app, ["clock", "advance", "--to", start.isoformat()])
    assert backwards.exit_code == 2 and "before the ledger's clock" in backwards.output
    naive = CliRunner().invoke(app, ["clock", "advance", "--to", "2030-01-01T00:00:00"])
    assert naive.exit_code == 2 and "timezone" in naive.output
