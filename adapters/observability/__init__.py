"""Logs, traces and metrics (docs/operations.md, Observability): structlog configured once per
process, OpenTelemetry spans when an OTLP endpoint is set, Prometheus metrics per System."""
