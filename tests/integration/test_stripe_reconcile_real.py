"""Reconciliation against a real Stripe API (localstripe, through the official SDK): drift
made at Stripe (a payment made there, an invoice voided there, a customer deleted) is
reported, and repaired with --repair, each repair an event naming its drift; on PostgreSQL
in process, and through `tally stripe reconcile` on the embedded store."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from adapters.billing.runs import run_billing
from adapters.bootstrap import System, bootstrap
from adapters.cli.main import app as cli
from adapters.settings import Settings
from domain.clock import SettableClock
from domain.invoice import Invoice
from domain.payment_account import PaymentAccount, payment_account_id
from tests.factories import T0
from tests.stripe_server import StripeTestKnobs
from tests.stripe_signing import SECRET

APP = "shop"


@pytest.fixture(autouse=True)
def _own_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """An app of its own per test: the test Stripe server is shared by the session."""
    monkeypatch.setattr(sys.modules[__name__], "APP", f"shop-{uuid.uuid4().hex[:10]}")


PROFILE = {
    "name": "Tenant One",
    "email": "billing@t1.example",
    "country": "US",
    "tax_status": "exempt",
    "timezone": "UTC",
    "currency": "USD",
}
LINE = {
    "kind": "base_fee",
    "description": "Setup",
    "unit_amount": {"amount": 2500, "currency": "USD"},
}


def stripe_settings(database_url: str, stripe_api: str) -> Settings:
    return Settings(
        database_url=database_url,
        clock="settable",
        stripe_api_key="sk_test_tally",
        stripe_api_base=stripe_api,
        stripe_webhook_secret=SECRET,
    )


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def system(pg_url: str, pg_schema: str, stripe_api: str, clock: SettableClock) -> Iterator[System]:
    built = bootstrap(
        stripe_settings(pg_url, stripe_api), clock, schema=pg_schema, deliver_in_process=False
    )
    try:
        yield built
    finally:
        built.close()


def send(system: System, command: str, **payload: Any) -> dict[str, Any]:
    reply = system.dispatch(command, {"app_id": APP, **payload})
    assert reply["ok"], reply
    result: dict[str, Any] = reply["result"]
    return result


def sync(system: System) -> None:
    system.sync()
    assert system.stripe is not None
    system.stripe.sync.run_due()


def open_invoice(system: System) -> Invoice:
    """A finalized invoice of 25.00 pushed to Stripe; no card, so it stays open."""
    draft = send(system, "draft_invoice", tenant_id="t1", currency="USD", lines=[LINE])
    send(system, "finalize_invoice", invoice_id=draft["invoice_id"])
    sync(system)
    invoice = system.aggregate(UUID(draft["invoice_id"]))
    assert isinstance(invoice, Invoice) and invoice.status.value == "open"
    return invoice


def account(system: System) -> PaymentAccount:
    found = system.aggregate(payment_account_id(APP, "t1"))
    assert isinstance(found, PaymentAccount)
    return found


def drifts_of(report: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return sorted((d["drift"], d["object"], d["repair"]) for d in report["drifts"])


def repairs_recorded(system: System) -> list[str]:
    """The drifts the account's PaymentDriftRepaired events name, in order."""
    stored = system.ledger.recorder.select_events(payment_account_id(APP, "t1"))
    events = [system.ledger.mapper.to_domain_event(item) for item in stored]
    return [f"{e.drift} {e.object}" for e in events if type(e).__name__ == "PaymentDriftRepaired"]


def test_drift_made_at_stripe_is_reported_then_repaired(
    system: System, stripe_api: str, clock: SettableClock
) -> None:
    knobs = StripeTestKnobs(stripe_api)
    send(system, "set_billing_profile", tenant_id="t1", **PROFILE)
    sync(system)
    paid_there, voided_there = open_invoice(system), open_invoice(system)
    knobs.pay_outside(account(system).provider_invoice(paid_there.id) or "")
    voided_id = account(system).provider_invoice(voided_there.id) or ""
    knobs.void_outside(voided_id)
    assert system.stripe is not None
    reconciler = system.stripe.reconciler
    clock.set(T0 + timedelta(hours=2))

    report = reconciler.reconcile(APP)
    assert drifts_of(report) == [
        ("status", "invoice", "push_again"),
        ("status", "payment", "pay_in_tally"),
    ]
    assert system.aggregate(paid_there.id).status.value == "open"  # reporting changes nothing

    repaired = reconciler.reconcile(APP, repair=True)
    assert all(d["repaired"] and "not repaired" not in d["repaired"] for d in repaired["drifts"])
    assert system.aggregate(paid_there.id).status.value == "paid"
    assert sorted(repairs_recorded(system)) == ["status invoice", "status payment"]
    pushed_again = account(system).provider_invoice(voided_there.id)
    assert pushed_again not in (None, voided_id)
    assert reconciler.reconcile(APP)["in_step"] is True
    assert reconciler.last(APP) is not None

    knobs.delete_customer(account(system).customer_id)
    old_customer = account(system).customer_id
    deleted = reconciler.reconcile(APP, repair=True)
    assert drifts_of(deleted) == [("missing", "customer", "relink_customer")]
    assert account(system).customer_id != old_customer
    assert repairs_recorded(system)[-1] == "missing customer"
    assert system.stripe.provider.get_customer(account(system).customer_id) is not None


def test_billing_runs_reconcile_once_a_day_by_the_clock(
    system: System, clock: SettableClock
) -> None:
    send(system, "set_billing_profile", tenant_id="t1", **PROFILE)
    sync(system)
    first = run_billing(system, system.index.ids, APP, clock, clock.now())
    assert first["stripe_reconciliation"] is not None
    again = run_billing(system, system.index.ids, APP, clock, clock.now() + timedelta(hours=1))
    assert again["stripe_reconciliation"] is None  # already today
    tomorrow = run_billing(system, system.index.ids, APP, clock, T0 + timedelta(days=1, hours=1))
    assert tomorrow["stripe_reconciliation"]["drift_count"] == 0


def test_the_cli_reports_with_exit_1_and_repairs_with_exit_0(
    tmp_path: Path, stripe_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'tally.db'}"
    clock = SettableClock(T0)
    built = bootstrap(stripe_settings(url, stripe_api), clock, deliver_in_process=False)
    try:
        send(built, "set_billing_profile", tenant_id="t1", **PROFILE)
        sync(built)
        invoice = open_invoice(built)
        StripeTestKnobs(stripe_api).pay_outside(account(built).provider_invoice(invoice.id) or "")
    finally:
        built.close()
    for name, value in {
        "TALLY_DATABASE_URL": url,
        "TALLY_STRIPE_API_KEY": "sk_test_tally",
        "TALLY_STRIPE_API_BASE": stripe_api,
    }.items():
        monkeypatch.setenv(name, value)
    reported = CliRunner().invoke(cli, ["stripe", "reconcile", "--app", APP])
    assert reported.exit_code == 1, reported.output
    (report,) = json.loads(reported.output)
    assert [d["repair"] for d in report["drifts"]] == ["pay_in_tally"]
    repaired = CliRunner().invoke(cli, ["stripe", "reconcile", "--app", APP, "--repair"])
    assert repaired.exit_code == 0, repaired.output
    after = CliRunner().invoke(cli, ["stripe", "reconcile", "--app", APP])
    assert after.exit_code == 0 and json.loads(after.output)[0]["in_step"] is True
