"""Settings from the environment (TALLY_*): the embedded default unless URLs name a real stack."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


@dataclass(frozen=True)
class PostgresTimeouts:
    """The bounds on every PostgreSQL pool (event store and read models), in seconds."""

    connect: int = 2
    pool: float = 1.0
    statement: float = 30.0

    @property
    def reconnect(self) -> float:
        """A pool gives a failed reconnect up after this (then connects when a request needs
        it): short, so a request after an outage finds the pool connecting, not backing off."""
        return self.pool / 2

    def connection_kwargs(self) -> dict[str, str | int]:
        """libpq parameters of each new connection: connect and statement timeouts, and TCP
        keepalives, so a server gone silent (a partition) is given up within about 11 s."""
        return {
            "connect_timeout": self.connect,
            "options": f"-c statement_timeout={round(self.statement * 1000)}",
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
        }


class Settings(BaseSettings):
    """Where Tally keeps its events and how it behaves."""

    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    database_url: str = "sqlite:///var/tally.db"
    views_url: str | None = None  # read models; default: beside the events
    nats_url: str | None = None
    redis_url: str | None = None
    redis_namespace: str | None = None  # keeps deployments sharing one Redis apart
    snapshot_interval: int = 100
    command_retries: int = 20
    aggregate_cache_size: int = 10_000
    clock: Literal["system", "settable"] = "system"
    serve_workers: bool = True  # `tally serve` also runs the relay and projectors (with NATS)
    # PostgreSQL, bounded so an outage answers 503 fast (docs/operations.md, PostgreSQL down)
    db_connect_timeout_seconds: int = Field(default=2, ge=1)  # a new connection (psycopg: >= 2)
    db_pool_timeout_seconds: float = Field(default=1.0, gt=0)  # wait for a pooled connection
    db_statement_timeout_seconds: float = Field(default=30.0, ge=0)  # per statement; 0 = none
    # request bodies, refused before they are parsed (docs/http-api.md#limits)
    max_body_bytes: int = Field(default=5_000_000, ge=1)  # larger: 413 payload_too_large
    max_json_depth: int = Field(default=64, ge=1)  # deeper nesting: 400 naming body
    # per API key, in each API process (docs/http-api.md#rate-limits): 0 turns the limit off
    rate_limit_per_key: float = Field(default=1000.0, ge=0)  # requests a second
    rate_limit_burst: float = Field(default=2000.0, ge=0)  # most requests at once; 0 = the rate
    # events for downstream services (NATS JetStream), see docs/asyncapi.yaml
    nats_stream: str = "TALLY_EVENTS"
    nats_subject_prefix: str = "tally.events"
    nats_dedup_window_seconds: int = 120
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)  # copies on a JetStream cluster
    nats_max_age_days: int = 30
    relay_batch: int = 1000
    relay_idle_seconds: float = 0.01
    projector_batch: int = 500
    projector_wait_seconds: float = 0.005  # wait for more once one event came (adds to lag)
    # invoice email (docs/email.md): smtp://[user:password@]host[:port][?starttls=true]
    smtp_url: str | None = None
    smtp_from: str = "Tally Billing <billing@localhost>"
    smtp_timeout_seconds: float = 30.0
    mailer_poll_seconds: float = 1.0
    # Stripe (docs/stripe.md): all of it off until the API key is set
    stripe_api_key: str | None = None
    stripe_api_base: str | None = None  # e.g. a localstripe server; default api.stripe.com
    stripe_webhook_secret: str | None = None
    stripe_webhook_tolerance_seconds: int = 300
    stripe_timeout_seconds: float = 20.0
    stripe_poll_seconds: float = 1.0  # the Stripe worker's wait between rounds
    # plugins (docs/plugins.md): hooks' timeout and retries; strategies selected by name
    plugins_discover: bool = True  # register the `tally.plugins` entry points at start
    plugin_timeout_seconds: float = Field(default=5.0, gt=0)  # each hook call
    plugin_max_attempts: int = Field(default=3, ge=1)  # then the event is dead-lettered
    plugin_retry_seconds: float = Field(default=0.5, ge=0)  # first backoff, doubling
    pricing_strategy: str | None = None  # a PricingStrategy plugin's name
    usage_aggregator: str | None = None
    tax_calculator: str | None = None  # a TaxCalculator plugin's name
    invoice_formatter: str | None = None
    coupon_validator: str | None = None
    # operator console (docs/console.md): signs its session cookies; unset = random per start
    console_secret: str | None = None  # at least 16 characters
    console_session_hours: float = 12.0
    # logs (docs/operations.md#observability): on stderr; tracing is OTEL_EXPORTER_OTLP_ENDPOINT
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"  # debug: relay per batch
    access_log: bool = True  # one line per HTTP request
    metrics_port: int | None = Field(default=None, ge=1, le=65535)  # `tally worker`: /metrics
    metrics_host: str = "127.0.0.1"  # the address that worker /metrics listens on

    @property
    def stripe_configured(self) -> bool:
        return bool(self.stripe_api_key)

    @property
    def postgres_timeouts(self) -> PostgresTimeouts:
        return PostgresTimeouts(
            self.db_connect_timeout_seconds,
            self.db_pool_timeout_seconds,
            self.db_statement_timeout_seconds,
        )

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    @property
    def views_target(self) -> tuple[str, str]:
        """(dialect, target) of the read-model store."""
        url = self.views_url or self.database_url
        if url.startswith(("postgresql://", "postgres://")):
            return "postgres", url
        path = url.removeprefix("sqlite:///")
        if self.views_url is None:
            path = path if path in (":memory:", "") else path.removesuffix(".db") + "-views.db"
        if path not in (":memory:", ""):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return "sqlite", path or ":memory:"

    @property
    def sqlite_path(self) -> str:
        """The SQLite file (or ':memory:') named by a sqlite:/// URL."""
        path = self.database_url.removeprefix("sqlite:///")
        if path not in (":memory:", "") and not path.startswith("file:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return path or ":memory:"
