"""Three plugins shipped as examples: a signed webhook emitter, an audit exporter (JSON
lines) and a Prometheus business-metrics collector. Each is off until its settings are set."""
