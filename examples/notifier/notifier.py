"""A downstream service built only on tally-client: one notification row per billing event.

It subscribes to Tally's InvoiceFinalized, InvoicePaymentFailed, QuotaExceeded and
AlertTriggered events and writes one row per event into `notifications`, a table of its own
PostgreSQL database. Kill it at any moment (even SIGKILL) and start it again: no event is
lost and none gets a second row (README.md says why).

    TALLY_NATS_URL=nats://127.0.0.1:4222 TALLY_APP_ID=acme \\
    NOTIFIER_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/notifier \\
    python examples/notifier/notifier.py
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from tally_client import Event, PostgresStore, subscribe

TYPES = ("InvoiceFinalized", "InvoicePaymentFailed", "QuotaExceeded", "AlertTriggered")

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id BIGSERIAL PRIMARY KEY,
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    position BIGINT NOT NULL,
    tenant_id TEXT,
    message TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""
# event_id is deliberately not UNIQUE: the subscriber kit alone keeps one row per event (the
# example's test checks that). A real service may add the constraint as a second guard.


@dataclass(frozen=True)
class Config:
    """The service's settings, from the environment."""

    nats_url: str
    app_id: str
    database_url: str
    name: str = "notifier"
    stream: str = "TALLY_EVENTS"
    subject_prefix: str = "tally.events"
    delay_seconds: float = 0.0  # a slow mail provider, to watch a crash land mid-send

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        return cls(
            nats_url=env.get("TALLY_NATS_URL", "nats://127.0.0.1:4222"),
            app_id=env["TALLY_APP_ID"],
            database_url=env["NOTIFIER_DATABASE_URL"],
            name=env.get("NOTIFIER_NAME", "notifier"),
            stream=env.get("TALLY_NATS_STREAM", "TALLY_EVENTS"),
            subject_prefix=env.get("TALLY_NATS_SUBJECT_PREFIX", "tally.events"),
            delay_seconds=float(env.get("NOTIFIER_DELAY_SECONDS", "0")),
        )


def message_for(event: Event) -> str:
    """What the notification says (a mail or a chat message in a real service)."""
    data = event.data
    if event.type == "InvoiceFinalized":
        total = data.get("amount_due", data.get("total", {}))
        return f"Invoice {data.get('number_text')} is ready: {money(total)} due"
    if event.type == "InvoicePaymentFailed":
        return f"Payment of invoice {data.get('number_text')} failed: {data.get('reason')}"
    if event.type == "QuotaExceeded":
        return f"{data.get('feature_key')}: limit {data.get('limit')} reached, usage refused"
    return f"{data.get('kind', 'usage')} alert: {describe(data)}"


def money(value: Any) -> str:
    if not isinstance(value, dict):
        return str(value)
    return f"{int(value.get('amount', 0)) / 100:.2f} {value.get('currency', '')}"


def describe(data: dict[str, Any]) -> str:
    keys = ("feature_key", "threshold", "value")
    return ", ".join(f"{k}={data[k]}" for k in keys if data.get(k) is not None)


def make_handler(config: Config) -> Any:
    def notify(event: Event, tx: Any) -> None:
        """The effect, in the transaction that also records the event as processed."""
        if config.delay_seconds:
            time.sleep(config.delay_seconds)
        tx.execute(
            "INSERT INTO notifications (event_id, event_type, position, tenant_id, message) "
            "VALUES (%s, %s, %s, %s, %s)",
            (event.id, event.type, event.position, event.tenant_id, message_for(event)),
        )

    return notify


def create_schema(database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)


async def run(config: Config) -> None:
    """Notify until SIGTERM or SIGINT."""
    await asyncio.to_thread(create_schema, config.database_url)
    subscription = await subscribe(
        config.nats_url,
        config.app_id,
        make_handler(config),
        name=config.name,
        types=TYPES,
        store=PostgresStore(config.database_url),
        stream=config.stream,
        subject_prefix=config.subject_prefix,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: asyncio.ensure_future(subscription.stop()))
    await subscription.active()
    logging.info("notifier %s running for app %s", config.name, config.app_id)
    await subscription.wait()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(run(Config.from_env()))


if __name__ == "__main__":
    main()
