"""The worked downstream service (examples/notifier/) against a real `tally serve`: while
billing events flow, the notifier is killed with SIGKILL ten times and started again; in
the end its table holds exactly one notification per event, none missing, none twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest
from psycopg import sql
from tally_client import Tally

from tests.clients.conftest import CLIENT_SRC, ROOT, stream_of
from tests.e2e.conftest import NATS_URL, PG_URL, Server

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

APP = "shop"  # this module's app on the session's server

NOTIFIER = ROOT / "examples" / "notifier" / "notifier.py"
TYPES = {"InvoiceFinalized", "InvoicePaymentFailed", "QuotaExceeded", "AlertTriggered"}
KILLS = 10
USD = "USD"
PLAN: dict[str, Any] = {
    "plan_key": "metered",
    "name": "Metered",
    "base_price": {"amount": 1000, "currency": USD},
    "features": [{"key": "api-calls", "kind": "metered", "limit": 3, "enforcement": "hard"}],
}


@pytest.fixture
def notifier_db() -> Iterator[str]:
    name = f"notifier_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunparse(urlparse(PG_URL)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))  # fmt: skip


class Notifier:
    """examples/notifier/notifier.py as a process of its own, started and killed at will."""

    def __init__(self, live: Server, database_url: str, log: Path) -> None:
        stream = stream_of(live)
        self.env = {
            **os.environ,
            "PYTHONPATH": str(CLIENT_SRC),  # tally-client, as `pip install` would provide it
            "TALLY_NATS_URL": NATS_URL,
            "TALLY_APP_ID": live.app_id(APP),
            "NOTIFIER_DATABASE_URL": database_url,
            "TALLY_NATS_STREAM": stream["stream"],
            "TALLY_NATS_SUBJECT_PREFIX": stream["subject_prefix"],
            "NOTIFIER_DELAY_SECONDS": "0.05",  # a kill lands mid-batch, often mid-transaction
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(NOTIFIER)], env=self.env, stdout=out, stderr=out, cwd=ROOT
            )

    def wait_until_running(self, runs: int) -> None:
        """Until the n-th start holds its lock and consumer (it logs that line)."""
        wait_for(lambda: self.log.read_text().count("notifier running") >= runs, timeout=30)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


class Traffic:
    """Tenants that hit their hard limit (QuotaExceeded), cross an alert (AlertTriggered) and
    get an invoice that is finalized (InvoiceFinalized) and fails to be paid
    (InvoicePaymentFailed), one after the other until stopped."""

    def __init__(self, tally: Tally) -> None:
        self.tally, self.stop, self.rounds = tally, threading.Event(), 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.round(f"n-{self.rounds}")
                self.rounds += 1
                self.stop.wait(0.3)
        except BaseException as error:
            self.error = error

    def round(self, tenant: str) -> None:
        tally = self.tally
        tally.start_subscription(tenant_id=tenant, plan_key="metered")
        tally.create_alert(
            tenant_id=tenant, kind="usage", feature_key="api-calls", thresholds=[{"units": 2}]
        )
        events = [
            {"idempotency_key": f"{tenant}-{n}", "tenant_id": tenant, "feature_key": "api-calls"}
            for n in range(5)
        ]
        assert tally.record_usage(events=events)["refused"] == 2  # two QuotaExceeded
        line = {"kind": "adjustment", "description": "Setup", "unit_amount": money(2500)}
        invoice = tally.draft_invoice(tenant_id=tenant, currency=USD, lines=[line])
        tally.finalize_invoice(invoice["invoice_id"])
        tally.command("fail_invoice_payment", invoice_id=invoice["invoice_id"], reason="declined")


def money(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": USD}


def expected_events(tally: Tally) -> list[dict[str, Any]]:
    """The app's events of the notified types, from the audit log."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = tally.list_events(after=after, limit=1000)
        found += [e for e in page["events"] if e["type"] in TYPES]
        if page["next_after"] >= page["head"]:
            return found
        after = page["next_after"]


def settled_events(tally: Tally) -> list[dict[str, Any]]:
    """The expected events once no more arrive for a second."""
    before = expected_events(tally)
    while True:
        time.sleep(1.0)
        now = expected_events(tally)
        if len(now) == len(before):
            return now
        before = now


def notifications(database_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        exists = conn.execute("SELECT to_regclass('notifications')").fetchone()
        if exists is None or exists[0] is None:
            return []
        return conn.execute("SELECT event_id, event_type, position FROM notifications").fetchall()


def wait_for(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_ten_sigkills_lose_nothing_and_repeat_nothing(
    live: Server, notifier_db: str, tmp_path: Path
) -> None:
    with Tally(live.base_url, live.key(APP, "admin")) as tally:
        tally.define_plan(PLAN)
        notifier = Notifier(live, notifier_db, tmp_path / "notifier.log")
        notifier.log.touch()
        traffic = Traffic(tally)
        producer = threading.Thread(target=traffic.run, name="traffic")
        producer.start()
        try:
            for run in range(1, KILLS + 1):
                notifier.start()
                notifier.wait_until_running(run)
                time.sleep(random.uniform(0.1, 0.9))  # mid-batch, often mid-transaction
                notifier.kill()
        finally:
            traffic.stop.set()
            producer.join(timeout=60)
        assert traffic.error is None, traffic.error
        assert traffic.rounds >= 10
        notifier.start()
        try:
            wanted = settled_events(tally)  # alerts are evaluated a moment after the usage
            assert {e["type"] for e in wanted} == TYPES, Counter(e["type"] for e in wanted)
            wait_for(lambda: len(notifications(notifier_db)) >= len(wanted), timeout=40)
            time.sleep(1.0)  # any second row would arrive now
            rows = notifications(notifier_db)
        finally:
            assert notifier.stop() == 0, (tmp_path / "notifier.log").read_text()[-3000:]
    log = (tmp_path / "notifier.log").read_text()
    assert log.count("back to its ack floor") >= 3  # killed with messages in hand
    per_event = Counter(str(event_id) for event_id, _, _ in rows)
    assert set(per_event) == {e["id"] for e in wanted}  # no gap
    assert set(per_event.values()) == {1}, per_event.most_common(3)  # never twice
    assert sorted(p for _, _, p in rows) == sorted(e["position"] for e in wanted)
