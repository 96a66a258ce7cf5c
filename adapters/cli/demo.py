"""`tally demo`: a narrated billing scenario, run through the real command bus."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from adapters.bootstrap import System, bootstrap
from adapters.cli.events import log_table, read_log
from domain.clock import SettableClock

USD = "USD"


class Narrator:
    """Sends commands through the bus and tells what happened."""

    def __init__(self, system: System, clock: SettableClock, app_id: str, pause: float) -> None:
        self.system, self.clock, self.app_id, self.pause = system, clock, app_id, pause
        self.console = Console()
        self.step_no = 0

    def step(self, title: str) -> None:
        self.step_no += 1
        self.console.rule(f"[bold cyan]{self.step_no}. {title}")
        time.sleep(self.pause)

    def send(self, name: str, /, **fields: Any) -> dict[str, Any]:
        reply = self.system.dispatch(name, {"app_id": self.app_id, "actor": "demo", **fields})
        if reply["ok"]:
            flag = " [yellow](duplicate)[/]" if reply.get("duplicate") else ""
            self.console.print(f"  [green]✓[/] {name}{flag}")
            return dict(reply["result"])
        error = reply["error"]
        self.console.print(f"  [red]✗[/] {name}: [bold]{error['code']}[/] — {error['message']}")
        return {}

    def say(self, text: str) -> None:
        self.console.print(f"  {text}")

    def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        self.say(f"[magenta]⏱  the test clock moves to {self.clock.now():%Y-%m-%d %H:%M}[/]")

    def show(self, title: str, rows: dict[str, Any]) -> None:
        table = Table(show_header=False, title=title, title_justify="left")
        for key, value in rows.items():
            table.add_row(key, _fmt(value))
        self.console.print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"amount", "currency"}:
        return f"{value['amount']} {value['currency']} (minor units)"
    if isinstance(value, dict) and {"start", "end"} <= set(value):
        return f"[{value['start'][:10]} → {value['end'][:10]})"
    return str(value)


def _plan(key: str, name: str, price: int, api_limit: int, exports: int) -> dict[str, Any]:
    return {
        "plan_key": key,
        "name": name,
        "base_price": {"amount": price, "currency": USD},
        "interval": "month",
        "trial_days": 14,
        "features": [
            {"key": "sso", "kind": "boolean"},
            {
                "key": "api-calls",
                "kind": "metered",
                "limit": api_limit,
                "enforcement": "soft",
                "soft_threshold_percent": 80,
                "overage": {"model": "per_unit", "unit_price": {"amount": 2, "currency": USD}},
            },
            {"key": "exports", "kind": "metered", "limit": exports, "enforcement": "hard"},
        ],
    }


def run(pause: float = 0.3) -> None:
    clock = SettableClock(datetime.now(UTC).replace(microsecond=0))
    system = bootstrap(clock=clock)
    app_id = f"demo-{clock.now():%Y%m%d%H%M%S}"
    n = Narrator(system, clock, app_id, pause)
    n.console.print(
        Panel.fit(
            f"Tally demo — app [bold]{app_id}[/] on {system.settings.database_url}\n"
            "Every step below is a command on the command bus; every change is an event.",
            title="tally demo",
        )
    )
    try:
        _scenario(n)
    finally:
        system.close()


def _scenario(n: Narrator) -> None:
    n.step("Define two plans (a catalog with versions)")
    n.send("define_plan", **_plan("starter", "Starter", 2900, api_limit=1000, exports=3))
    n.send("define_plan", **_plan("pro", "Pro", 9900, api_limit=10000, exports=50))

    n.step("Tenant 'globex' subscribes to Starter with a 14-day trial")
    sub = n.send("start_subscription", tenant_id="globex", plan_key="starter", command_id="demo-1")
    n.send("start_subscription", tenant_id="globex", plan_key="starter", command_id="demo-1")
    n.say("…the same command_id again is acknowledged as a duplicate, not run twice.")
    n.send("start_subscription", tenant_id="globex", plan_key="pro")
    n.say("…and a second live subscription for the same tenant is refused.")
    sub_id = sub.get("subscription_id", "")
    n.show("subscription", {k: sub.get(k) for k in ("status", "plan_key", "trial_end")})

    n.step("Usage against a soft limit: api-calls (1,000 / month, warn at 80 %)")
    for i, amount in enumerate((500, 350, 250)):
        out = n.send(
            "consume_quota",
            tenant_id="globex",
            feature_key="api-calls",
            amount=amount,
            idempotency_key=f"batch-{i}",
        )
        n.say(f"+{amount}: {_quota_line(out)}")
    out = n.send(
        "consume_quota",
        tenant_id="globex",
        feature_key="api-calls",
        amount=250,
        idempotency_key="batch-2",
    )
    n.say(f"retry of batch-2: {_quota_line(out)}")

    n.step("Usage against a hard limit: exports (3 / month)")
    for i in range(4):
        out = n.send(
            "consume_quota",
            tenant_id="globex",
            feature_key="exports",
            amount=1,
            idempotency_key=f"export-{i}",
        )
        n.say(f"export #{i + 1}: {_quota_line(out)}")

    n.step("The trial ends by the clock")
    n.advance(timedelta(days=14))
    sub = n.send("end_trial", subscription_id=sub_id)
    n.show("subscription", {k: sub.get(k) for k in ("status", "current_period", "price")})

    n.step("Upgrade to Pro now (limits follow the plan)")
    n.advance(timedelta(days=10))
    sub = n.send("change_plan", subscription_id=sub_id, plan_key="pro")
    out = n.send(
        "consume_quota",
        tenant_id="globex",
        feature_key="exports",
        amount=1,
        idempotency_key="export-after-upgrade",
    )
    n.say(f"export after upgrade: {_quota_line(out)}")

    n.step("Invoice: draft, finalize (gap-free number, totals frozen), pay")
    invoice = n.send(
        "draft_invoice",
        tenant_id="globex",
        subscription_id=sub_id,
        currency=USD,
        lines=[
            {
                "kind": "base_fee",
                "description": "Pro, monthly",
                "quantity": 1,
                "unit_amount": {"amount": 9900, "currency": USD},
            },
            {
                "kind": "overage",
                "description": "api-calls over 1,000",
                "quantity": 100,
                "unit_amount": {"amount": 2, "currency": USD},
            },
        ],
    )
    invoice_id = invoice.get("invoice_id", "")
    invoice = n.send("finalize_invoice", invoice_id=invoice_id)
    n.show("invoice", {k: invoice.get(k) for k in ("number_text", "status", "subtotal", "total")})
    invoice = n.send("pay_invoice", invoice_id=invoice_id)
    n.send("void_invoice", invoice_id=invoice_id, reason="oops")
    n.say("…a paid invoice cannot be voided.")

    n.step("Cancel at the period end; the renewal by the clock carries it out")
    sub = n.send("cancel_subscription", subscription_id=sub_id, at_period_end=True)
    n.show("subscription", {k: sub.get(k) for k in ("status", "cancel_at_period_end")})
    n.advance(timedelta(days=31))
    sub = n.send("renew_subscription", subscription_id=sub_id)
    n.show("subscription", {k: sub.get(k) for k in ("status", "cancel_at_period_end")})
    n.send("cancel_subscription", subscription_id=sub_id)
    n.say("…canceling a canceled subscription is an invalid transition.")

    n.step("Read models, built by projectors from the events")
    _read_models(n)

    n.step("The audit trail: who did what, when, from which command")
    rows = [e for e in read_log(n.system, 0, 10_000, None, None) if e.app_id == n.app_id]
    n.console.print(log_table(rows))
    n.say(f"[bold]{len(rows)} events[/] recorded for app {n.app_id}.")


def _read_models(n: Narrator) -> None:
    n.system.sync()
    app = n.app_id
    table = Table("feature", "allowed", "limit", "used", "remaining", "source", "reason")
    for row in n.system.query("entitlements", app_id=app, tenant_id="globex"):
        table.add_row(
            row["feature"],
            str(row["allowed"]),
            str(row["limit"]),
            str(row["used"]),
            str(row["remaining"]),
            str(row["source"]),
            str(row["reason"] or ""),
        )
    n.console.print(table, "  [dim]entitlements of globex (the subscription is canceled now)[/]")
    usage = Table("feature", "month", "quantity", "events")
    for row in n.system.query("usage", app_id=app, tenant_id="globex", granularity="month"):
        usage.add_row(
            row["feature"], row["bucket_start"][:10], str(row["quantity"]), str(row["events"])
        )
    n.console.print(usage, "  [dim]usage totals per month[/]")
    revenue = n.system.query("revenue", app_id=app, granularity="month")
    metrics = n.system.query("subscription_metrics", app_id=app)
    n.show(
        "revenue",
        {
            "MRR now": revenue["mrr"],
            "recognized": [
                (r["period"], r["amount"], r["currency"]) for r in revenue["recognized"]
            ],
            "invoices": revenue["invoices"],
            "churned by month": [
                (c["month"], c["subscriptions"]) for c in metrics["churned_by_month"]
            ],
        },
    )


def _quota_line(out: dict[str, Any]) -> str:
    if not out:
        return "(no answer)"
    verdict = "[green]allowed[/]" if out.get("allowed") else "[red]refused[/]"
    extra = " [yellow]duplicate[/]" if out.get("duplicate") else ""
    reason = f" ({out['reason']})" if out.get("reason") else ""
    return (
        f"{verdict}{extra}{reason} used={out.get('used')} limit={out.get('limit')} "
        f"remaining={out.get('remaining')} overage={out.get('overage')}"
    )
